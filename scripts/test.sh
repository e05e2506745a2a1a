#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine (as root) it first installs what the integration
# tests need: docker.io (the tests start their own private dockerds; nothing else is touched),
# busybox-static (container images are made from it, since no registry is reachable), dpkg-dev,
# debootstrap, gnupg and apt-utils (the lab's repository and node images), vagrant (the
# Vagrantfile is checked with `vagrant validate`; no VM is started), and cargo-deb, which builds
# the .deb the lab installs on every node. The lab tests (xtask/tests/e2e.rs) bring the
# whole lab up and down; `cargo xtask lab` builds what it needs and caches it outside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v dpkg-scanpackages >/dev/null || missing+=(dpkg-dev)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v gpg >/dev/null || missing+=(gnupg)
command -v apt-ftparchive >/dev/null || missing+=(apt-utils)
command -v vagrant >/dev/null || missing+=(vagrant)
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
# The package the lab installs on every node.
if ! command -v cargo-deb >/dev/null; then
    echo "installing cargo-deb (once) to build the .deb" >&2
    cargo install --locked --quiet cargo-deb --version 3.6.0
fi
deb=$(cargo deb --locked --quiet | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb did not build a package (it printed: $deb)" >&2; exit 1; }
export SWARM_UPGRADE_DEB="$deb"
# The gates first: formatting and lints fail in seconds, before the lab's long minutes.
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
# The rolling scenario's figures beside the naive baseline's (cargo hides a passing test's output).
summary=target/lab/reports/rolling/summary.txt
scale=target/lab/reports/scale-3+12/summary.txt
timings=target/lab/reports/timings.txt
rm -f "$summary" "$scale" "$timings"
# --all-features: the live tests (root, dockerd, apt, systemd, vagrant) and the lab's tests too;
# without it, `cargo test --workspace` is the pure suite.
# A failure still prints the figures and each lab's time below, then fails the command.
status=0
cargo test --locked --workspace --all-features "$@" || status=$?
if [ -f "$summary" ]; then
    echo "== the rolling scenario and the naive baseline (target/lab/reports/rolling/summary.txt) =="
    cat "$summary"
fi
if [ -f "$scale" ]; then
    echo "== the 3+12 lab's run and its cost per node ($scale) =="
    cat "$scale"
fi
# What each lab cost, in the order the tests brought them up (what this command spends its time on).
if [ -f "$timings" ]; then
    echo "== every lab of this run: its bring-up and its whole life (target/lab/reports/timings.txt) =="
    cat "$timings"
fi
exit "$status"
