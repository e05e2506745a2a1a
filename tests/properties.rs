//! Properties over random clusters (256 cases each): quorum is never risked, no node is drained
//! whose tasks cannot run elsewhere, racing coordinators never both hold the lock, a run
//! interrupted anywhere and resumed ends at target, and surge keeps every service's capacity.

mod common;

use std::time::Duration;

use common::generate::{any_cluster, build, healthy_cluster, observed};
use common::*;
use jiff::Timestamp;
use proptest::prelude::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::CoordinatorError;
use swarm_upgrade::lock::StoreDoc;
use swarm_upgrade::model::{
    Availability, NodeState, Reachability, Role, convergence::first_unconverged,
};
use swarm_upgrade::planner::{guard, plan};
use swarm_upgrade::run::{Halt, Outcome, RunFlags};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, max_global_rejects: 100_000, ..ProptestConfig::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Whenever a plan is accepted, taking down any one of its managers leaves a quorum, counted
    /// directly from the snapshot.
    #[test]
    fn no_plan_takes_down_a_manager_when_quorum_would_be_lost(spec in any_cluster()) {
        let world = build(&spec);
        let snap = observed(&world);
        if let Ok(p) = plan(&snap, &Settings::default(), &to(NEW)) {
            let total = snap.nodes.iter().filter(|n| n.role == Role::Manager).count();
            let up = snap.nodes.iter().filter(|n| {
                n.role == Role::Manager && n.state == NodeState::Ready && n.manager.as_ref().unwrap().reachability == Reachability::Reachable
            }).count();
            for n in p.nodes.iter().filter(|n| n.role == Role::Manager) {
                prop_assert!(total > 1, "a single manager is only upgraded with the explicit opt-in ({})", n.hostname);
                prop_assert!(up - 1 > total / 2, "{}: {up} of {total} managers up; one down loses quorum", n.hostname);
            }
        }
    }

    /// For every node in plan order, with the cluster as the swarm actually left it, the guard's
    /// approval means the swarm (the fake's own scheduler) really runs all of the node's tasks
    /// elsewhere once it is drained; and an accepted plan's first node is approved.
    #[test]
    fn no_node_is_drained_whose_tasks_cannot_run_elsewhere(spec in any_cluster()) {
        let mut world = build(&spec);
        let snap = observed(&world);
        let Ok(p) = plan(&snap, &Settings::default(), &to(NEW)) else { return Ok(()) };
        for (i, n) in p.nodes.iter().enumerate() {
            let now = observed(&world);
            let verdict = guard(&now, &Settings::default(), &RunFlags::default(), &n.node, &p.packages);
            if i == 0 {
                prop_assert!(verdict.is_ok(), "the plan accepted {} but the guard refuses: {verdict:?}", n.hostname);
            }
            if verdict.is_err() {
                break;
            }
            world.node_mut(&n.node).unwrap().availability = Availability::Drain;
            let converged = world.settle(4);
            let unconverged = first_unconverged(&world.snapshot(Timestamp::UNIX_EPOCH));
            prop_assert!(converged, "after draining {}: {unconverged:?}", n.hostname);
            world.node_mut(&n.node).unwrap().availability = Availability::Active;
            world.settle(4);
        }
    }

    /// Two coordinators interleave reads, compare-and-swap writes and the passing of time; at no
    /// moment do both believe they hold a usable lock.
    #[test]
    fn racing_coordinators_never_both_hold_the_lock(steps in prop::collection::vec((0usize..2, 0u8..4, 0u64..40), 1..80)) {
        let lease = Duration::from_secs(30);
        let target = v(NEW);
        let mut store = (StoreDoc::default(), 0u64);
        let mut now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut read: [Option<(StoreDoc, u64)>; 2] = [None, None];
        let mut held: [Option<(u64, Timestamp)>; 2] = [None, None];
        for (who, action, secs) in steps {
            match action {
                0 => read[who] = Some(store.clone()),
                1 | 2 => {
                    let Some((mut doc, version)) = read[who].take() else { continue };
                    let wanted = match held[who] {
                        None => doc.acquire(&format!("c{who}"), "r", &target, lease, now).map(Some),
                        Some((t, _)) if action == 1 => doc.renew(t, lease, now).map(|_| Some(t)),
                        Some((t, _)) => { doc.release(t); Ok(None) }
                    };
                    match wanted {
                        Ok(token) if version == store.1 => {
                            let expires = doc.lock.as_ref().map(|l| l.expires_at);
                            store = (doc, version + 1);
                            held[who] = token.zip(expires);
                        }
                        Ok(_) => {} // lost the compare-and-swap: nothing changed
                        Err(_) => held[who] = None,
                    }
                }
                _ => now += jiff::SignedDuration::from_secs(secs as i64),
            }
            let believers = held.iter().flatten().filter(|(_, until)| now + swarm_upgrade::lock::LEASE_MARGIN < *until).count();
            prop_assert!(believers <= 1, "both coordinators believe they hold the lock at {now}: {held:?}");
            let tokens: Vec<u64> = held.iter().flatten().map(|(t, _)| *t).collect();
            prop_assert!(tokens.len() < 2 || tokens[0] != tokens[1], "a fencing token was issued twice");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// A coordinator killed after any number of operations, and a second one resuming once the
    /// lease has expired, leave every node at target and at its original availability (or, when
    /// the swarm's own placement blocks a later node, halted safely before it: see `check_end`).
    #[test]
    fn a_run_interrupted_anywhere_and_resumed_ends_at_target(spec in healthy_cluster(), crash_after in 1usize..120) {
        let world = build(&spec);
        prop_assume!(plan(&observed(&world), &Settings::default(), &to(NEW)).is_ok());
        let before = availabilities(&world);
        let cluster = FakeCluster::new(world);
        let s = Settings::default();
        let req = to(NEW);
        let rec = runtime().block_on(async {
            cluster.crash_after(crash_after);
            tokio::select! {
                r = run(&cluster, &s, &req, "manager1/1") => r.unwrap(),
                _ = cluster.crashed() => match resume(&cluster, &s, "manager2/2").await {
                    Ok(rec) => rec,
                    // The crash hit the write that finished the run: nothing is left to resume.
                    Err(CoordinatorError::NothingToResume) => cluster.world.lock().unwrap().store_doc().run.unwrap(),
                    Err(e) => panic!("resume failed: {e}"),
                },
            }
        });
        let w = cluster.world.lock().unwrap();
        check_end(&rec, &w, &before).map_err(|e| TestCaseError::fail(format!("{e} (crash after {crash_after} operations)")))?;
    }

    /// With surge on, no replicated service ever runs fewer tasks than its replica count, at any
    /// tick of the run.
    #[test]
    fn with_surge_no_service_drops_below_its_desired_count(spec in healthy_cluster()) {
        let mut world = build(&spec);
        prop_assume!(plan(&observed(&world), &Settings::default(), &to(NEW)).is_ok());
        world.watch_capacity();
        let world = world;
        let cluster = FakeCluster::new(world);
        let before = availabilities(&cluster.world.lock().unwrap());
        let rec = runtime().block_on(run(&cluster, &Settings::default(), &to(NEW), "m/1")).unwrap();
        check_end(&rec, &cluster.world.lock().unwrap(), &before).map_err(TestCaseError::fail)?;
        let dips = cluster.world.lock().unwrap().capacity_dips();
        prop_assert!(dips.is_empty(), "capacity dropped: {:?}", dips);
    }
}

/// How a run may end: every node at target; or, when the swarm placed tasks where the guard before
/// a node found them unmovable, halted right there. Either way no node is left mid-upgrade or away
/// from its original availability, each node is wholly upgraded or untouched, and every service
/// has converged.
fn check_end(
    rec: &swarm_upgrade::run::RunRecord,
    w: &World,
    before: &std::collections::BTreeMap<String, Availability>,
) -> Result<(), String> {
    use swarm_upgrade::machine::Phase;
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
    match first_unconverged(&w.snapshot(Timestamp::UNIX_EPOCH)) {
        None => Ok(()),
        Some(c) => Err(format!("not converged at the end: {c:?}")),
    }
}
