//! A systemd node container inside the test's private dockerd, per ../shared/LAB-NOTES.md (no
//! --privileged here: all capabilities but SYS_RESOURCE, host cgroups). Its `/run` is a host
//! directory, so the test reaches the node's D-Bus system bus from outside.
//!
//! The image is a Debian minbase root file system with systemd and dbus, made with debootstrap
//! from the machine's own Debian mirror (read from its apt sources, never written here) and
//! cached outside the repository by a hash of the recipe.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::dockerd::Dockerd;

const SUITE: &str = "bookworm";
const CACHE: &str = "/var/cache/swarm-upgrade-tests";

/// A node image: the packages debootstrap adds to minbase.
#[derive(Clone, Copy)]
pub struct Image {
    /// Comma-separated packages.
    pub packages: &'static str,
    /// Tag in the test engine.
    pub tag: &'static str,
}

/// systemd and D-Bus only.
pub const SYSTEMD: Image = Image { packages: "systemd,systemd-sysv,dbus", tag: "su-node:1" };
/// A node that runs its own engine (Debian's docker.io).
pub const ENGINE: Image =
    Image { packages: "systemd,systemd-sysv,dbus,docker.io,iproute2", tag: "su-node-engine:1" };

/// The cached root file system tarball, made on first use.
pub fn rootfs_tar(image: Image) -> PathBuf {
    let packages = image.packages;
    let recipe = format!("debootstrap --variant=minbase --include={packages} {SUITE}");
    let hash: u64 =
        recipe.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    let tar = Path::new(CACHE).join(format!("node-{SUITE}-{hash:016x}.tar"));
    if tar.exists() {
        return tar;
    }
    std::fs::create_dir_all(CACHE).unwrap();
    let work = Path::new(CACHE).join(format!("rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={packages}"), SUITE])
        .arg(&work)
        .arg(xtask::host::mirror().expect("the machine's Debian mirror"))
        .output()
        .expect("debootstrap runs (./scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "debootstrap failed: {}",
        String::from_utf8_lossy(&out.stdout).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    );
    // Modules cannot be loaded in a container.
    let _ = std::os::unix::fs::symlink(
        "/dev/null",
        work.join("etc/systemd/system/systemd-modules-load.service"),
    );
    let partial = tar.with_extension("partial");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&work)
        .args(["-cf"])
        .arg(&partial)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar of the root file system");
    std::fs::rename(&partial, &tar).unwrap();
    let _ = std::fs::remove_dir_all(&work);
    tar
}

/// A running systemd node container.
pub struct Node<'a> {
    engine: &'a Dockerd,
    /// Container name.
    pub name: String,
    /// The host directory mounted as the node's /run.
    pub run: PathBuf,
}

impl<'a> Node<'a> {
    /// Imports the image (once per engine) and boots a node; returns when systemd is up.
    pub fn start(engine: &'a Dockerd, name: &str, image: Image) -> Node<'a> {
        if engine.cli(&["image", "inspect", image.tag]).is_err() {
            let tar = std::fs::File::open(rootfs_tar(image)).unwrap();
            let out = Command::new("docker")
                .args([
                    "-H",
                    &engine.host,
                    "import",
                    "--change",
                    "CMD [\"/lib/systemd/systemd\"]",
                    "-",
                    image.tag,
                ])
                .stdin(Stdio::from(tar))
                .output()
                .unwrap();
            assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        }
        let run = PathBuf::from(format!("/tmp/su-node-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        let volume = format!("{}:/run", run.display());
        // An engine inside the node keeps its data on a host directory (overlay on overlay fails).
        let data = run.with_extension("docker");
        std::fs::create_dir_all(&data).unwrap();
        let data_volume = format!("{}:/var/lib/docker", data.display());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--hostname",
            name,
            "--network",
            "none",
            "-v",
            &volume,
            "-v",
            &data_volume,
        ];
        args.extend(xtask::lab::SYSTEMD_NODE_FLAGS);
        args.push(image.tag);
        engine.cli(&args).expect("the node container starts");
        let node = Node { engine, name: name.to_string(), run };
        let t0 = Instant::now();
        loop {
            let state = node.exec("systemctl is-system-running").unwrap_or_else(|e| e);
            if state.contains("running") || state.contains("degraded") {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "systemd did not come up in {name}: {state}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        node
    }

    /// Runs a shell command in the node.
    pub fn exec(&self, script: &str) -> Result<String, String> {
        self.engine.cli(&["exec", &self.name, "sh", "-c", script])
    }

    /// The node's system bus, as a D-Bus address.
    pub fn system_bus(&self) -> String {
        format!("unix:path={}", self.run.join("dbus/system_bus_socket").display())
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        let _ = self.engine.cli(&["rm", "-f", &self.name]);
        let data = self.run.with_extension("docker");
        for dir in [&self.run, &data] {
            super::dockerd::unmount_under(dir);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
