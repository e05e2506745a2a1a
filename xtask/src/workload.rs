//! The lab workload, deployed from `manager1`: `web` (a replica on all nodes but one, at most one
//! per node, host-mode port 8080: 4 on the default five nodes), `solo` (1 replica, port 8081) and `agentcheck` (global), all running `lab-web` with
//! a health check and a graceful stop; and the balancer's haproxy configuration in front of every
//! node's published ports.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::engine::Engine;
use crate::topology::{Host, MANAGER, running_nodes};

/// The workload image's tag in every node's engine.
pub const IMAGE: &str = "swarm-upgrade-lab/web:1";
/// The services and the replicas each must run when converged on a lab of `nodes` nodes: `web`
/// leaves one node free for its surge (on a lab bigger than five nodes, five: room for a batch of
/// four workers, `--parallel 4`), `agentcheck` runs on every node.
pub fn services(nodes: usize) -> [(&'static str, u32); 3] {
    let n = u32::try_from(nodes).unwrap_or(u32::MAX);
    let free = if n > 5 { 5 } else { 1 };
    [("web", n.saturating_sub(free).max(1)), ("solo", 1), ("agentcheck", n)]
}
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

/// Health checks every second while a task starts (so it is healthy as soon as it answers), then
/// every 5 s: each check is a process run in the container, and two cores cannot run one a second
/// per task beside the engines (measured: a 3+12 lab with 1 s checks stayed at a load of 50 and
/// each node took 2.5 min; with these, 40 s. The five-node rolling run went from 274 s to 210 s).
/// With two retries a task that turns unhealthy is marked so after about 10 s, not 2 s; the
/// balancer's own checks (every 500 ms) are what steer requests away from a stopping task.
const HEALTH_INTERVAL: &str = "5s";

fn service_args(name: &str, replicas: u32) -> Vec<String> {
    let common = [
        "--detach",
        "--no-resolve-image",
        "--env",
        "NODE={{.Node.Hostname}}",
        "--env",
        "TASK={{.Task.Name}}",
        "--stop-grace-period",
        "10s",
        "--health-timeout",
        "2s",
        "--health-retries",
        "2",
        "--update-order",
        "start-first",
    ];
    let mut a: Vec<String> = vec!["service".into(), "create".into(), "--name".into(), name.into()];
    a.extend(common.iter().map(|s| s.to_string()));
    a.extend(
        [
            "--health-interval",
            HEALTH_INTERVAL,
            "--health-start-period",
            "60s",
            "--health-start-interval",
            "1s",
        ]
        .map(String::from),
    );
    let replicas = replicas.to_string();
    let (extra, port): (&[&str], u16) = match name {
        "web" => (
            &[
                "--replicas",
                &replicas,
                "--replicas-max-per-node",
                "1",
                "--publish",
                "mode=host,published=8080,target=8080",
            ],
            8080,
        ),
        "solo" => (&["--replicas", "1", "--publish", "mode=host,published=8081,target=8081"], 8081),
        "pinned" => {
            (&["--replicas", "1", "--publish", "mode=host,published=8082,target=8082"], 8082)
        }
        _ => (&["--mode", "global"], 9090),
    };
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(["--health-cmd".into(), format!("/lab-web web check {port}")]);
    a.extend([IMAGE.into(), "/lab-web".into(), "web".into(), "serve".into(), port.to_string()]);
    a
}

/// Creates the services on `manager1`, sized for a lab of `nodes` nodes.
pub fn deploy(engine: &Engine, nodes: usize) -> Result<()> {
    for (name, replicas) in services(nodes) {
        let mut args: Vec<String> = vec!["exec".into(), MANAGER.into(), "docker".into()];
        args.extend(service_args(name, replicas));
        engine.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// The published port of [`deploy_pinned`]'s service, on its node (not behind the balancer, as
/// a database pinned to its volume's node usually is not).
pub const PINNED_PORT: u16 = 8082;

/// Creates `pinned`: one replica that only `node` may run (`node.hostname==<node>`, as a
/// database with a local volume is pinned), published on [`PINNED_PORT`]; its drain is an
/// outage unless an operator accepts it. Waits until it runs.
pub fn deploy_pinned(engine: &Engine, node: &str, limit: Duration) -> Result<()> {
    let mut args: Vec<String> = vec!["exec".into(), MANAGER.into(), "docker".into()];
    args.extend(service_args("pinned", 1));
    let image = args.iter().position(|a| a == IMAGE).expect("the image is an argument");
    args.splice(image..image, ["--constraint".into(), format!("node.hostname=={node}")]);
    engine.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let t0 = Instant::now();
    loop {
        let now = replicas(engine)?;
        if now.iter().any(|(n, r)| n == "pinned" && r.starts_with("1/1")) {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("pinned did not run on {node} within {limit:?}: {now:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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
    wait_converged_at(engine, &[], limit)
}

/// As [`wait_converged`], with the replica counts of some services changed by the scenario.
pub fn wait_converged_at(engine: &Engine, changed: &[(&str, u32)], limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut want = services(running_nodes(engine)?.len());
    for (name, count) in &mut want {
        if let Some((_, c)) = changed.iter().find(|(n, _)| n == name) {
            *count = *c;
        }
    }
    loop {
        let now = replicas(engine).unwrap_or_default();
        let done = want.iter().all(|(name, want)| {
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

/// haproxy's configuration: health-checked backends on every node's published ports (a check may
/// connect within 500 ms and then answer within 1 s, so that a busy machine's slow answer is not
/// a dead server); a failed connection is retried on another server.
pub fn haproxy_cfg(nodes: &[Host]) -> String {
    let mut c = String::from(
        "global
    maxconn 4096
    # The runtime API on TCP (issue 17's hooks set servers to maint and back through it).
    stats socket ipv4@0.0.0.0:9999 level admin

defaults
    mode http
    timeout connect 1s
    timeout check 1s
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
        for n in nodes {
            let _ = writeln!(c, "    server {} {}:{backend_port} check", n.name, n.ip);
        }
        c.push('\n');
    }
    c
}
