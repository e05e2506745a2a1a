//! A private dockerd for integration tests: its own socket, data and exec roots under /tmp, no
//! iptables or bridge (this machine has neither registry nor IPVS), a one-node swarm on
//! 127.0.0.1, and a busybox image imported from the machine's busybox-static. Everything is torn
//! down on drop. `./scripts/test.sh` installs docker.io and busybox-static on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private engine.
pub struct Dockerd {
    child: Child,
    root: PathBuf,
    /// `unix:///.../docker.sock`
    pub host: String,
}

fn need(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()));
    assert!(
        found,
        "`{bin}` is not installed: run ./scripts/test.sh (it installs {package}) or `apt-get install {package}`"
    );
}

impl Dockerd {
    /// Starts the engine on 127.0.0.1, initialises a swarm and imports the busybox image.
    pub fn start(tag: &str) -> Dockerd {
        let d = Dockerd::bare(tag, None);
        d.cli(&["swarm", "init", "--advertise-addr", "127.0.0.1"]).expect("swarm init");
        d.import_busybox();
        d
    }

    /// Starts the engine only (in network namespace `netns` if given); no swarm, no image.
    pub fn bare(tag: &str, netns: Option<&str>) -> Dockerd {
        need("dockerd", "docker.io");
        need("docker", "docker.io");
        assert!(
            Path::new("/bin/busybox").exists(),
            "/bin/busybox is missing: run ./scripts/test.sh or `apt-get install busybox-static`"
        );
        let root = PathBuf::from(format!("/tmp/su-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let sock = root.join("docker.sock");
        let log = std::fs::File::create(root.join("dockerd.log")).unwrap();
        let mut cmd = match netns {
            // Only the network namespace: `ip netns exec` would also remount /sys and hide the
            // cgroup mounts dockerd needs ("Devices cgroup isn't mounted").
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}")).arg("dockerd");
                c
            }
            None => Command::new("dockerd"),
        };
        let child = cmd
            .arg(format!("--host=unix://{}", sock.display()))
            .arg(format!("--data-root={}", root.join("data").display()))
            .arg(format!("--exec-root={}", root.join("exec").display()))
            .arg(format!("--pidfile={}", root.join("docker.pid").display()))
            .args(["--iptables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let d = Dockerd { child, root, host: format!("unix://{}", sock.display()) };
        let t0 = Instant::now();
        while d.cli(&["version", "--format", "{{.Server.Version}}"]).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "dockerd did not answer within 60 s; see {}",
                d.root.join("dockerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        d
    }

    fn import_busybox(&self) {
        let d = self;
        let image = d.root.join("rootfs");
        std::fs::create_dir_all(image.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", image.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", image.join("bin/sleep")).unwrap();
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&image)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let import = Command::new("docker")
            .args(["-H", &d.host, "import", "-", "su-busybox:1"])
            .stdin(tar.stdout.take().unwrap())
            .output();
        let tar_ok = tar.wait().map(|s| s.success());
        let out = import.unwrap();
        assert!(
            out.status.success() && tar_ok.unwrap_or(false),
            "image import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the docker CLI against this engine; stdout, or stderr as the error.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The engine's swarm certificates directory.
    pub fn certificates(&self) -> PathBuf {
        self.root.join("data/swarm/certificates")
    }

    /// A bollard client for this engine.
    pub fn client(&self) -> bollard::Docker {
        let path = self.host.trim_start_matches("unix://");
        bollard::Docker::connect_with_unix(path, 30, bollard::API_DEFAULT_VERSION).unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.cli(&["service", "ls", "-q"]) {
            for id in ids.lines() {
                let _ = self.cli(&["service", "rm", id]);
            }
        }
        let _ = self.cli(&["swarm", "leave", "--force"]);
        unsafe_kill(self.child.id());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_under(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Lazily unmounts everything under `root`, deepest first (overlays, network namespaces).
pub fn unmount_under(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = root.to_string_lossy().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).output();
    }
}

/// SIGTERM, so dockerd stops its containers and its containerd.
fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

/// Two network namespaces joined by a veth pair: `su-a-<pid>` at 10.213.0.1 and `su-b-<pid>` at
/// 10.213.0.2 (the test's own hosts; nothing else is reachable from them). Removed on drop.
pub struct NetPair {
    /// The namespaces.
    pub names: [String; 2],
}

impl NetPair {
    /// Creates the pair.
    pub fn new() -> NetPair {
        let pid = std::process::id();
        let names = [format!("su-a-{pid}"), format!("su-b-{pid}")];
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let (va, vb) = (format!("suva{}", pid % 100000), format!("suvb{}", pid % 100000));
        for n in &names {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", &va, "netns", &names[0], "type", "veth", "peer", "name", &vb, "netns",
            &names[1],
        ]);
        ip(&["-n", &names[0], "addr", "add", "10.213.0.1/24", "dev", &va]);
        ip(&["-n", &names[1], "addr", "add", "10.213.0.2/24", "dev", &vb]);
        ip(&["-n", &names[0], "link", "set", &va, "up"]);
        ip(&["-n", &names[1], "link", "set", &vb, "up"]);
        NetPair { names }
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}
