//! Coordinator scenarios over the in-memory cluster: the whole run, rollback, rejoin, restore,
//! lock contention, abort, and resume after a crash. Time is tokio's paused clock.

mod common;

use common::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::{Coordinator, CoordinatorError, Ports};
use swarm_upgrade::machine::Phase;
use swarm_upgrade::model::plan::RefusalKind;
use swarm_upgrade::model::{Availability, UnlockKey};
use swarm_upgrade::run::{Halt, Outcome};

fn cluster() -> FakeCluster {
    FakeCluster::new(world_from(&fixture()))
}

#[tokio::test(start_paused = true)]
async fn rolling_upgrade_reaches_target_everywhere_without_losing_capacity() {
    let c = cluster();
    let before = availabilities(&c.world.lock().unwrap());
    c.world.lock().unwrap().watch_capacity();
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_all_at(&w, NEW, &before);
    assert_eq!(w.capacity_dips(), Vec::<String>::new());
    let order: Vec<_> = w.log.iter().filter(|l| l.starts_with("restart")).cloned().collect();
    assert_eq!(
        order,
        [
            "restart worker1",
            "restart worker2",
            "restart manager2",
            "restart manager3",
            "restart manager1"
        ]
    );
    assert!(w.store_doc().lock.is_none(), "the lock is released");
    assert!(rec.nodes.iter().all(|n| n.phase == Phase::Done && n.history.len() == 11));
    // Pipelined: each node started during the monitor window of the one before, and drained
    // only once that one was done.
    for pair in rec.nodes.windows(2) {
        let done = pair[0].history.last().unwrap().end;
        let at = |phase| pair[1].history.iter().find(|s| s.phase == phase).unwrap().start;
        assert!(at(Phase::Prefetch) < done, "{} started early", pair[1].hostname);
        assert!(at(Phase::Drain) >= done, "{} drained after", pair[1].hostname);
    }
    // A surge done before the node before it was, held: the report counts the wait apart.
    let held = rec.nodes.iter().flat_map(|n| &n.history).filter(|s| s.held_from.is_some());
    assert!(held.count() > 0, "some surge was done before the node before it");
    // Fetched ahead: every node but the first found its download done when its turn came.
    let remembered = w.calls.agent.get("prefetch from memory").copied().unwrap_or(0);
    assert!(remembered >= 4, "{:?}", w.calls.agent);
}

/// An abort asked while the next node has already started in the window of the one before
/// finishes both, then stops.
#[tokio::test(start_paused = true)]
async fn an_abort_during_the_overlap_finishes_the_node_started_early_then_stops() {
    let c = cluster();
    let aborter = once(&c, |r| r.nodes[1].phase == Phase::Surge, ask_abort);
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    aborter.await.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Aborted), Some(Halt::Aborted)));
    let phases: Vec<Phase> = rec.nodes.iter().map(|n| n.phase).collect();
    use Phase::{Done, Pending};
    assert_eq!(phases, [Done, Done, Pending, Pending, Pending]);
}

/// In a leader election a write can land while its answer is lost; the coordinator retries it
/// after re-reading, and must not apply the same step twice (skipping a phase).
#[tokio::test(start_paused = true)]
async fn writes_whose_answers_are_lost_are_not_applied_twice() {
    // Every 2nd write loses the lock's own acquire; the others shift which writes are hit,
    // the finish among them.
    for every in 2..=5 {
        let c = cluster();
        let before = availabilities(&c.world.lock().unwrap());
        c.lose_answers(every);
        let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
        assert_eq!(rec.outcome, Some(Outcome::Succeeded), "every {every}: {:?}", rec.reason);
        let w = c.world.lock().unwrap();
        assert_all_at(&w, NEW, &before);
        assert!(w.store_doc().lock.is_none(), "every {every}: the lock is released");
        for n in &rec.nodes {
            let phases: Vec<_> = n.history.iter().map(|h| h.phase).collect();
            assert_eq!(
                phases.len(),
                11,
                "every {every}: {}: every phase once: {phases:?}",
                n.hostname
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_surge_a_drain_costs_capacity() {
    let c = cluster();
    c.world.lock().unwrap().watch_capacity();
    let s = Settings { surge: false, ..Settings::default() };
    let rec = run(&c, &s, &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded));
    let dips = c.world.lock().unwrap().capacity_dips();
    assert!(dips.iter().any(|d| d.starts_with("solo-id: 0 < 1")), "{dips:?}");
}

#[tokio::test(start_paused = true)]
async fn broken_engine_rolls_the_first_node_back_and_halts() {
    let c = cluster();
    let before = availabilities(&c.world.lock().unwrap());
    let rec = run(&c, &Settings::default(), &to(BROKEN), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed));
    assert_eq!(rec.halt, Some(Halt::NodeFailed));
    let reason = rec.reason.clone().unwrap();
    assert!(
        reason.starts_with("node worker1 was rolled back to its previous packages"),
        "{reason}"
    );
    assert!(reason.contains("docker.service failed"), "{reason}");
    assert_eq!(rec.nodes[0].phase, Phase::RolledBack);
    assert!(
        rec.nodes.as_slice()[1..].iter().all(|n| n.phase == Phase::Pending),
        "no other node touched"
    );
    let w = c.world.lock().unwrap();
    assert_all_at(&w, OLD, &before);
    assert!(w.store_doc().lock.is_none());
}

/// An agent that never answers (an engine that never becomes ready, a paused node) is given up at
/// the phase's time limit, which the order also carried to the agent; the node is rolled back
/// and the run halts naming it.
#[tokio::test(start_paused = true)]
async fn an_action_that_never_returns_fails_at_the_phase_limit() {
    let c = cluster();
    c.world.lock().unwrap().hang_restart_on = Some("worker1".into());
    let before = availabilities(&c.world.lock().unwrap());
    // (Time is virtual here: an hour passes at once when nothing else can happen.)
    let rec = tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        run(&c, &Settings::default(), &to(NEW), "m/1"),
    )
    .await
    .expect("the run ends instead of waiting for the agent forever")
    .unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed), "{:?}", rec.reason);
    assert_eq!(rec.halt, Some(Halt::NodeFailed));
    let reason = rec.reason.clone().unwrap();
    assert!(
        reason.contains("Restart on worker1 timed out after 180s")
            && reason.contains("the restart action on worker1 did not finish"),
        "{reason}"
    );
    assert_eq!(rec.nodes[0].phase, Phase::RolledBack);
    let w = c.world.lock().unwrap();
    assert_all_at(&w, OLD, &before);
    let first = w.log.iter().find(|l| l.starts_with("ordered a restart of worker1")).unwrap();
    assert_eq!(
        first, "ordered a restart of worker1 within Some(180s)",
        "the limit reached the agent"
    );
    assert!(w.store_doc().lock.is_none());
}

/// A node that can be neither upgraded nor rolled back is left failed, but nothing else of the
/// run stays behind: its surged services are scaled back, the availability it is owed is written
/// on the node (a label), and the run record says what to do. Once an operator has repaired the
/// engine, `run` gives the node back its availability and finishes the cluster.
#[tokio::test(start_paused = true)]
async fn a_node_left_failed_is_handed_back_and_a_later_run_returns_it_to_service() {
    let c = cluster();
    c.world.lock().unwrap().fail_rollback_on = Some("worker1".into());
    let before = availabilities(&c.world.lock().unwrap());
    let replicas =
        |w: &World| -> Vec<_> { w.services.iter().map(|s| (s.name.clone(), s.mode)).collect() };
    let services_before = replicas(&c.world.lock().unwrap());
    let rec = run(&c, &Settings::default(), &to(BROKEN), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed));
    assert_eq!(rec.nodes[0].phase, Phase::Failed, "{:?}", rec.nodes[0].reason);
    assert!(rec.reason.as_deref().unwrap().contains("needs a person"), "{:?}", rec.reason);
    let recovery = rec.nodes[0].recovery.clone().expect("a recovery is recorded");
    assert!(recovery.contains("docker node update --availability active --label-rm swarm-upgrade.restore-availability worker1"), "{recovery}");
    {
        let w = c.world.lock().unwrap();
        assert_eq!(replicas(&w), services_before, "the surge was undone");
        let worker1 = w.nodes.iter().find(|n| n.hostname == "worker1").unwrap();
        assert_eq!(worker1.availability, swarm_upgrade::model::Availability::Drain);
        assert_eq!(
            worker1.labels.get("swarm-upgrade.restore-availability").map(String::as_str),
            Some("active")
        );
        assert!(w.store_doc().lock.is_none());
    }

    // The operator repairs the engine by hand (the node is Ready, still drained).
    {
        let mut w = c.world.lock().unwrap();
        w.fail_rollback_on = None;
        w.broken = None;
        // (The packages it had: worker2's, which the halted run never reached.)
        let old = w.hosts.iter().find(|h| h.hostname == "worker2").unwrap().installed.clone();
        let h = w.hosts.iter_mut().find(|h| h.hostname == "worker1").unwrap();
        h.installed = old;
        h.engine_active = true;
        h.down_ticks = 1;
        w.settle(4);
    }
    let rec = run(&c, &Settings::default(), &to(NEW), "m/2").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_all_at(&w, NEW, &before);
    assert!(
        w.nodes.iter().all(|n| !n.labels.contains_key("swarm-upgrade.restore-availability")),
        "the debt is settled"
    );
}

/// A busy apt lock and a broken package reach the coordinator as different kinds with different
/// consequences: a busy node is asked again until the phase's time limit (nothing was changed),
/// a broken package rolls the node back and halts the run at once.
#[tokio::test(start_paused = true)]
async fn a_busy_apt_lock_is_waited_out_and_a_broken_package_rolls_back() {
    let c = cluster();
    c.world.lock().unwrap().busy_upgrades = 3;
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    {
        let w = c.world.lock().unwrap();
        let busy: Vec<_> =
            w.log.iter().filter(|l| l.starts_with("busy upgrade")).map(String::as_str).collect();
        assert_eq!(busy, ["busy upgrade worker1"; 3], "{:?}", w.log);
        assert!(
            !w.log.iter().any(|l| l.starts_with("rollback")),
            "a busy node is not rolled back: {:?}",
            w.log
        );
    }

    let c = cluster();
    c.world.lock().unwrap().fail_upgrade_on = Some("worker1".into());
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed));
    assert_eq!(rec.nodes[0].phase, Phase::RolledBack);
    assert!(
        rec.reason.as_deref().unwrap().contains("dpkg returned an error code"),
        "{:?}",
        rec.reason
    );
    let w = c.world.lock().unwrap();
    assert_eq!(
        w.log.iter().filter(|l| l.starts_with("broken upgrade")).count(),
        1,
        "a failure is not retried"
    );
}

/// A node that stays busy is not waited for without end: the upgrade's time limit fails it, and
/// the node is rolled back.
#[tokio::test(start_paused = true)]
async fn a_node_that_stays_busy_fails_at_the_phase_deadline() {
    let c = cluster();
    c.world.lock().unwrap().busy_upgrades = u32::MAX;
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed));
    let reason = rec.reason.unwrap();
    assert!(
        reason.contains("Upgrade on worker1 timed out after")
            && reason.contains("Could not get lock"),
        "{reason}"
    );
    assert_eq!(rec.nodes[0].phase, Phase::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_comes_back_as_a_stranger_rejoins_with_its_labels() {
    let c = cluster();
    {
        let mut w = c.world.lock().unwrap();
        w.wipe_on_restart = Some("worker1".into());
        let n = w.nodes.iter_mut().find(|n| n.hostname == "worker1").unwrap();
        n.labels.insert("zone".into(), "b".into());
    }
    let before = availabilities(&c.world.lock().unwrap());
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_all_at(&w, NEW, &before);
    let worker1: Vec<_> = w.nodes.iter().filter(|n| n.hostname == "worker1").collect();
    assert_eq!(worker1.len(), 1, "the stale entry is gone");
    assert!(worker1[0].id.0.starts_with("worker1-rejoined"));
    assert_eq!(worker1[0].labels.get("zone").map(String::as_str), Some("b"));
    assert_eq!(rec.nodes[0].rejoined_from.as_ref().unwrap().0, "worker1-id");
}

#[tokio::test(start_paused = true)]
async fn a_failed_prefetch_restores_the_node_untouched() {
    let c = cluster();
    c.world.lock().unwrap().fail_prefetch_on = Some("worker1".into());
    let before = availabilities(&c.world.lock().unwrap());
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed));
    assert_eq!(rec.nodes[0].phase, Phase::Restored, "{:?}", rec.nodes[0].reason);
    let reason = rec.reason.unwrap();
    assert!(
        reason.starts_with(
            "node worker1 was restored without upgrading: Prefetch on worker1: E: Failed to fetch"
        ),
        "{reason}"
    );
    let w = c.world.lock().unwrap();
    assert_eq!(availabilities(&w), before);
    assert_all_at(&w, OLD, &before);
    let changes: Vec<_> =
        w.log.iter().filter(|l| !l.contains("Pause") && !l.contains("Active")).collect();
    assert!(changes.is_empty(), "paused and reactivated, nothing else: {:?}", w.log);
}

/// A download ahead that fails (a mirror down for a moment) fails nothing: the node's own
/// prefetch asks the repository again when its turn comes.
#[tokio::test(start_paused = true)]
async fn a_failed_download_ahead_is_tried_again_by_the_nodes_own_prefetch() {
    let c = cluster();
    c.world.lock().unwrap().fail_next_prefetch_on = Some("manager1".into());
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_eq!(w.fail_next_prefetch_on, None, "the download ahead failed");
    assert!(w.prefetched.iter().any(|(host, ..)| host == "manager1"));
}

#[tokio::test(start_paused = true)]
async fn a_second_coordinator_is_told_who_holds_the_lock() {
    let c = cluster();
    let s = Settings::default();
    let req = to(NEW);
    let (a, b) = tokio::join!(run(&c, &s, &req, "manager1/11"), async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        run(&c, &s, &req, "manager2/22").await
    });
    assert_eq!(a.unwrap().outcome, Some(Outcome::Succeeded));
    let e = b.unwrap_err();
    assert!(e.to_string().starts_with("locked by manager1/11 since 2026-11-25T03:00:00"), "{e}");
}

/// A manager whose clock runs ten minutes ahead sees the live run's lease as run out; asked to
/// resume, it watches the lock, sees it renewed, and says who holds it: no takeover.
#[tokio::test(start_paused = true)]
async fn a_manager_with_a_clock_minutes_ahead_does_not_take_over_a_live_run() {
    let c = cluster();
    let s = Settings::default();
    let req = to(NEW);
    let (a, b) = tokio::join!(run(&c, &s, &req, "manager1/11"), async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let ahead = TestClock::ahead(std::time::Duration::from_secs(600));
        let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &ahead };
        Coordinator::new(ports, &s, "manager2/22").resume(false).await
    });
    let rec = a.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let e = b.unwrap_err();
    assert!(e.to_string().starts_with("locked by manager1/11"), "{e}");
    assert_eq!(c.world.lock().unwrap().store_doc().last_token, 1, "no other token was issued");
}

/// Node writes are fenced by the version they were decided on: a coordinator whose lease
/// lapsed and whose node a successor then drained cannot write over the successor's drain. Its
/// write is refused by the swarm, and it finds the lock lost when it reads again.
#[tokio::test(start_paused = true)]
async fn a_deposed_coordinators_write_is_refused_and_it_stops() {
    let c = cluster();
    c.world.lock().unwrap().rival_before_write_on = Some("worker1".into());
    let e = run(&c, &Settings::default(), &to(NEW), "manager1/11").await.unwrap_err();
    assert!(matches!(e, CoordinatorError::Lock(_)), "{e}");
    let w = c.world.lock().unwrap();
    let worker1 = w.nodes.iter().find(|n| n.hostname == "worker1").unwrap();
    assert_eq!(worker1.availability, Availability::Drain, "the successor's drain stands");
    let after: Vec<_> = w.log.iter().skip_while(|l| !l.starts_with("rival took")).skip(1).collect();
    assert!(after[0].starts_with("refused write to worker1"), "{:?}", w.log);
    assert_eq!(after.len(), 1, "nothing written after the takeover: {:?}", w.log);
}

/// An operator's write between the coordinator's reading and its write (a label added) makes
/// the write refused, not lost: the coordinator reads again, decides again, and the operator's
/// label is kept.
#[tokio::test(start_paused = true)]
async fn a_write_that_lost_to_an_operators_is_decided_again() {
    let c = cluster();
    c.world.lock().unwrap().operator_before_write_on = Some("worker1".into());
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/11").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    let worker1 = w.nodes.iter().find(|n| n.hostname == "worker1").unwrap();
    assert_eq!(worker1.labels.get("ops").map(String::as_str), Some("1"));
    assert_eq!(worker1.availability, Availability::Active);
    let refused = w.log.iter().position(|l| l.starts_with("refused write to worker1")).unwrap();
    assert_eq!(w.log[refused + 1], "availability worker1 Pause", "{:?}", w.log);
}

/// An autolocked swarm is upgraded only with its current unlock key: without one, or with a
/// key that is not the current one, the run is refused before anything changes.
#[tokio::test(start_paused = true)]
async fn an_autolocked_swarm_is_upgraded_only_with_its_current_unlock_key() {
    let key = |k: &str| UnlockKey::parse(&format!("SWMKEY-1-{k}")).unwrap();
    let c = cluster();
    c.world.lock().unwrap().unlock_key = Some(key("Y3VycmVudGtleQ"));
    let s = Settings::default();
    for (given, says) in
        [(None, "no unlock key was given"), (Some(key("b2xka2V5")), "not the swarm's current one")]
    {
        let clock = TestClock::new();
        let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
        let e = Coordinator::new(ports, &s, "m/1")
            .with_unlock_key(given)
            .run(&to(NEW), "run-1")
            .await
            .unwrap_err();
        match &e {
            CoordinatorError::Refused(r) => assert!(
                r.iter().any(|r| r.kind == RefusalKind::Autolocked && r.reason.contains(says)),
                "{r:?}"
            ),
            other => panic!("{other}"),
        }
        let w = c.world.lock().unwrap();
        assert!(w.log.is_empty() && w.store_text.is_empty(), "nothing changed: {:?}", w.log);
    }
    let clock = TestClock::new();
    let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
    let rec = Coordinator::new(ports, &s, "m/1")
        .with_unlock_key(Some(key("Y3VycmVudGtleQ")))
        .run(&to(NEW), "run-1")
        .await
        .unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
}

#[tokio::test(start_paused = true)]
async fn preflight_refusal_changes_nothing() {
    let c = cluster();
    c.world.lock().unwrap().hosts[4].agent_up = false;
    let before = c.world.lock().unwrap().clone();
    let e = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap_err();
    match &e {
        CoordinatorError::Refused(r) => {
            assert!(r.iter().any(|r| r.node.as_deref() == Some("worker2")), "{r:?}")
        }
        other => panic!("{other}"),
    }
    let after = c.world.lock().unwrap();
    assert_eq!(after.store_version, before.store_version, "no write to the store");
    assert!(after.log.is_empty(), "no action: {:?}", after.log);
}

/// Runs `act` on the world once the run's first node has left Pending (polled every 500 ms).
fn once_the_first_node_started(
    c: &FakeCluster,
    act: impl FnOnce(&mut World) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    once(c, |r| r.nodes[0].phase != Phase::Pending, act)
}

/// The operator's `abort`: a write to the store.
fn ask_abort(w: &mut World) {
    let mut doc = w.store_doc();
    doc.run.as_mut().unwrap().abort_requested = true;
    w.store_text = serde_json::to_string(&doc).unwrap();
    w.store_version += 1;
}

/// Runs `act` on the world once the run record in the store satisfies `when` (polled every
/// 500 ms of the test's time).
fn once(
    c: &FakeCluster,
    when: impl Fn(&swarm_upgrade::run::RunRecord) -> bool + Send + 'static,
    act: impl FnOnce(&mut World) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let c = c.clone();
    tokio::spawn(async move {
        for _ in 0..10_000 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let mut w = c.world.lock().unwrap();
            if w.store_doc().run.is_some_and(|r| when(&r)) {
                act(&mut w);
                return;
            }
        }
    })
}

/// The operator's other stop switch: a node label, set while the first node is in progress. The
/// run finishes that node and stops before the next, as aborted, naming the label and the node.
#[tokio::test(start_paused = true)]
async fn a_stop_label_on_any_node_stops_the_run_before_its_next_node() {
    let c = cluster();
    let labeller = once_the_first_node_started(&c, |w| {
        let n = w.nodes.iter_mut().find(|n| n.hostname == "manager3").unwrap();
        n.labels.insert("swarm-upgrade.stop".into(), "true".into());
    });
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    labeller.await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Aborted));
    assert_eq!(rec.halt, Some(Halt::StopLabel));
    let reason = rec.reason.unwrap();
    assert!(
        reason.contains("label swarm-upgrade.stop on node manager3")
            && reason.contains("before node worker2"),
        "{reason}"
    );
    assert_eq!(rec.nodes[0].phase, Phase::Done, "the node in progress was finished");
    assert!(rec.nodes.as_slice()[1..].iter().all(|n| n.phase == Phase::Pending));
    assert!(c.world.lock().unwrap().store_doc().lock.is_none(), "the lock is released");
}

/// A stop label already set when a run would start: an operator's `run` is refused by preflight
/// and a scheduled run does nothing; neither writes to the store or acts on a node. Once the label
/// is gone, the scheduled run upgrades.
#[tokio::test(start_paused = true)]
async fn a_stop_label_set_before_the_run_refuses_it_and_keeps_the_timer_quiet() {
    let c = cluster();
    let label_worker2 = |c: &FakeCluster, value: &str| {
        let mut w = c.world.lock().unwrap();
        w.nodes
            .iter_mut()
            .find(|n| n.hostname == "worker2")
            .unwrap()
            .labels
            .insert("swarm-upgrade.stop".into(), value.into());
    };
    label_worker2(&c, "yes");
    let before = c.world.lock().unwrap().store_version;
    let unchanged = |c: &FakeCluster| {
        let w = c.world.lock().unwrap();
        assert_eq!(
            (w.store_version, w.log.len()),
            (before, 0),
            "no write to the store, no action: {:?}",
            w.log
        );
    };
    match run(&c, &Settings::default(), &to(NEW), "m/1").await {
        Err(CoordinatorError::Refused(r)) => {
            let stop = r
                .iter()
                .find(|r| r.reason.contains("swarm-upgrade.stop"))
                .unwrap_or_else(|| panic!("{r:?}"));
            assert_eq!(stop.node.as_deref(), Some("worker2"), "{stop}");
            assert!(
                stop.fix.contains("docker node update --label-rm swarm-upgrade.stop worker2"),
                "{stop}"
            );
        }
        other => panic!("refused, not {other:?}"),
    }
    unchanged(&c);
    let scheduled = swarm_upgrade::planner::PlanRequest { scheduled: true, ..to(NEW) };
    match run(&c, &Settings::default(), &scheduled, "m/2").await {
        Err(e @ CoordinatorError::Stopped(_)) => {
            assert!(e.to_string().contains("on node worker2: nothing was changed"), "{e}")
        }
        other => panic!("stopped, not {other:?}"),
    }
    unchanged(&c);
    label_worker2(&c, "false");
    let rec = run(&c, &Settings::default(), &scheduled, "m/3").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
}

#[tokio::test(start_paused = true)]
async fn abort_stops_after_the_current_node() {
    let c = cluster();
    // While the first node is in progress.
    let aborter = once_the_first_node_started(&c, ask_abort);
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    aborter.await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Aborted));
    assert_eq!(rec.halt, Some(Halt::Aborted));
    assert_eq!(rec.nodes[0].phase, Phase::Done, "the node in progress was finished");
    assert!(rec.nodes.as_slice()[1..].iter().all(|n| n.phase == Phase::Pending));
}

#[tokio::test(start_paused = true)]
async fn crash_during_the_leaders_restart_then_resume_on_another_manager() {
    let c = cluster();
    let s = Settings::default();
    let before = availabilities(&c.world.lock().unwrap());
    // Crash right after the leader's engine restart was ordered.
    let crash_at = {
        let probe = cluster();
        run(&probe, &s, &to(NEW), "probe").await.unwrap();
        let w = probe.world.lock().unwrap();
        w.log.len()
    };
    assert!(crash_at > 0);
    c.crash_after(usize::MAX);
    let c2 = c.clone();
    let watcher = async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            if c2.world.lock().unwrap().log.iter().any(|l| l == "restart manager1") {
                return;
            }
        }
    };
    let req = to(NEW);
    tokio::select! {
        r = run(&c, &s, &req, "manager1/1") => panic!("the run should have been cut: {r:?}"),
        _ = watcher => {}
    }
    let rec = resume(&c, &s, "manager2/2").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert_all_at(&c.world.lock().unwrap(), NEW, &before);
    assert!(c.world.lock().unwrap().store_doc().last_token >= 2);
}

/// A coordinator cut while worker1 is drained and its services surged, its lease then expired: a
/// new run (an operator's, or the timer's) does not plan against that half-done cluster but names
/// the interrupted run, which is what `run --scheduled` resumes; nothing is written meanwhile.
#[tokio::test(start_paused = true)]
async fn a_new_run_over_an_interrupted_one_names_it_before_planning() {
    use swarm_upgrade::coordinator::{Coordinator, Ports};
    let s = Settings::default();
    // Crash after the fewest operations that leave worker1 drained (its services surged). One
    // clock for every coordinator, so the second sees the first one's lease expire.
    let mut crashed = None;
    for n in 1..60 {
        let (c, clock) = (cluster(), TestClock::new());
        c.crash_after(n);
        let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
        let (first, req) = (Coordinator::new(ports, &s, "manager1/1"), to(NEW));
        tokio::select! {
            r = first.run(&req, "run-1") => panic!("the run should have been cut: {r:?}"),
            _ = c.crashed() => {}
        }
        drop(first);
        let drained = {
            let w = c.world.lock().unwrap();
            w.nodes.iter().any(|n| {
                n.hostname == "worker1"
                    && n.availability == swarm_upgrade::model::Availability::Drain
            })
        };
        if drained {
            crashed = Some((c, clock));
            break;
        }
    }
    let (c, clock) = crashed.expect("a crash with worker1 drained");
    c.crash_after(usize::MAX);
    tokio::time::sleep(s.lease + std::time::Duration::from_secs(1)).await;
    let before = c.world.lock().unwrap().store_version;
    for scheduled in [false, true] {
        let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
        let req = swarm_upgrade::planner::PlanRequest { scheduled, ..to(NEW) };
        match Coordinator::new(ports, &s, "manager2/2").run(&req, "run-2").await {
            Err(CoordinatorError::Unfinished(id)) => assert_eq!(id, "run-1"),
            other => panic!("scheduled={scheduled}: the interrupted run named, not {other:?}"),
        }
        assert_eq!(c.world.lock().unwrap().store_version, before, "nothing written");
    }
    let rec = resume(&c, &s, "manager2/2").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
}

/// The run's events, as the webhook receives them: each node done, then the end; a broken engine
/// tells of the failure and the rollback.
#[tokio::test(start_paused = true)]
async fn a_run_tells_its_start_each_node_failures_rollbacks_and_its_end() {
    use swarm_upgrade::coordinator::{Coordinator, Ports};
    use swarm_upgrade::events::Event;
    let kinds = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap()["event"].as_str().unwrap().to_string())
            .collect()
    };
    for (target, expected) in [
        (
            NEW,
            vec![
                "run-started",
                "node-done",
                "node-done",
                "node-done",
                "node-done",
                "node-done",
                "run-finished",
            ],
        ),
        (BROKEN, vec!["run-started", "node-failed", "rolled-back", "run-finished"]),
    ] {
        let c = cluster();
        let clock = TestClock::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
        let settings = Settings::default();
        let rec = Coordinator::new(ports, &settings, "m/1")
            .with_events(tx)
            .run(&to(target), "run-1")
            .await
            .unwrap();
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        assert_eq!(kinds(&events), expected, "{target}: {events:?}");
        let outcome = if target == NEW { "succeeded" } else { "failed" };
        assert!(
            matches!(events.last(), Some(Event::RunFinished { outcome: o, .. }) if o == outcome),
            "{events:?}"
        );
        assert_eq!(rec.id, "run-1");
    }
}

/// swarmkit can miss a scale-down (its write marking the surplus task for removal is refused when
/// the task changed meanwhile, and nothing reconciles again). The coordinator writes the same
/// replica count again, so the swarm reconciles and the node converges.
#[tokio::test(start_paused = true)]
async fn a_scale_down_the_swarm_missed_is_written_again() {
    let c = cluster();
    let before = availabilities(&c.world.lock().unwrap());
    c.world.lock().unwrap().miss_next_scale_down = true;
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_all_at(&w, NEW, &before);
    assert!(w.missed_scale_down.is_empty(), "the rewrite was reconciled");
    let scales: Vec<_> =
        w.log.iter().filter(|l| l.starts_with("scale")).take(5).map(String::as_str).collect();
    assert_eq!(
        scales,
        ["scale solo 2", "scale web 5", "scale solo 1", "scale web 4", "scale solo 1"],
        "worker1's missed scale-back is written again"
    );
    // Without the rewrite, the surplus would have held until the verify timeout.
    assert!(rec.nodes.iter().all(|n| n.phase == Phase::Done));
}

/// A scheduled run does not retry the target of a failed last run (the timer would roll the same
/// node back at every window); an operator's run does, and another target is not held back.
#[tokio::test(start_paused = true)]
async fn a_scheduled_run_does_not_retry_a_target_that_failed() {
    let c = cluster();
    let failed = run(&c, &Settings::default(), &to(BROKEN), "m/1").await.unwrap();
    assert_eq!(failed.outcome, Some(Outcome::Failed));
    let writes = {
        let w = c.world.lock().unwrap();
        (w.log.len(), w.store_version)
    };
    let scheduled = swarm_upgrade::planner::PlanRequest { scheduled: true, ..to(BROKEN) };
    match run(&c, &Settings::default(), &scheduled, "m/2").await {
        Err(CoordinatorError::Refused(r)) => {
            assert_eq!(r.len(), 1);
            assert!(
                r[0].reason.contains("failed")
                    && r[0].reason.contains("scheduled runs do not retry"),
                "{}",
                r[0]
            );
            assert!(
                r[0].reason.contains("worker1"),
                "the last run's reason names the node: {}",
                r[0]
            );
            assert!(r[0].fix.contains("swarm-upgrade run --to"), "{}", r[0]);
        }
        other => panic!("refused, not {other:?}"),
    }
    assert_eq!(
        {
            let w = c.world.lock().unwrap();
            (w.log.len(), w.store_version)
        },
        writes,
        "nothing was changed"
    );
    // By hand it is retried (and fails again: the package is still broken).
    let again = run(&c, &Settings::default(), &to(BROKEN), "m/3").await.unwrap();
    assert_eq!(again.outcome, Some(Outcome::Failed));
    // A scheduled run to another target goes ahead.
    let newer = swarm_upgrade::planner::PlanRequest { scheduled: true, ..to(NEW) };
    let rec = run(&c, &Settings::default(), &newer, "m/4").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
}

/// A run an older swarm-upgrade left interrupted (its store document of layout 1, without the
/// `schema` key, nor the lock's lease, nor the nodes' scopes and batches: captured from this very
/// crash by that build) is resumed to the end, and written back in the current layout. (Without
/// scopes the resumed node's polls read the cluster; without batches, each node goes alone.)
#[tokio::test(start_paused = true)]
async fn a_run_interrupted_by_an_older_version_resumes_from_its_document() {
    let c = cluster();
    let before = availabilities(&c.world.lock().unwrap());
    c.crash_after(45);
    let mut s = Settings::default();
    // The fixture was captured before surged replicas were given a warm-up.
    s.timeouts.warmup = std::time::Duration::ZERO;
    let req = to(NEW);
    tokio::select! {
        _ = run(&c, &s, &req, "manager1/4242") => panic!("the run was not interrupted"),
        _ = c.crashed() => {}
    }
    let v1 = include_str!("fixtures/store/v1-interrupted.json");
    {
        let mut w = c.world.lock().unwrap();
        // The cluster is where the fixture's run left it: each node at the same phase with the
        // same surge (its times differ: this build starts the next node during the window of
        // the one before).
        let shape = |d: &swarm_upgrade::lock::StoreDoc| -> Vec<_> {
            let nodes = d.run.as_ref().unwrap().nodes.iter();
            nodes
                .map(|n| (n.hostname.clone(), n.phase, n.converged_since, n.surge.clone()))
                .collect()
        };
        let fixture = swarm_upgrade::lock::StoreDoc::from_json(v1).unwrap();
        assert_eq!(shape(&fixture), shape(&w.store_doc()));
        w.store_text = v1.to_string();
    }
    let rec = resume(&c, &s, "manager2/2").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_all_at(&w, NEW, &before);
    assert!(w.store_text.contains(&format!("\"schema\":{}", swarm_upgrade::lock::SCHEMA)));
}

/// An agent that refuses our token as stale while the store says we still hold the lock (it saw a
/// higher token elsewhere) fails that node, which is restored untouched, and the run halts with
/// the agent's words, the lock released; it is not taken for a lost lock.
#[tokio::test(start_paused = true)]
async fn an_agent_that_saw_a_higher_token_fails_its_node_not_the_lock() {
    let c = cluster();
    let before = availabilities(&c.world.lock().unwrap());
    c.agent_saw_token("worker1", 99);
    let rec = run(&c, &Settings::default(), &to(NEW), "m/1").await.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Failed), Some(Halt::NodeFailed)));
    assert_eq!(rec.nodes[0].phase, Phase::Restored);
    let reason = rec.reason.unwrap();
    assert!(reason.contains("stale fencing token 1"), "{reason}");
    let w = c.world.lock().unwrap();
    assert_all_at(&w, OLD, &before);
    assert!(w.store_doc().lock.is_none(), "the lock is released");
}

/// Observation costs O(1) per node per poll: each agent refreshes its lists once (preflight), and
/// is asked again only for its own turn (the guard before it, the polls while it is upgraded;
/// both may come during the monitor window of the node before it), never while another node is
/// upgraded, whatever the cluster's size.
#[tokio::test(start_paused = true)]
async fn each_agent_is_asked_only_in_preflight_and_on_its_own_turn() {
    let c = FakeCluster::new(world_from(&fleet::fleet(12)));
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    for h in &w.hosts {
        let asked: Vec<_> = w.describes.iter().filter(|d| d.host == h.hostname).collect();
        let refreshed: Vec<_> = asked.iter().filter(|d| d.refresh).collect();
        assert_eq!(refreshed.len(), 1, "{}: lists refreshed once, in preflight", h.hostname);
        assert!(refreshed[0].current.is_empty(), "{}: before the run started", h.hostname);
        let elsewhere: Vec<_> =
            asked.iter().filter(|d| !d.refresh && !d.current.contains(&h.hostname)).collect();
        assert!(
            elsewhere.is_empty(),
            "{} asked during another node's turn: {elsewhere:?}",
            h.hostname
        );
    }
}

/// Agents that take longer than the lease to answer (a dead mirror among a node's sources) do not
/// cost the lock: the lease is renewed across observations as across actions.
#[tokio::test(start_paused = true)]
async fn agents_slower_than_the_lease_do_not_cost_the_lock() {
    let c = cluster();
    let before = availabilities(&c.world.lock().unwrap());
    let settings = Settings::default();
    c.world.lock().unwrap().describe_takes = settings.lease + settings.lease / 2;
    let rec = run(&c, &settings, &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert_all_at(&c.world.lock().unwrap(), NEW, &before);
}

/// The scale simulation's figures per node stay flat as the fleet grows fourfold: Docker calls,
/// agent calls, reads of the swarm (whole ones among them) and store writes per node, and the
/// objects a poll reads, are constant in N (an observation of every agent, a whole-cluster read
/// per poll or a whole-cluster write per node would multiply them); every write stays within the
/// store's budget, the lock is held throughout and no service runs below its replicas.
#[test]
fn the_simulated_fleet_costs_the_same_per_node_at_any_size() {
    let one = swarm_upgrade::config::Parallel::default();
    let (small, large) = (simulate::simulate(8, one), simulate::simulate(32, one));
    for f in [&small, &large] {
        assert_eq!((f.outcome.as_str(), f.lease_kept), ("succeeded", true), "{f:?}");
        assert_eq!((f.upgraded, f.capacity_dips), (f.nodes, 0), "{f:?}");
        assert!(f.largest_write <= swarm_upgrade::store_layout::WRITE_BUDGET, "{f:?}");
    }
    let flat = |what: &str, s: f64, l: f64| {
        assert!(l <= s * 1.25, "{what} per node grew from {s:.1} to {l:.1} with the fleet");
    };
    flat("Docker calls", small.docker_per_node, large.docker_per_node);
    flat("agent calls", small.agent_per_node, large.agent_per_node);
    flat("reads of the swarm", small.reads_per_node, large.reads_per_node);
    for f in [&small, &large] {
        // The guard reads the whole cluster before each node (and preflight once); polls never.
        assert!(f.whole_reads_per_node <= 2.0, "{f:?}");
    }
    // A poll reads the node's services where they run, growing with the fleet only until their
    // replicas are spread (the README has the figures of larger fleets); far from all.
    let whole = large.listed_per_whole_read;
    assert!(
        large.listed_per_poll * 2.0 < whole,
        "a poll read {} of {whole}",
        large.listed_per_poll
    );
    flat("store writes", small.store_saves_per_node, large.store_saves_per_node);
}
