//! The engine the lab's containers run on: the one at `DOCKER_HOST` (or the default socket) if it
//! answers, otherwise a private dockerd the lab starts itself (installing Debian's docker.io first).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::host;

/// Runtime directory of the lab's private engine (socket, pid file).
pub const RUN: &str = "/run/swarm-upgrade-lab";
/// Data root of the lab's private engine: its image store is a cache kept across `down`.
pub const DATA: &str = "/var/lib/swarm-upgrade-lab";
const LOG: &str = "/var/log/swarm-upgrade-lab-dockerd.log";

/// A Docker engine, driven with the docker CLI.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The `-H` address.
    pub host: String,
    /// Whether the lab started this engine (then `down` stops it).
    pub private: bool,
}

fn private_host() -> String {
    format!("unix://{RUN}/docker.sock")
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
    /// The engine in use, if one answers: `DOCKER_HOST`, the lab's private one, the default socket.
    pub fn find() -> Option<Engine> {
        if !host::have("docker") {
            return None;
        }
        if let Ok(h) = std::env::var("DOCKER_HOST")
            && answers(&h)
        {
            return Some(Engine { private: h == private_host(), host: h });
        }
        if answers(&private_host()) {
            return Some(Engine { host: private_host(), private: true });
        }
        let default = "unix:///var/run/docker.sock";
        answers(default).then(|| Engine { host: default.into(), private: false })
    }

    /// The engine in use, or a private dockerd started now.
    pub fn ensure() -> Result<Engine> {
        if let Some(e) = Engine::find() {
            return Ok(e);
        }
        host::ensure_packages(&[("dockerd", "docker.io"), ("docker", "docker.io")])?;
        // Debian starts its own docker.service on install where systemd runs; use it if it answers.
        if let Some(e) = Engine::find() {
            return Ok(e);
        }
        std::fs::create_dir_all(RUN)?;
        std::fs::create_dir_all(DATA)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(LOG)?;
        // No iptables or NAT: the lab network is a plain bridge and needs no way out.
        Command::new("setsid")
            .arg("dockerd")
            .arg(format!("--host={}", private_host()))
            .arg(format!("--data-root={DATA}"))
            .arg(format!("--exec-root={RUN}/exec"))
            .arg(format!("--pidfile={RUN}/dockerd.pid"))
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start dockerd")?;
        let t0 = Instant::now();
        while !answers(&private_host()) {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the lab's dockerd did not answer within 60 s; see {LOG}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!("lab: started a private dockerd at {} (log {LOG})", private_host());
        Ok(Engine { host: private_host(), private: true })
    }

    /// Stops the private engine (only one the lab started).
    pub fn stop_private(&self) -> Result<()> {
        if !self.private {
            return Ok(());
        }
        let pidfile = Path::new(RUN).join("dockerd.pid");
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

/// Path of a file in the lab's runtime directory.
pub fn run_path(name: &str) -> PathBuf {
    Path::new(RUN).join(name)
}
