//! The scale benchmark (`cargo bench --bench scale`): the planner's CPU time on generated fleets.
//! `cargo bench --bench scale -- snapshot 2500 > fleet.json` writes a fleet's snapshot instead
//! (for `swarm-upgrade plan --snapshot fleet.json`).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::Instant;

use swarm_upgrade::config::Settings;
use swarm_upgrade::planner::{self, PlanRequest};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if let [cmd, n] = args.as_slice()
        && cmd == "snapshot"
    {
        let n: usize = n.parse().expect("snapshot NODES");
        println!("{}", serde_json::to_string(&common::fleet::fleet(n)).unwrap());
        return;
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![5, 50, 100, 200, 500, 1000, 2500] } else { sizes };
    let settings = Settings::default();
    println!("| nodes | tasks | plan (CPU) |");
    println!("|---|---|---|");
    for n in sizes {
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
    let _ = PlanRequest::default();
}
