//! The demo: the lab up, the load running, `swarm-upgrade run` on `manager1` with its progress on
//! screen, then the outcome: nodes upgraded, time per node, requests sent and failed.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::lab;
use crate::load;

/// Runs the demo; an error when the upgrade did not complete.
pub fn run(opts: &lab::Options) -> Result<()> {
    let (engine, timings) = lab::up(opts)?;
    eprintln!(
        "demo: lab up in {:.0} s; starting the load (50 requests/s through the balancer)",
        timings.total().as_secs_f64()
    );
    let load = load::start(load::Options {
        targets: vec![
            format!("{}/", lab::balancer_web(opts.slot)),
            format!("{}/", lab::balancer_solo(opts.slot)),
        ],
        rate: 50,
        timeout: Duration::from_secs(5),
    });
    let t0 = Instant::now();
    // A terminal for the live progress, without stdin: `--yes`, as the question could not be
    // answered (the demo runs unattended).
    let status = engine
        .command(&["exec", "-t", lab::MANAGER, "swarm-upgrade", "run", "--yes", "--to", "28.5.2"])
        .status()?;
    let took = t0.elapsed();
    let report = load.stop();
    let versions = engine
        .sh(
            lab::MANAGER,
            "docker node ls --format '{{.Hostname}} {{.EngineVersion}} {{.Availability}}'",
        )
        .unwrap_or_default();
    println!("demo: swarm-upgrade run took {:.0} s and exited with {status}", took.as_secs_f64());
    println!("demo: nodes now:\n{versions}");
    if let Ok(status) =
        engine.docker(&["exec", lab::MANAGER, "swarm-upgrade", "--output", "json", "status"])
        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&status)
    {
        println!("demo: time per node (seconds per phase):");
        for (node, phases) in crate::scenario::phase_seconds(&doc["run"]) {
            let total: f64 = phases.iter().map(|(_, s)| s).sum();
            println!(
                "  {node:<9} {total:>6.1} s  {}",
                phases.iter().map(|(p, s)| format!("{p} {s}")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    println!("demo: load: {}", report.summary());
    match status.code() {
        Some(0) => {
            let upgraded = versions
                .lines()
                .filter(|l| l.split_whitespace().nth(1).is_some_and(|v| v.starts_with("28.5.2+")))
                .count();
            let all = opts.shape.len();
            if upgraded != all {
                bail!(
                    "swarm-upgrade run succeeded but only {upgraded} of {all} nodes report 28.5.2"
                );
            }
            Ok(())
        }
        _ => bail!(
            "swarm-upgrade run failed ({status}); the lab is still up for a look: `cargo xtask lab status`"
        ),
    }
}
