#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine (as root) it first installs what the integration
# tests need: docker.io (the tests start their own private dockerd; nothing else is touched) and
# busybox-static (the tests' container image is made from it, since no registry is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v dpkg-scanpackages >/dev/null || missing+=(dpkg-dev)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# The apt tests read the package lists: make sure they exist.
if [ ${#missing[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    apt-get update -q >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} for the integration tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts docker.service on install; the tests use their own engine, so stop the system one
# only if this script just installed it.
if [[ " ${missing[*]-} " == *" docker.io "* ]] && command -v systemctl >/dev/null && systemctl is-active -q docker 2>/dev/null; then
    systemctl stop docker docker.socket || true
fi
exec cargo test --locked "$@"
