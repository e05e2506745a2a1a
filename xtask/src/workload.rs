//! The lab workload, deployed from `manager1`: `web` (4 replicas, at most one per node, host-mode
//! port 8080), `solo` (1 replica, port 8081) and `agentcheck` (global), all running `lab-web` with
//! a health check and a graceful stop; and the balancer's haproxy configuration in front of every
//! node's published ports.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::engine::Engine;
use crate::topology::{MANAGER, NODES};

/// The workload image's tag in every node's engine.
pub const IMAGE: &str = "swarm-upgrade-lab/web:1";
/// The services and the replicas each must run when converged.
pub const SERVICES: &[(&str, u32)] = &[("web", 4), ("solo", 1), ("agentcheck", 5)];
/// The balancer's ports: `web` on 80, `solo` on 81, haproxy's stats on 8404.
pub const WEB_PORT: u16 = 80;
/// See [`WEB_PORT`].
pub const SOLO_PORT: u16 = 81;

/// Loads the workload image into one node's engine.
pub fn load_image(engine: &Engine, node: &str, tar: &Path) -> Result<()> {
    engine.docker_stdin(
        &[
            "exec",
            "-i",
            node,
            "docker",
            "import",
            "--change",
            "CMD [\"/lab-web\", \"web\", \"serve\", \"8080\"]",
            "-",
            IMAGE,
        ],
        tar,
    )?;
    Ok(())
}

fn service_args(name: &str) -> Vec<String> {
    let common = [
        "--detach",
        "--no-resolve-image",
        "--env",
        "NODE={{.Node.Hostname}}",
        "--env",
        "TASK={{.Task.Name}}",
        "--stop-grace-period",
        "10s",
        "--health-interval",
        "1s",
        "--health-timeout",
        "2s",
        "--health-retries",
        "2",
        "--update-order",
        "start-first",
    ];
    let mut a: Vec<String> = vec!["service".into(), "create".into(), "--name".into(), name.into()];
    a.extend(common.iter().map(|s| s.to_string()));
    let (extra, port): (&[&str], u16) = match name {
        "web" => (
            &[
                "--replicas",
                "4",
                "--replicas-max-per-node",
                "1",
                "--publish",
                "mode=host,published=8080,target=8080",
            ],
            8080,
        ),
        "solo" => (&["--replicas", "1", "--publish", "mode=host,published=8081,target=8081"], 8081),
        _ => (&["--mode", "global"], 9090),
    };
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(["--health-cmd".into(), format!("/lab-web web check {port}")]);
    a.extend([IMAGE.into(), "/lab-web".into(), "web".into(), "serve".into(), port.to_string()]);
    a
}

/// Creates the services on `manager1`.
pub fn deploy(engine: &Engine) -> Result<()> {
    for (name, _) in SERVICES {
        let mut args: Vec<String> = vec!["exec".into(), MANAGER.into(), "docker".into()];
        args.extend(service_args(name));
        engine.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// Running replicas of each service, as `docker service ls` shows them on `manager1`.
pub fn replicas(engine: &Engine) -> Result<Vec<(String, String)>> {
    let out = engine.docker(&[
        "exec",
        MANAGER,
        "docker",
        "service",
        "ls",
        "--format",
        "{{.Name}} {{.Replicas}}",
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect())
}

/// Waits until every service runs all its replicas.
pub fn wait_converged(engine: &Engine, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let now = replicas(engine).unwrap_or_default();
        let done = SERVICES.iter().all(|(name, want)| {
            now.iter().any(|(n, r)| n == name && r.starts_with(&format!("{want}/{want}")))
        });
        if done {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("the workload did not converge within {limit:?}: {now:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// haproxy's configuration: health-checked backends on every node's published ports; a failed
/// connection is retried on another server.
pub fn haproxy_cfg() -> String {
    let mut c = String::from(
        "global
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout 503
    default-server inter 500ms fall 1 rise 2

frontend stats
    bind :8404
    stats enable
    stats uri /

",
    );
    for (name, port, backend_port) in [("web", WEB_PORT, 8080), ("solo", SOLO_PORT, 8081)] {
        let _ = write!(
            c,
            "frontend {name}\n    bind :{port}\n    default_backend {name}\n\nbackend {name}\n    option httpchk GET /health\n    http-check expect status 200\n"
        );
        for n in NODES {
            let _ = writeln!(c, "    server {} {}:{backend_port} check", n.name, n.ip);
        }
        c.push('\n');
    }
    c
}
