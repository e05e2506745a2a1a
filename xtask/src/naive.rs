//! The naive baseline: what the usual Ansible play does, node by node in inventory order: drain,
//! a fixed sleep, `apt-get install` of the version, restart, activate. No surge, no convergence
//! check. It exists so every figure of swarm-upgrade can be compared with it in the same lab.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::engine::Engine;
use crate::topology::{Host, running_nodes};

/// One node's part of the baseline.
#[derive(Clone, Debug, Serialize)]
pub struct NodeTime {
    /// The node.
    pub node: String,
    /// Seconds from drain to activate.
    pub seconds: f64,
}

/// The baseline's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The version installed.
    pub to: String,
    /// The fixed sleep after each drain.
    pub sleep_s: f64,
    /// Each node.
    pub nodes: Vec<NodeTime>,
    /// The whole run.
    pub total_s: f64,
}

/// A manager other than `node` to send swarm commands to (the node's own engine restarts).
fn other_manager<'a>(nodes: &'a [Host], node: &str) -> &'a str {
    nodes
        .iter()
        .find(|n| n.name.starts_with("manager") && n.name != node)
        .map_or("manager1", |n| n.name.as_str())
}

/// Upgrades every node the naive way.
pub fn upgrade(engine: &Engine, to: &str, sleep: Duration) -> Result<Outcome> {
    let t0 = Instant::now();
    let mut nodes = vec![];
    let all = running_nodes(engine)?;
    for n in &all {
        let t = Instant::now();
        eprintln!(
            "naive: {}: drain, sleep {sleep:?}, apt-get install {to}, restart, activate",
            n.name
        );
        availability(engine, &all, &n.name, "drain")?;
        std::thread::sleep(sleep);
        engine.sh(
            &n.name,
            &format!(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold docker-ce={to} docker-ce-cli={to} containerd.io >/dev/null"
            ),
        )?;
        engine.sh(&n.name, "systemctl restart docker")?;
        availability(engine, &all, &n.name, "active")?;
        nodes.push(NodeTime { node: n.name.clone(), seconds: t.elapsed().as_secs_f64() });
    }
    Ok(Outcome {
        to: to.to_string(),
        sleep_s: sleep.as_secs_f64(),
        nodes,
        total_s: t0.elapsed().as_secs_f64(),
    })
}

/// `docker node update --availability drain|active`, retried while the managers elect a leader
/// (the previous manager's restart: "node lost leader status"), as an Ansible task with retries.
fn availability(engine: &Engine, all: &[Host], node: &str, to: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        match engine
            .sh(other_manager(all, node), &format!("docker node update --availability {to} {node}"))
        {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() > Duration::from_secs(120) => {
                bail!("setting {node} to {to}: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}
