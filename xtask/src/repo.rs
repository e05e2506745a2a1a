//! The lab's apt repository, shaped like Docker's (download.docker.com/linux/debian): suites
//! `trixie` and `bookworm`, component `stable`, packages `docker-ce`, `docker-ce-cli` and
//! `containerd.io` laid out, versioned, related and scripted like the official ones, carrying
//! Debian's engine binaries, and the plugins (`docker-buildx-plugin`, `docker-compose-plugin`,
//! `docker-ce-rootless-extras`) as small stand-ins with the same names, dependencies and
//! versions. Each suite names its versions as Docker does (`5:28.5.2-1~debian.12~bookworm`): a
//! node whose sources say `bookworm` sees the same engines under Debian 12's names, as a node of
//! a fleet that grew over the years would. Signed with a key the lab generates once (kept in the
//! cache).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::debian::Unpacked;
use crate::{cache, host};

mod plugins;
pub use plugins::{BUILDX, COMPOSE};

/// The engine every lab node starts at.
pub const OLD: &str = "5:26.1.5-1~debian.13~trixie";
/// The engine the lab upgrades to.
pub const NEW: &str = "5:28.5.2-1~debian.13~trixie";
/// A release whose dockerd fails to start, for rollback tests.
pub const BROKEN: &str = "5:28.5.3-1~debian.13~trixie";
/// A release whose dockerd never becomes ready (it never tells systemd it started), for tests
/// of what waits on it: docker-ce's own postinst restart, inside the install, hangs with it.
pub const HANGS: &str = "5:28.5.4-1~debian.13~trixie";
/// Where the lab repository lives on the `repo` node (as Docker's install guide configures it).
pub const URL: &str = "http://repo/linux/debian";
/// The apt sources line on every node (Docker's install guide: keyring + signed-by).
pub const SOURCES_LINE: &str = "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] http://repo/linux/debian trixie stable";
/// The suites served, each with the suffix Docker gives its versions there; [`OLD`] and the
/// other constants are written as `trixie` names them.
pub const SUITES: [(&str, &str); 2] =
    [("trixie", "~debian.13~trixie"), ("bookworm", "~debian.12~bookworm")];

/// `version` (as trixie names it) as `suite` names it: `5:28.5.2-1~debian.12~bookworm`.
pub fn in_suite(version: &str, suite: &str) -> String {
    let suffix = SUITES.iter().find(|(s, _)| *s == suite).map_or("", |(_, x)| *x);
    version.replace(SUITES[0].1, suffix)
}

/// The suite a version belongs to (its suffix's; trixie for one without, as containerd.io).
fn suite_of(version: &str) -> &'static str {
    SUITES.iter().find(|(_, x)| version.ends_with(x)).map_or(SUITES[0].0, |(s, _)| *s)
}

/// One engine release: docker-ce and docker-ce-cli at `version`, made from `suite`'s binaries.
struct Engine {
    version: &'static str,
    suite: &'static str,
    broken: Broken,
}

/// How a lab release is broken on purpose.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// Not at all.
    No,
    /// Its dockerd exits at once.
    Exits,
    /// Its dockerd runs but never becomes ready.
    Hangs,
}

const ENGINES: &[Engine] = &[
    Engine { version: OLD, suite: "trixie", broken: Broken::No },
    Engine { version: NEW, suite: "forky", broken: Broken::No },
    Engine { version: BROKEN, suite: "forky", broken: Broken::Exits },
    Engine { version: HANGS, suite: "forky", broken: Broken::Hangs },
];

/// containerd.io keeps its own version numbers, as in Docker's repository: (version, suite).
pub const CONTAINERD: &[(&str, &str)] = &[("1.7.24-1", "trixie"), ("2.1.9-1", "forky")];

const MAINTAINER: &str = "swarm-upgrade lab <lab@swarm-upgrade.invalid>";

/// The built repository.
pub struct Repo {
    /// Served as the web root of the `repo` node.
    pub root: PathBuf,
    /// The armored public key (`/etc/apt/keyrings/docker.asc` on the nodes).
    pub key: PathBuf,
}

impl Repo {
    /// A package file from the pool, e.g. `docker-ce` at [`OLD`].
    pub fn deb(&self, package: &str, version: &str) -> PathBuf {
        self.root
            .join(format!("linux/debian/dists/{}/pool/stable/amd64", suite_of(version)))
            .join(file_name(package, version))
    }
}

fn file_name(package: &str, version: &str) -> String {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    format!("{package}_{v}_amd64.deb")
}

/// Builds (or finds in the cache) the signed repository.
pub fn build(debian: &Unpacked) -> Result<Repo> {
    host::ensure_packages(&[
        ("gpg", "gnupg"),
        ("dpkg-scanpackages", "dpkg-dev"),
        ("apt-ftparchive", "apt-utils"),
    ])?;
    let key_home = signing_key()?;
    let key = key_home.join("docker.asc");
    let hash = cache::fnv(&[
        include_str!("repo.rs").as_bytes(),
        include_str!("repo/plugins.rs").as_bytes(),
        &std::fs::read(&key)?,
        debian.tree("docker.io", "trixie").as_os_str().as_encoded_bytes(),
    ]);
    let root = cache::cached(&format!("repo-{hash:016x}"), |out| {
        let base = out.join("linux/debian");
        let stage = out.join("stage");
        for (suite, _) in SUITES {
            let pool = base.join(format!("dists/{suite}/pool/stable/amd64"));
            std::fs::create_dir_all(&pool)?;
            for (version, from) in CONTAINERD {
                containerd_io(debian, version, from, &stage, &pool)?;
            }
            // The broken releases are trixie's only (the rollback tests' lab is all trixie).
            let engines = ENGINES.iter().filter(|e| suite == "trixie" || e.broken == Broken::No);
            for e in engines {
                let version = in_suite(e.version, suite);
                docker_ce_cli(debian, e, &version, &stage, &pool)?;
                docker_ce(debian, e, &version, &stage, &pool)?;
                plugins::rootless_extras(&version, &stage, &pool)?;
            }
            for (package, version) in plugins::CLI_PLUGINS {
                plugins::cli_plugin(package, &in_suite(version, suite), &stage, &pool)?;
            }
            index(&base, suite, &key_home)?;
        }
        std::fs::remove_dir_all(&stage)?;
        std::fs::copy(&key, base.join("gpg"))?;
        Ok(())
    })?;
    Ok(Repo { root, key })
}

/// The lab's signing key, generated once: a GnuPG home holding it and `docker.asc`.
fn signing_key() -> Result<PathBuf> {
    cache::cached("signing-key", |home| {
        std::fs::create_dir_all(home)?;
        let mut perms = std::fs::metadata(home)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        std::fs::set_permissions(home, perms)?;
        let uid = "swarm-upgrade lab repository <lab@swarm-upgrade.invalid>";
        gpg(home, &["--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"])?;
        let armored = gpg(home, &["--armor", "--export", uid])?;
        std::fs::write(home.join("docker.asc"), armored)?;
        Ok(())
    })
}

fn gpg(home: &Path, args: &[&str]) -> Result<String> {
    let out = host::run(
        Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--pinentry-mode", "loopback", "--yes"])
            .args(args),
    );
    let _ =
        Command::new("gpgconf").arg("--homedir").arg(home).args(["--kill", "gpg-agent"]).status();
    out
}

/// A suite's Packages, Release, InRelease and Release.gpg, as Docker publishes them.
fn index(base: &Path, suite: &str, key_home: &Path) -> Result<()> {
    let bin = base.join(format!("dists/{suite}/stable/binary-amd64"));
    std::fs::create_dir_all(&bin)?;
    let pool = format!("dists/{suite}/pool/stable/amd64");
    let packages = host::run(Command::new("dpkg-scanpackages").current_dir(base).args([
        "--multiversion",
        &pool,
        "/dev/null",
    ]))?;
    std::fs::write(bin.join("Packages"), &packages)?;
    host::run(Command::new("gzip").arg("-k9").arg(bin.join("Packages")))?;
    let mut release = Command::new("apt-ftparchive");
    for (k, v) in [
        ("Origin", "Docker"),
        ("Label", "Docker"),
        ("Suite", suite),
        ("Codename", suite),
        ("Architectures", "amd64"),
        ("Components", "stable"),
    ] {
        release.arg("-o").arg(format!("APT::FTPArchive::Release::{k}={v}"));
    }
    let dists = base.join(format!("dists/{suite}"));
    let text = host::run(release.current_dir(&dists).args(["release", "."]))?;
    std::fs::write(dists.join("Release"), text)?;
    let release = dists.join("Release");
    let r = release.to_str().context("path")?;
    gpg(key_home, &["--clearsign", "-o", dists.join("InRelease").to_str().context("path")?, r])?;
    gpg(
        key_home,
        &["--armor", "--detach-sign", "-o", dists.join("Release.gpg").to_str().context("path")?, r],
    )?;
    Ok(())
}

/// A package being staged: files, control fields, maintainer scripts.
pub(crate) struct Staged {
    dir: PathBuf,
}

impl Staged {
    /// An empty package `name` under `stage`.
    pub(crate) fn new(stage: &Path, name: &str) -> Result<Staged> {
        let dir = stage.join(name);
        cache::remove(&dir);
        std::fs::create_dir_all(dir.join("DEBIAN"))?;
        Ok(Staged { dir })
    }

    fn copy(&self, from: &Path, to: &str) -> Result<()> {
        let dest = self.dir.join(to);
        std::fs::create_dir_all(dest.parent().unwrap())?;
        std::fs::copy(from, &dest).with_context(|| format!("copy {} to {to}", from.display()))?;
        Ok(())
    }

    /// Writes a file of the package, with its mode.
    pub(crate) fn write(&self, to: &str, text: &str, mode: u32) -> Result<()> {
        let dest = self.dir.join(to);
        std::fs::create_dir_all(dest.parent().unwrap())?;
        std::fs::write(&dest, text)?;
        let mut perms = std::fs::metadata(&dest)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, mode);
        std::fs::set_permissions(&dest, perms)?;
        Ok(())
    }

    /// Writes the control file (with Installed-Size) and builds the package into `pool`.
    pub(crate) fn build(
        self,
        fields: &str,
        pool: &Path,
        package: &str,
        version: &str,
    ) -> Result<()> {
        let du = host::run(Command::new("du").args(["-sk", "--exclude=DEBIAN"]).arg(&self.dir))?;
        let size = du.split_whitespace().next().unwrap_or("0");
        let mut control = format!(
            "Package: {package}\nVersion: {version}\nArchitecture: amd64\nMaintainer: {MAINTAINER}\nInstalled-Size: {size}\n"
        );
        control.push_str(fields);
        self.write("DEBIAN/control", &control, 0o644)?;
        // Fast compression: the repository is served on the lab network only.
        host::run(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
                .arg(&self.dir)
                .arg(pool.join(file_name(package, version))),
        )?;
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
}

fn containerd_io(
    debian: &Unpacked,
    version: &str,
    suite: &str,
    stage: &Path,
    pool: &Path,
) -> Result<()> {
    let s = Staged::new(stage, &format!("containerd.io-{version}"))?;
    let c = debian.tree("containerd", suite);
    for bin in ["containerd", "containerd-shim-runc-v2", "ctr"] {
        s.copy(&c.join("usr/bin").join(bin), &format!("usr/bin/{bin}"))?;
    }
    s.copy(&debian.tree("runc", suite).join("usr/sbin/runc"), "usr/bin/runc")?;
    s.write("usr/lib/systemd/system/containerd.service", CONTAINERD_SERVICE, 0o644)?;
    s.write("DEBIAN/postinst", &postinst("containerd.service", ""), 0o755)?;
    s.write("DEBIAN/prerm", &prerm("containerd.service"), 0o755)?;
    let fields = "Section: devel\nPriority: optional\nDepends: libc6 (>= 2.34), libseccomp2 (>= 2.4.0)\n\
Provides: containerd, runc\nConflicts: containerd, runc\nReplaces: containerd, runc\nHomepage: https://containerd.io\n\
Description: An open and reliable container runtime (swarm-upgrade lab build)\n Debian's containerd and runc binaries, laid out as Docker's containerd.io package.\n";
    s.build(fields, pool, "containerd.io", version)
}

fn docker_ce_cli(
    debian: &Unpacked,
    e: &Engine,
    version: &str,
    stage: &Path,
    pool: &Path,
) -> Result<()> {
    let s = Staged::new(stage, &format!("docker-ce-cli-{version}"))?;
    s.copy(&debian.tree("docker-cli", e.suite).join("usr/bin/docker"), "usr/bin/docker")?;
    let fields = "Section: admin\nPriority: optional\nDepends: libc6 (>= 2.34)\nConflicts: docker (<< 1.5~), docker-engine, docker.io, docker-cli\n\
Replaces: docker-ce (<< 5:0), docker-engine\nHomepage: https://www.docker.com\n\
Description: Docker CLI: the open-source application container engine (swarm-upgrade lab build)\n Debian's docker-cli binary, laid out as Docker's docker-ce-cli package.\n";
    s.build(fields, pool, "docker-ce-cli", version)
}

fn docker_ce(
    debian: &Unpacked,
    e: &Engine,
    version: &str,
    stage: &Path,
    pool: &Path,
) -> Result<()> {
    let s = Staged::new(stage, &format!("docker-ce-{version}"))?;
    let d = debian.tree("docker.io", e.suite);
    match e.broken {
        Broken::Exits => {
            let script = format!(
                "#!/bin/sh\necho \"dockerd {}: this lab build is broken on purpose (swarm-upgrade rollback tests) and does not start\" >&2\nexit 1\n",
                version
            );
            s.write("usr/bin/dockerd", &script, 0o755)?;
        }
        Broken::Hangs => {
            let script = format!(
                "#!/bin/sh\necho \"dockerd {}: this lab build is broken on purpose (swarm-upgrade timeout tests) and never becomes ready\" >&2\nexec sleep infinity\n",
                version
            );
            s.write("usr/bin/dockerd", &script, 0o755)?;
        }
        Broken::No => s.copy(&d.join("usr/sbin/dockerd"), "usr/bin/dockerd")?,
    }
    s.copy(&d.join("usr/sbin/docker-proxy"), "usr/bin/docker-proxy")?;
    s.copy(&debian.tree("tini", "trixie").join("usr/bin/tini-static"), "usr/bin/docker-init")?;
    s.write("usr/lib/systemd/system/docker.service", DOCKER_SERVICE, 0o644)?;
    s.write("usr/lib/systemd/system/docker.socket", DOCKER_SOCKET, 0o644)?;
    let group = "if ! getent group docker >/dev/null; then groupadd --system docker; fi\n";
    s.write("DEBIAN/postinst", &postinst("docker.service docker.socket", group), 0o755)?;
    s.write("DEBIAN/prerm", &prerm("docker.service docker.socket"), 0o755)?;
    let mut fields = String::from(
        "Section: admin\nPriority: optional\nDepends: containerd.io (>= 1.6.24), docker-ce-cli, iptables, libseccomp2 (>= 2.3.0), libc6 (>= 2.34), libsystemd0\n\
Conflicts: docker (<< 1.5~), docker-engine, docker.io\nReplaces: docker-engine\nHomepage: https://www.docker.com\n",
    );
    let _ = write!(
        fields,
        "Description: Docker: the open-source application container engine (swarm-upgrade lab build)\n Debian's docker.io {} binaries from {}, laid out as Docker's docker-ce package.{}\n",
        version,
        e.suite,
        match e.broken {
            Broken::No => "",
            Broken::Exits => "\n Broken on purpose: its dockerd exits at once.",
            Broken::Hangs => "\n Broken on purpose: its dockerd never becomes ready.",
        }
    );
    s.build(&fields, pool, "docker-ce", version)
}

/// postinst the way debhelper writes it: enable on first install, restart on upgrade, and never
/// fail the install when the restart fails (`|| true`).
fn postinst(units: &str, first: &str) -> String {
    let main = units.split_whitespace().next().unwrap_or(units);
    format!(
        r#"#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
	:
{first}fi
# Automatically added by dh_installsystemd (as in Docker's packages)
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	deb-systemd-helper unmask '{main}' >/dev/null || true
	if deb-systemd-helper --quiet was-enabled '{main}'; then
		deb-systemd-helper enable '{main}' >/dev/null || true
	else
		deb-systemd-helper update-state '{main}' >/dev/null || true
	fi
fi
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			_dh_action=restart
		else
			_dh_action=start
		fi
		deb-systemd-invoke $_dh_action {units} >/dev/null || true
	fi
fi
"#
    )
}

fn prerm(units: &str) -> String {
    format!(
        r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop {units} >/dev/null || true
fi
"#
    )
}

/// Docker's containerd.service, without OOMScoreAdjust (lab nodes lack CAP_SYS_RESOURCE).
const CONTAINERD_SERVICE: &str = "[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target dbus.service

[Service]
ExecStart=/usr/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity

[Install]
WantedBy=multi-user.target
";

/// Docker's docker.service, without OOMScoreAdjust (lab nodes lack CAP_SYS_RESOURCE).
const DOCKER_SERVICE: &str = "[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target nss-lookup.target docker.socket firewalld.service containerd.service time-set.target
Wants=network-online.target containerd.service
Requires=docker.socket

[Service]
Type=notify
ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0
RestartSec=2
Restart=always
StartLimitBurst=3
StartLimitInterval=60s
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Delegate=yes
KillMode=process

[Install]
WantedBy=multi-user.target
";

const DOCKER_SOCKET: &str = "[Unit]
Description=Docker Socket for the API

[Socket]
ListenStream=/run/docker.sock
SocketMode=0660
SocketUser=root
SocketGroup=docker

[Install]
WantedBy=sockets.target
";
