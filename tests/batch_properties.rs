//! Properties of runs in batches (256 cases each), over random clusters of 3 managers and 2 to 5
//! workers, `parallel` 1 to 4 and zones on or off: no batch is drained whose tasks cannot all run
//! elsewhere at once, a batch never holds two zones nor two managers, surge keeps every service's
//! capacity, and a run killed after any operation and resumed ends at target with every node at
//! its original availability.

mod common;

use std::collections::BTreeMap;

use common::generate::{batch_cluster, build, observed};
use common::*;
use jiff::Timestamp;
use proptest::prelude::*;
use swarm_upgrade::config::{Parallel, Settings};
use swarm_upgrade::coordinator::CoordinatorError;
use swarm_upgrade::machine::Phase;
use swarm_upgrade::model::{Availability, Role, convergence::first_unconverged};
use swarm_upgrade::planner::{guard, plan};
use swarm_upgrade::run::{RunFlags, RunRecord};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, max_global_rejects: 100_000, ..ProptestConfig::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

fn settings(parallel: u32, zones: bool) -> Settings {
    Settings {
        parallel: Parallel::Nodes(parallel),
        zone_label: zones.then(|| "zone".to_string()),
        ..Settings::default()
    }
}

/// When each node of a run was in progress: its first phase's start, when it entered its
/// monitor window's phase (verify; else its end), the start of its drain if it was drained, its end.
struct Worked {
    index: usize,
    start: Timestamp,
    verify: Timestamp,
    drain: Option<Timestamp>,
    end: Timestamp,
}

fn worked(rec: &RunRecord) -> Vec<Worked> {
    rec.nodes
        .iter()
        .enumerate()
        .filter_map(|(index, n)| {
            let at = |phase| n.history.iter().find(|s| s.phase == phase).map(|s| s.start);
            let start = n.history.iter().find(|s| s.phase != Phase::Pending)?.start;
            let end = n.history.last()?.end;
            // Entered when the phase before it ended (a resume restarts a phase's own span).
            let entered = n.history.windows(2).find(|w| w[1].phase == Phase::VerifyConverged);
            let verify = entered.map_or(end, |w| w[0].end);
            Some(Worked { index, start, verify, drain: at(Phase::Drain), end })
        })
        .collect()
}

/// Of two managers, or two nodes of different batches, the later started only once the earlier
/// was in its last phase (verify: the pipeline) and drained only once it was done.
fn check_overlaps(rec: &RunRecord) -> Result<(), String> {
    let worked = worked(rec);
    for early in &worked {
        // (Of two started at one instant, the earlier in the run's order.)
        let later = |w: &&Worked| (w.start, w.index) > (early.start, early.index);
        for late in worked.iter().filter(later) {
            let (ne, nl) = (&rec.nodes[early.index], &rec.nodes[late.index]);
            let managers = ne.role == Role::Manager && nl.role == Role::Manager;
            if !(managers || ne.batch != nl.batch) {
                continue;
            }
            let started_early = late.start < early.verify;
            let drained_early = late.drain.is_some_and(|d| d < early.end);
            if started_early || drained_early {
                return Err(format!(
                    "{} and {} were in progress at once ({})",
                    ne.hostname,
                    nl.hostname,
                    if drained_early { "drained" } else { "started before the window" }
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Batch by batch, with the cluster as the swarm actually left it, the guard's approval of a
    /// batch (or the front of it that it lets go) means the swarm (the fake's own scheduler)
    /// really runs all of their tasks elsewhere once they are drained together; an accepted
    /// plan's first batch is approved whole; no batch holds two zones or a manager among others.
    #[test]
    fn no_batch_is_drained_whose_tasks_cannot_all_run_elsewhere_at_once(
        spec in batch_cluster(), parallel in 1u32..5, zones in any::<bool>(),
    ) {
        let s = settings(parallel, zones);
        let mut world = build(&spec);
        let snap = observed(&world);
        let Ok(p) = plan(&snap, &s, &to(NEW)) else { return Ok(()) };
        for (b, batch) in p.batches.iter().enumerate() {
            let ids: Vec<_> = p.nodes.iter().filter(|n| n.batch as usize == b).map(|n| (n.node.clone(), &n.packages)).collect();
            prop_assert_eq!(ids.len(), batch.nodes.len());
            prop_assert!(ids.len() <= parallel as usize);
            let roles: Vec<Role> = p.nodes.iter().filter(|n| n.batch as usize == b).map(|n| n.role).collect();
            prop_assert!(roles.len() == 1 || roles.iter().all(|r| *r == Role::Worker), "managers go alone: {roles:?}");
            if zones {
                let zone = |id| snap.node(id).and_then(|n| n.labels.get("zone").cloned());
                prop_assert!(ids.iter().all(|(id, _)| zone(id) == zone(&ids[0].0)), "batch {} crosses zones", b);
            }
            let now = observed(&world);
            let verdict = guard(&now, &s, &RunFlags::default(), &ids);
            if b == 0 {
                prop_assert!(
                    verdict.as_ref().is_ok_and(|v| v.len() == ids.len()),
                    "the plan accepted {:?} but the guard says {verdict:?}", batch.nodes
                );
            }
            let Ok(going) = verdict else { break };
            let going = &ids[..going.len()];
            for id in going {
                world.node_mut(&id.0).unwrap().availability = Availability::Drain;
            }
            let converged = world.settle(4);
            let unconverged = first_unconverged(&world.snapshot(Timestamp::UNIX_EPOCH));
            prop_assert!(converged, "after draining {:?} together: {unconverged:?}", going);
            for id in going {
                world.node_mut(&id.0).unwrap().availability = Availability::Active;
            }
            world.settle(4);
        }
    }

    /// With surge on, no replicated service ever runs fewer tasks than its replica count, at any
    /// tick of a run in batches; no two managers, and no two batches, are ever in progress at once.
    #[test]
    fn in_batches_no_service_drops_below_its_desired_count(
        spec in batch_cluster(), parallel in 1u32..5, zones in any::<bool>(),
    ) {
        let s = settings(parallel, zones);
        let mut world = build(&spec);
        prop_assume!(plan(&observed(&world), &s, &to(NEW)).is_ok());
        world.watch_capacity();
        let before = availabilities(&world);
        let cluster = FakeCluster::new(world);
        let rec = runtime().block_on(run(&cluster, &s, &to(NEW), "m/1")).unwrap();
        check_end(&rec, &cluster.world.lock().unwrap(), &before).map_err(TestCaseError::fail)?;
        check_overlaps(&rec).map_err(TestCaseError::fail)?;
        let dips = cluster.world.lock().unwrap().capacity_dips();
        prop_assert!(dips.is_empty(), "capacity dropped: {:?}", dips);
    }

    /// A coordinator running in batches killed after any number of operations, and a second one
    /// resuming once the lease has expired (from whatever mix of phases the batch was in), leave
    /// every node at target and at its original availability, or halted safely before a batch.
    #[test]
    fn a_batched_run_interrupted_anywhere_and_resumed_ends_at_target(
        spec in batch_cluster(), parallel in 2u32..5, crash_after in 1usize..160,
    ) {
        let s = settings(parallel, false);
        let world = build(&spec);
        prop_assume!(plan(&observed(&world), &s, &to(NEW)).is_ok());
        let before: BTreeMap<_, _> = availabilities(&world);
        let cluster = FakeCluster::new(world);
        let req = to(NEW);
        let rec = runtime().block_on(async {
            cluster.crash_after(crash_after);
            let t0 = tokio::time::Instant::now();
            tokio::select! {
                r = run(&cluster, &s, &req, "manager1/1") => r.unwrap(),
                // The second manager's clock goes on from the first's, so that the record's
                // spans from before and after the crash can be compared.
                _ = cluster.crashed() => match resume_with(&cluster, &s, "manager2/2", &TestClock::ahead(t0.elapsed())).await {
                    Ok(rec) => rec,
                    Err(CoordinatorError::NothingToResume) => cluster.world.lock().unwrap().store_doc().run.unwrap(),
                    Err(e) => panic!("resume failed: {e}"),
                },
            }
        });
        let w = cluster.world.lock().unwrap();
        check_end(&rec, &w, &before).map_err(|e| TestCaseError::fail(format!("{e} (crash after {crash_after} operations)")))?;
        check_overlaps(&rec).map_err(TestCaseError::fail)?;
    }
}
