//! Test support: an in-memory cluster with real semantics, and builders.
#![allow(dead_code)]

pub mod dockerd;
pub mod fake;
pub mod fleet;
pub mod generate;
pub mod latency;
pub mod node;
pub mod scheduler;
pub mod simulate;
pub mod world;

use std::collections::BTreeMap;

use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::{Coordinator, Ports};
use swarm_upgrade::model::*;
use swarm_upgrade::planner::PlanRequest;

pub use fake::{FakeCluster, TestClock};
pub use world::{Host, World};

pub const OLD: &str = "5:26.1.5-1~debian.13~trixie";
pub const NEW: &str = "5:28.5.2-1~debian.13~trixie";
pub const BROKEN: &str = "5:28.5.3-1~debian.13~trixie";

pub fn v(s: &str) -> DebVersion {
    s.parse().unwrap()
}

/// The bundled five-node snapshot.
pub fn fixture() -> ClusterSnapshot {
    serde_json::from_str(include_str!("../fixtures/five-node.json")).unwrap()
}

/// A world holding exactly what a snapshot shows, with each host's packages from its agent report.
pub fn world_from(snap: &ClusterSnapshot) -> World {
    let hosts = snap
        .nodes
        .iter()
        .map(|n| {
            let report = snap.agent_report(&n.id).cloned().unwrap_or_default();
            Host {
                hostname: n.hostname.clone(),
                addr: n.addr.clone(),
                installed: PackageSet(report.installed.clone()),
                available: report.available.clone(),
                engine_active: true,
                agent_up: true,
                local_id: Some(n.id.clone()),
                down_ticks: 0,
                standalone: report.standalone.clone(),
                swarm_backups: Vec::new(),
                hooks: BTreeMap::new(),
            }
        })
        .collect();
    World {
        hosts,
        nodes: snap.nodes.clone(),
        services: snap.services.clone(),
        tasks: snap.tasks.clone(),
        next_id: 0,
        store_text: String::new(),
        count_writes: false,
        last_layout: None,
        store_writes: Vec::new(),
        store_version: 1,
        broken: Some(v(BROKEN)),
        wipe_on_restart: None,
        fail_prefetch_on: None,
        busy_upgrades: 0,
        fail_upgrade_on: None,
        hang_restart_on: None,
        fail_rollback_on: None,
        min_running: BTreeMap::new(),
        floor: BTreeMap::new(),
        highest_token: BTreeMap::new(),
        miss_next_scale_down: false,
        missed_scale_down: Default::default(),
        index: 1000,
        rival_before_write_on: None,
        operator_before_write_on: None,
        unlock_key: None,
        describes: Vec::new(),
        current_at: None,
        describe_takes: std::time::Duration::ZERO,
        prefetched: Default::default(),
        fail_next_prefetch_on: None,
        timed: None,
        dirty: true,
        reconciled_at: 0,
        calls: Default::default(),
        saved_doc: None,
        log: Vec::new(),
    }
}

pub fn to(version: &str) -> PlanRequest {
    PlanRequest { to: Some(version.parse().unwrap()), ..Default::default() }
}

/// Runs a coordinator named `holder` over the fake to the end of the run.
pub async fn run(
    cluster: &FakeCluster,
    settings: &Settings,
    req: &PlanRequest,
    holder: &str,
) -> Result<swarm_upgrade::run::RunRecord, swarm_upgrade::coordinator::CoordinatorError> {
    let clock = TestClock::new();
    let ports = Ports { swarm: cluster, agents: cluster, store: cluster, clock: &clock };
    Coordinator::new(ports, settings, holder).run(req, "run-1").await
}

/// Resumes over the fake, waiting for the lease.
pub async fn resume(
    cluster: &FakeCluster,
    settings: &Settings,
    holder: &str,
) -> Result<swarm_upgrade::run::RunRecord, swarm_upgrade::coordinator::CoordinatorError> {
    resume_with(cluster, settings, holder, &TestClock::new()).await
}

/// Resumes over the fake on `clock` (e.g. one that goes on from the interrupted coordinator's).
pub async fn resume_with(
    cluster: &FakeCluster,
    settings: &Settings,
    holder: &str,
    clock: &TestClock,
) -> Result<swarm_upgrade::run::RunRecord, swarm_upgrade::coordinator::CoordinatorError> {
    let ports = Ports { swarm: cluster, agents: cluster, store: cluster, clock };
    Coordinator::new(ports, settings, holder).resume(true).await
}

/// Every host at `version`, every node Ready at its engine version and original availability.
pub fn assert_all_at(world: &World, version: &str, original: &BTreeMap<String, Availability>) {
    for h in &world.hosts {
        assert_eq!(h.installed.get("docker-ce"), Some(&v(version)), "{} packages", h.hostname);
        let n = world
            .nodes
            .iter()
            .find(|n| Some(&n.id) == h.local_id.as_ref())
            .expect("host has a node entry");
        assert_eq!(n.state, NodeState::Ready, "{} state", h.hostname);
        assert_eq!(n.engine_version, v(version).engine_version(), "{} engine", h.hostname);
        assert_eq!(Some(&n.availability), original.get(&h.hostname), "{} availability", h.hostname);
    }
}

pub fn availabilities(world: &World) -> BTreeMap<String, Availability> {
    world.nodes.iter().map(|n| (n.hostname.clone(), n.availability)).collect()
}

/// How a run may end: every node at target; or, when the swarm placed tasks where the guard before
/// a node found them unmovable, halted right there. Either way no node is left mid-upgrade or away
/// from its original availability, each node is wholly upgraded or untouched, and every service
/// has converged.
pub fn check_end(
    rec: &swarm_upgrade::run::RunRecord,
    w: &World,
    before: &std::collections::BTreeMap<String, Availability>,
) -> Result<(), String> {
    use swarm_upgrade::machine::Phase;
    use swarm_upgrade::model::convergence::first_unconverged;
    use swarm_upgrade::run::{Halt, Outcome};
    let halted_by_guard = rec.outcome == Some(Outcome::Failed) && rec.halt == Some(Halt::Guard);
    if rec.outcome != Some(Outcome::Succeeded) && !halted_by_guard {
        return Err(format!("run ended {:?}: {:?}", rec.outcome, rec.reason));
    }
    for (n, h) in rec
        .nodes
        .iter()
        .zip(rec.nodes.iter().map(|n| w.hosts.iter().find(|h| h.hostname == n.hostname).unwrap()))
    {
        let expect = match n.phase {
            Phase::Done => NEW,
            Phase::Pending => OLD,
            other => return Err(format!("{} left in phase {other:?}", n.hostname)),
        };
        if h.installed.get("docker-ce") != Some(&v(expect)) {
            return Err(format!(
                "{} is {:?} at {:?}, expected {expect}",
                n.hostname,
                n.phase,
                h.installed.get("docker-ce")
            ));
        }
    }
    if availabilities(w) != *before {
        return Err(format!("availability changed: {:?} -> {:?}", before, availabilities(w)));
    }
    match first_unconverged(&w.snapshot(jiff::Timestamp::UNIX_EPOCH)) {
        None => Ok(()),
        Some(c) => Err(format!("not converged at the end: {c:?}")),
    }
}
