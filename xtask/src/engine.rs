//! The engine the lab's containers run on: the one at `DOCKER_HOST` (or the default socket) if it
//! answers, otherwise a private dockerd the lab starts itself (installing Debian's docker.io first).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::host;

/// How many labs can run side by side on this machine, each on its own private engine and
/// network (slot 0 is the one `cargo xtask lab` works on; the tests use the others too).
pub const SLOTS: u8 = 4;

/// `/run/swarm-upgrade-lab`, `/var/lib/…`: with `-<slot>` after it for slots past 0.
fn slot_path(base: &str, slot: u8) -> PathBuf {
    match slot {
        0 => PathBuf::from(base),
        n => PathBuf::from(format!("{base}-{n}")),
    }
}

/// Runtime directory of a slot's private engine (socket, pid file).
pub fn run_dir(slot: u8) -> PathBuf {
    slot_path("/run/swarm-upgrade-lab", slot)
}

/// Data root of a slot's private engine: its image store is a cache kept across `down`.
pub fn data_dir(slot: u8) -> PathBuf {
    slot_path("/var/lib/swarm-upgrade-lab", slot)
}

fn log_file(slot: u8) -> PathBuf {
    let mut p = slot_path("/var/log/swarm-upgrade-lab", slot).into_os_string();
    p.push("-dockerd.log");
    PathBuf::from(p)
}

/// Where a slot's engine keeps its containers in containerd: its own namespaces past slot 0, so
/// that engines sharing a system containerd (Debian's containerd.service, when it runs) never see
/// each other's containers; slot 0 keeps dockerd's default.
fn containerd_namespaces(slot: u8) -> Vec<String> {
    match slot {
        0 => vec![],
        n => vec![
            format!("--containerd-namespace=swarm-upgrade-lab-{n}"),
            format!("--containerd-plugins-namespace=swarm-upgrade-lab-{n}-plugins"),
        ],
    }
}

/// A Docker engine, driven with the docker CLI.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The `-H` address.
    pub host: String,
    /// Whether the lab started this engine (then `down` stops it).
    pub private: bool,
    /// The lab slot this engine serves (its network's addresses follow from it).
    pub slot: u8,
}

fn private_host(slot: u8) -> String {
    format!("unix://{}/docker.sock", run_dir(slot).display())
}

fn answers(host: &str) -> bool {
    Command::new("docker")
        .args(["-H", host, "version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Engine {
    /// The engine of slot 0 (the lab `cargo xtask lab` works on), if one answers: `DOCKER_HOST`,
    /// the lab's private one, the default socket.
    pub fn find() -> Option<Engine> {
        Engine::find_slot(0)
    }

    /// The engine of `slot`, if one answers. Slots past 0 only ever use their own private engine
    /// (two labs on one engine would share container names).
    pub fn find_slot(slot: u8) -> Option<Engine> {
        if !host::have("docker") {
            return None;
        }
        // DOCKER_HOST for slot 0, unless it names another slot's private engine (one engine
        // for two labs would give them the same container names).
        if slot == 0
            && let Ok(h) = std::env::var("DOCKER_HOST")
            && !(1..SLOTS).any(|n| h == private_host(n))
            && answers(&h)
        {
            return Some(Engine { private: h == private_host(0), host: h, slot });
        }
        if answers(&private_host(slot)) {
            return Some(Engine { host: private_host(slot), private: true, slot });
        }
        if slot > 0 {
            return None;
        }
        let default = "unix:///var/run/docker.sock";
        answers(default).then(|| Engine { host: default.into(), private: false, slot })
    }

    /// The engine of slot 0, or a private dockerd started now.
    pub fn ensure() -> Result<Engine> {
        Engine::ensure_slot(0)
    }

    /// The engine of `slot`, or a private dockerd started now for it.
    pub fn ensure_slot(slot: u8) -> Result<Engine> {
        if let Some(e) = Engine::find_slot(slot) {
            return Ok(e);
        }
        host::ensure_packages(&[("dockerd", "docker.io"), ("docker", "docker.io")])?;
        // Debian starts its own docker.service on install where systemd runs; use it if it answers.
        if let Some(e) = Engine::find_slot(slot) {
            return Ok(e);
        }
        let (run, data, log_path) = (run_dir(slot), data_dir(slot), log_file(slot));
        std::fs::create_dir_all(&run)?;
        std::fs::create_dir_all(&data)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        // No iptables or NAT: the lab network is a plain bridge and needs no way out.
        Command::new("setsid")
            .arg("dockerd")
            .arg(format!("--host={}", private_host(slot)))
            .arg(format!("--data-root={}", data.display()))
            .arg(format!("--exec-root={}/exec", run.display()))
            .arg(format!("--pidfile={}/dockerd.pid", run.display()))
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .args(containerd_namespaces(slot))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start dockerd")?;
        let t0 = Instant::now();
        while !answers(&private_host(slot)) {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the lab's dockerd did not answer within 60 s; see {}", log_path.display());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!(
            "lab: started a private dockerd at {} (log {})",
            private_host(slot),
            log_path.display()
        );
        Ok(Engine { host: private_host(slot), private: true, slot })
    }

    /// Path of a file in this engine's runtime directory.
    pub fn run_path(&self, name: &str) -> PathBuf {
        run_dir(self.slot).join(name)
    }

    /// Stops the private engine (only one the lab started).
    pub fn stop_private(&self) -> Result<()> {
        if !self.private {
            return Ok(());
        }
        let pidfile = run_dir(self.slot).join("dockerd.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else { return Ok(()) };
        let pid = pid.trim().to_string();
        let _ = Command::new("kill").arg(&pid).status();
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && t0.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        Ok(())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(["-H", &self.host]).args(args);
        c
    }

    /// `docker ARGS`: its stdout, trimmed.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        Ok(host::run(&mut self.cmd(args))?.trim().to_string())
    }

    /// `docker ARGS` with a file as stdin.
    pub fn docker_stdin(&self, args: &[&str], input: &Path) -> Result<String> {
        let file =
            std::fs::File::open(input).with_context(|| format!("open {}", input.display()))?;
        let mut child =
            self.cmd(args).stdin(file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out)?;
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err)?;
        if !child.wait()?.success() {
            bail!("docker {} < {} failed: {}", args.join(" "), input.display(), err.trim());
        }
        Ok(out)
    }

    /// `docker exec NODE sh -c SCRIPT`: its stdout, trimmed.
    pub fn sh(&self, node: &str, script: &str) -> Result<String> {
        self.docker(&["exec", node, "sh", "-c", script])
            .with_context(|| format!("on {node}: {script}"))
    }

    /// A `docker` command for the caller to run with inherited stdio.
    pub fn command(&self, args: &[&str]) -> Command {
        self.cmd(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_zero_keeps_the_labs_paths_and_the_others_have_their_own() {
        assert_eq!(run_dir(0), Path::new("/run/swarm-upgrade-lab"));
        assert_eq!(data_dir(1), Path::new("/var/lib/swarm-upgrade-lab-1"));
        assert_eq!(log_file(0), Path::new("/var/log/swarm-upgrade-lab-dockerd.log"));
        assert_eq!(log_file(2), Path::new("/var/log/swarm-upgrade-lab-2-dockerd.log"));
        assert_eq!(private_host(1), "unix:///run/swarm-upgrade-lab-1/docker.sock");
        assert!(containerd_namespaces(0).is_empty());
        assert_eq!(containerd_namespaces(2)[0], "--containerd-namespace=swarm-upgrade-lab-2");
    }
}
