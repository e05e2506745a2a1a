//! The scale benchmark (`cargo bench --bench scale`): the planner's CPU time on generated fleets.
//! `cargo bench --bench scale -- sim [--parallel N|P%] [SIZES]` runs the scale simulation
//! instead: the real coordinator upgrading each fleet over the fake cluster on simulated time
//! (workers `--parallel` at once, default 1), one process per size (so each peak memory is its
//! own), printed as a table and then as JSON.
//! `cargo bench --bench scale -- snapshot 2500 > fleet.json` writes a fleet's snapshot
//! (for `swarm-upgrade plan --snapshot fleet.json`).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::Instant;

use common::simulate::simulate;
use swarm_upgrade::config::{Parallel, Settings};
use swarm_upgrade::planner;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let parallel: Parallel = match args.iter().position(|a| a == "--parallel") {
        Some(at) if at + 1 < args.len() => {
            let value = args.remove(at + 1);
            args.remove(at);
            value.parse().unwrap_or_else(|e| panic!("--parallel {e}"))
        }
        _ => Parallel::default(),
    };
    let sizes = |default: &[usize]| {
        let given: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
        if given.is_empty() { default.to_vec() } else { given }
    };
    match args.first().map(String::as_str) {
        Some("snapshot") => {
            let n = sizes(&[2500])[0];
            println!("{}", serde_json::to_string(&common::fleet::fleet(n)).unwrap());
        }
        Some("sim-one") => {
            println!("{}", serde_json::to_string(&simulate(sizes(&[5])[0], parallel)).unwrap());
        }
        Some("sim") => simulation(&sizes(&[5, 50, 500, 1000, 2500]), parallel),
        _ => planning(&sizes(&[5, 50, 100, 200, 500, 1000, 2500])),
    }
}

/// The planner's CPU time per fleet size.
fn planning(sizes: &[usize]) {
    let settings = Settings::default();
    println!("| nodes | tasks | plan (CPU) |");
    println!("|---|---|---|");
    for &n in sizes {
        let snap = common::fleet::fleet(n);
        let started = Instant::now();
        let plan = planner::plan(&snap, &settings, &common::to(common::NEW));
        let took = started.elapsed();
        let verdict = match &plan {
            Ok(p) => format!("{} nodes planned", p.nodes.len()),
            Err(r) => format!("refused: {}", r[0]),
        };
        println!("| {n} | {} | {:.3} s ({verdict}) |", snap.tasks.len(), took.as_secs_f64());
    }
}

/// The simulation per fleet size, each in a process of its own.
fn simulation(sizes: &[usize], parallel: Parallel) {
    let me = std::env::current_exe().expect("the benchmark's own path");
    let mut all: Vec<serde_json::Value> = Vec::new();
    println!(
        "| nodes | parallel | tasks | outcome | lease kept | simulated | Docker calls /node | swarm reads /node (whole) | objects /poll | objects /whole read | agent calls /node | store writes /node | bytes written /node | largest write | largest document | bytes read /load | CPU (cluster part) | peak memory |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let out = std::process::Command::new(&me)
            .args(["sim-one", "--parallel", &parallel.to_string(), &n.to_string()])
            .output()
            .expect("the simulation runs");
        let line = String::from_utf8_lossy(&out.stdout);
        let Ok(f) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            println!(
                "| {n} | simulation failed: {} |",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            continue;
        };
        row(&serde_json::from_value::<FiguresRow>(f.clone()).expect("figures"));
        all.push(f);
    }
    println!("\n{}", serde_json::to_string_pretty(&all).unwrap());
}

/// The figures as read back from a simulation's process.
type FiguresRow = serde_json::Map<String, serde_json::Value>;

fn row(f: &FiguresRow) {
    let num = |k: &str| f.get(k).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    let text = |k: &str| f.get(k).map(ToString::to_string).unwrap_or_default();
    let hours = num("simulated_s") / 3600.0;
    println!(
        "| {} | {} | {} | {} ({}/{} upgraded, {} dips) | {} | {:.1} h | {:.0} | {:.1} ({:.1}) | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} B | {:.0} B | {:.0} B | {:.0} B | {:.1} s ({:.1} s) | {:.0} MiB |",
        num("nodes"),
        text("parallel").trim_matches('"'),
        num("tasks"),
        text("outcome").trim_matches('"'),
        num("upgraded"),
        num("nodes"),
        num("capacity_dips"),
        text("lease_kept"),
        hours,
        num("docker_per_node"),
        num("reads_per_node"),
        num("whole_reads_per_node"),
        num("listed_per_poll"),
        num("listed_per_whole_read"),
        num("agent_per_node"),
        num("store_saves_per_node"),
        num("store_bytes_per_node"),
        num("largest_write"),
        num("largest_document"),
        num("store_read_per_load"),
        num("cpu_s"),
        num("cluster_s"),
        num("peak_mib"),
    );
}
