use super::*;
use crate::config::Settings;
use crate::model::plan::NodePlan;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn progress() -> NodeProgress {
    let plan = NodePlan {
        node: NodeId("n1".into()),
        hostname: "worker1".into(),
        role: Role::Worker,
        leader: false,
        engine_from: crate::model::EngineVersion::parse_lenient("26.1.5"),
        installed: None,
        availability: Availability::Active,
        surge: vec![],
        moves: vec![],
        global_stops: vec![],
        batch: 0,
        packages: PackageSet::default(),
        standalone: vec![],
        downtime: vec![],
    };
    NodeProgress::new(&plan, "10.0.0.2".into(), BTreeMap::new(), t(0))
}

fn set() -> PackageSet {
    PackageSet([("docker-ce".to_string(), "5:26.1.5-1~debian.13~trixie".parse().unwrap())].into())
}

/// An observation of `snap` without an agent's report, surges held by or taken from others, or
/// batch-mates.
fn observed<'a>(
    snap: &'a crate::model::ClusterSnapshot,
    packages: &'a PackageSet,
) -> decide::Observation<'a> {
    static NO_SERVICES: std::collections::BTreeSet<crate::model::ServiceId> =
        std::collections::BTreeSet::new();
    static NO_COUNTS: BTreeMap<crate::model::ServiceId, u64> = BTreeMap::new();
    decide::Observation {
        snap,
        agent: None,
        packages,
        engine_package: "docker-ce",
        held: &NO_SERVICES,
        mates_from: &NO_COUNTS,
        mates: &[],
    }
}

#[test]
fn main_path_visits_every_phase_in_order_and_records_history() {
    let mut p = progress();
    p.start(t(1)).unwrap();
    let mut seen = vec![p.phase];
    let mut now = 1;
    while p.phase != Phase::Done {
        now += 1;
        p.advance(t(now)).unwrap();
        seen.push(p.phase);
    }
    use Phase::*;
    assert_eq!(
        seen,
        vec![
            Prefetch,
            Pause,
            Surge,
            Drain,
            WaitMigrated,
            Upgrade,
            Restart,
            WaitReady,
            Reactivate,
            VerifyConverged,
            Done
        ]
    );
    assert_eq!(p.history.len(), 11);
    assert_eq!(p.history[1], Span::new(Prefetch, t(1), t(2)));
}

#[test]
fn transitions_refuse_wrong_source_phases() {
    let mut p = progress();
    assert_eq!(p.advance(t(1)).unwrap_err().from, Phase::Pending);
    p.start(t(1)).unwrap();
    assert!(p.start(t(2)).is_err());
    assert!(p.rolled_back(t(2)).is_err());
    assert!(p.needs_rejoin(t(2)).is_err());
    assert!(p.rejoined(NodeId("x".into()), t(2)).is_err());
    assert!(p.restored(t(2)).is_err());
    assert_eq!(p.phase, Phase::Prefetch, "a refused transition changes nothing");
}

fn at(phase: Phase) -> NodeProgress {
    let mut p = progress();
    p.start(t(0)).unwrap();
    p.record_previous(set());
    while p.phase != phase {
        p.advance(t(0)).unwrap();
    }
    p
}

#[test]
fn failures_recover_as_far_as_the_phase_allows() {
    use Phase::*;
    for (phase, to) in [
        (Prefetch, Restore),
        (Pause, Restore),
        (Surge, Restore),
        (Drain, Restore),
        (WaitMigrated, Restore),
        (Upgrade, Rollback),
        (Restart, Rollback),
        (WaitReady, Rollback),
        (Reactivate, Failed),
        (VerifyConverged, Failed),
    ] {
        let mut p = at(phase);
        p.fail("boom".into(), t(5)).unwrap();
        assert_eq!(p.phase, to, "fail from {phase:?}");
        assert_eq!(p.reason.as_deref(), Some("boom"));
    }
}

#[test]
fn rollback_then_verify_ends_rolled_back_and_a_second_failure_ends_failed() {
    let mut p = at(Phase::Restart);
    p.fail("docker.service failed".into(), t(1)).unwrap();
    assert_eq!(p.phase, Phase::Rollback);
    p.rolled_back(t(2)).unwrap();
    assert_eq!(p.phase, Phase::WaitReady);
    let mut q = p.clone();
    for _ in 0..3 {
        p.advance(t(3)).unwrap();
    }
    assert_eq!(p.phase, Phase::RolledBack);
    q.fail("still broken".into(), t(3)).unwrap();
    assert_eq!(q.phase, Phase::Failed, "no second rollback");
    assert_eq!(q.reason.as_deref(), Some("docker.service failed; then: still broken"));
}

#[test]
fn rejoin_changes_the_node_id_and_keeps_the_old_one() {
    let mut p = at(Phase::WaitReady);
    p.needs_rejoin(t(1)).unwrap();
    p.rejoined(NodeId("n1-new".into()), t(2)).unwrap();
    assert_eq!(
        (p.phase, p.node.0.as_str(), p.rejoined_from.as_ref().unwrap().0.as_str()),
        (Phase::WaitReady, "n1-new", "n1")
    );
}

#[test]
fn restore_ends_restored_and_terminal_phases_accept_nothing() {
    let mut p = at(Phase::Drain);
    p.fail("drain timed out".into(), t(1)).unwrap();
    p.restored(t(2)).unwrap();
    assert!(p.phase.is_terminal());
    assert!(p.fail("x".into(), t(3)).is_err());
    assert!(p.advance(t(3)).is_err());
}

#[test]
fn every_active_phase_has_a_timeout_and_resume_resets_the_clock() {
    let s = Settings::default();
    use Phase::*;
    for phase in [
        Prefetch,
        Pause,
        Surge,
        Drain,
        WaitMigrated,
        Upgrade,
        Restart,
        WaitReady,
        Reactivate,
        VerifyConverged,
        Rollback,
        Rejoin,
        Restore,
    ] {
        assert!(phase.timeout(&s.timeouts).is_some(), "{phase:?}");
    }
    let mut p = at(Phase::Restart);
    let limit = s.timeouts.restart.as_secs() as i64;
    assert!(!p.timed_out(&s.timeouts, t(limit)));
    assert!(p.timed_out(&s.timeouts, t(limit + 1)));
    p.resumed(t(limit + 1));
    assert!(!p.timed_out(&s.timeouts, t(limit + 2)));
}

/// worker2 in VerifyConverged since t(0), with `web` surged from 4 to 5 and already scaled back
/// in the spec, while the swarm still runs a fifth slot.
fn verifying_with_a_missed_scale_down() -> (NodeProgress, crate::model::ClusterSnapshot) {
    let mut snap: crate::model::ClusterSnapshot =
        serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap();
    snap.tasks.push(crate::model::Task {
        id: "web.5".into(),
        service: crate::model::ServiceId("web-id".into()),
        slot: Some(5),
        node: Some(NodeId("worker2-id".into())),
        state: crate::model::TaskState::Running,
        desired: crate::model::TaskState::Running,
        error: None,
    });
    let mut p = at(Phase::VerifyConverged);
    p.node = NodeId("worker2-id".into());
    p.hostname = "worker2".into();
    p.phase_started = t(0);
    p.surge = vec![Surge {
        service: crate::model::ServiceId("web-id".into()),
        name: "web".into(),
        from: 4,
        to: 5,
        expected_on: vec![],
    }];
    (p, snap)
}

#[test]
fn a_surplus_that_outlasts_the_grace_is_a_missed_scale_down_written_again_at_most_every_grace() {
    use decide::{MissedScaleDown, RESCALE_AFTER, Verdict, evaluate};
    let (mut p, snap) = verifying_with_a_missed_scale_down();
    let packages = set();
    let obs = observed(&snap, &packages);
    let timeouts = Settings::default().timeouts;
    let grace = RESCALE_AFTER.as_secs() as i64;
    let missed = Verdict::Rescale(vec![MissedScaleDown {
        service: crate::model::ServiceId("web-id".into()),
        name: "web".into(),
        replicas: 4,
        slots: 5,
    }]);
    // The orchestrator normally reacts within a second: a young surplus is only waited for.
    assert_eq!(
        evaluate(&p, &obs, &timeouts, t(grace - 1)),
        Verdict::Wait("Converging(\"service web: 5/4 replicas running\")".into())
    );
    assert_eq!(evaluate(&p, &obs, &timeouts, t(grace)), missed);
    // Written again at t(grace): the next write waits another grace.
    p.rescaled_at = Some(t(grace));
    assert!(matches!(evaluate(&p, &obs, &timeouts, t(2 * grace - 1)), Verdict::Wait(_)));
    assert_eq!(evaluate(&p, &obs, &timeouts, t(2 * grace)), missed);
    // A phase change or a resume forgets the last write.
    p.resumed(t(3 * grace));
    assert_eq!(p.rescaled_at, None);
}

#[test]
fn only_a_settled_scale_down_of_this_nodes_surge_is_written_again() {
    use decide::{RESCALE_AFTER, Verdict, evaluate};
    let packages = set();
    let timeouts = Settings::default().timeouts;
    let late = t(RESCALE_AFTER.as_secs() as i64 + 5);
    // Still surged in the spec (our own scale-back has not landed): nothing to write again.
    let (p, mut snap) = verifying_with_a_missed_scale_down();
    snap.services[0].mode = crate::model::Mode::Replicated { replicas: 5 };
    let obs = observed(&snap, &packages);
    assert!(!matches!(evaluate(&p, &obs, &timeouts, late), Verdict::Rescale(_)));
    // A rolling update in progress owns the service.
    let (p, mut snap) = verifying_with_a_missed_scale_down();
    snap.services[0].update_state = Some(crate::model::UpdateState::Updating);
    let obs = observed(&snap, &packages);
    assert!(!matches!(evaluate(&p, &obs, &timeouts, late), Verdict::Rescale(_)));
    // A service this node did not surge is the operator's: it is reported, never written.
    let (mut p, snap) = verifying_with_a_missed_scale_down();
    p.surge.clear();
    let obs = observed(&snap, &packages);
    assert!(matches!(evaluate(&p, &obs, &timeouts, late), Verdict::Wait(_)));
    // Once the swarm removes the surplus, verification goes on as usual.
    let (p, mut snap) = verifying_with_a_missed_scale_down();
    snap.tasks.last_mut().unwrap().desired = crate::model::TaskState::Remove;
    let obs = observed(&snap, &packages);
    assert_eq!(evaluate(&p, &obs, &timeouts, late), Verdict::Monitoring);
}

#[test]
fn the_deadline_fails_whatever_still_waits_and_passes_every_other_verdict() {
    use decide::{Verdict, deadline};
    let timeouts = Settings::default().timeouts;
    let p = at(Phase::Upgrade);
    let late = p.phase_started.checked_add(timeouts.upgrade + Duration::from_secs(1)).unwrap();
    let early = p.phase_started.checked_add(timeouts.upgrade - Duration::from_secs(1)).unwrap();
    for waiting in [
        Verdict::Wait("w".into()),
        Verdict::Postponed("busy: apt's lock".into()),
        Verdict::Monitoring,
    ] {
        assert_eq!(
            deadline(&p, waiting.clone(), &timeouts, early),
            waiting,
            "before the limit it stands"
        );
        assert!(matches!(deadline(&p, waiting, &timeouts, late), Verdict::Fail(_)));
    }
    let why = match deadline(&p, Verdict::Postponed("busy: apt's lock".into()), &timeouts, late) {
        Verdict::Fail(why) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        why,
        format!(
            "Upgrade on worker1 timed out after {}s: busy: apt's lock",
            timeouts.upgrade.as_secs()
        )
    );
    for settled in [Verdict::Complete, Verdict::Fail("f".into()), Verdict::Rejoin] {
        assert_eq!(
            deadline(&p, settled.clone(), &timeouts, late),
            settled,
            "a settled verdict is not overridden"
        );
    }
}

/// A snapshot with five `web` replicas running, and worker1 in Surge for `web` 4 -> 5.
fn surging() -> (NodeProgress, crate::model::ClusterSnapshot) {
    let (_, mut snap) = verifying_with_a_missed_scale_down();
    snap.services.iter_mut().filter(|s| s.name == "web").for_each(|s| {
        s.mode = crate::model::Mode::Replicated { replicas: 5 };
    });
    let mut p = at(Phase::Surge);
    p.node = NodeId("worker1-id".into());
    p.phase_started = t(0);
    p.surge = vec![Surge {
        service: crate::model::ServiceId("web-id".into()),
        name: "web".into(),
        from: 4,
        to: 5,
        expected_on: vec![],
    }];
    (p, snap)
}

#[test]
fn surged_replicas_run_for_the_warm_up_before_the_node_is_drained() {
    use decide::{Verdict, evaluate};
    let (mut p, mut snap) = surging();
    let packages = set();
    let timeouts = Settings::default().timeouts;
    let warmup = timeouts.warmup.as_secs() as i64;
    let judge = |p: &NodeProgress, snap: &crate::model::ClusterSnapshot, at: i64| {
        let obs = observed(snap, &packages);
        evaluate(p, &obs, &timeouts, t(at))
    };
    // Running (the engine's word) starts the warm-up; it completes only once the window is over.
    assert_eq!(judge(&p, &snap, 1), Verdict::Monitoring);
    p.converged_since = Some(t(1));
    assert_eq!(judge(&p, &snap, 1 + warmup - 1), Verdict::Monitoring);
    assert_eq!(judge(&p, &snap, 1 + warmup), Verdict::Complete);
    // A replica short is a wait, whatever the window says, naming the task that does not run
    // and the engine's reason, so that a timed-out wait reads without the cluster.
    let mut stuck = snap.tasks.pop().unwrap();
    stuck.id = "abcdefghijklmnopqrstuvwxyz".into();
    stuck.node = None;
    stuck.state = crate::model::TaskState::Pending;
    stuck.error = Some("no suitable node (max replicas per node limit exceed)".into());
    snap.tasks.push(stuck);
    let short = judge(&p, &snap, 1 + warmup);
    assert!(
        matches!(&short, Verdict::Wait(w) if w.contains("3/4 running off worker1")
            && w.ends_with("(not running: task abcdefghijkl Pending unassigned: no suitable node (max replicas per node limit exceed))")),
        "{short:?}"
    );
    // A node with nothing surged has nothing to warm up.
    p.surge.clear();
    p.converged_since = None;
    assert_eq!(judge(&p, &snap, 1), Verdict::Complete);
}

#[test]
fn no_warm_up_completes_a_surge_as_soon_as_its_replicas_run() {
    use decide::{Verdict, evaluate};
    let (p, snap) = surging();
    let packages = set();
    let mut timeouts = Settings::default().timeouts;
    timeouts.warmup = Duration::ZERO;
    let obs = observed(&snap, &packages);
    assert_eq!(evaluate(&p, &obs, &timeouts, t(1)), Verdict::Complete);
}

#[test]
fn a_warm_up_that_never_ends_fails_at_the_surge_timeout_saying_so() {
    use decide::{Verdict, evaluate};
    let (mut p, snap) = surging();
    let packages = set();
    let timeouts = Settings::default().timeouts;
    let obs = observed(&snap, &packages);
    // The replicas came up late: 2 s into the warm-up when the surge's limit passes.
    let late = timeouts.surge.as_secs() as i64 + 1;
    p.converged_since = Some(t(late - 2));
    assert_eq!(
        evaluate(&p, &obs, &timeouts, t(late)),
        Verdict::Fail(format!(
            "Surge on worker1 timed out after {}s: the surged replicas had run 2s of the 3s warm-up",
            timeouts.surge.as_secs()
        ))
    );
}

#[test]
fn a_verifying_node_opens_its_window_only_once_its_surge_is_its_own_and_judges_another_s_at_its_count()
 {
    use crate::model::ServiceId;
    use decide::{Verdict, evaluate};
    use std::collections::BTreeSet;
    let (p, mut snap) = verifying_with_a_missed_scale_down();
    snap.tasks.retain(|t| t.id != "web.5");
    let timeouts = Settings::default().timeouts;
    let judge = |snap: &crate::model::ClusterSnapshot,
                 held: &BTreeSet<ServiceId>,
                 mates_from: &BTreeMap<ServiceId, u64>| {
        let packages = set();
        let obs = decide::Observation { held, mates_from, ..observed(snap, &packages) };
        evaluate(&p, &obs, &timeouts, t(1))
    };
    let (no_one, none) = (BTreeSet::new(), BTreeMap::new());
    assert_eq!(judge(&snap, &no_one, &none), Verdict::Monitoring);
    // A batch-mate still moving its tasks holds web surged: the window waits for it.
    let web: BTreeSet<_> = [ServiceId("web-id".into())].into();
    let held = judge(&snap, &web, &none);
    assert!(matches!(&held, Verdict::Wait(why) if why.contains("web stays surged")), "{held:?}");
    // The next batch surged web to 6 and its replicas are still starting: web counts at 4.
    snap.services[0].mode = crate::model::Mode::Replicated { replicas: 6 };
    assert!(matches!(judge(&snap, &no_one, &none), Verdict::Wait(_)));
    let at = |n| [(ServiceId("web-id".into()), n)].into();
    assert_eq!(judge(&snap, &no_one, &at(4)), Verdict::Monitoring);
    assert!(matches!(judge(&snap, &no_one, &at(5)), Verdict::Wait(_)), "four run, five needed");
}

/// worker1 and worker2 surge `web` once together (4 -> 6: one task each); worker2, a little ahead,
/// drains first. worker1's surge still holds: what its drain leaves runs off the batch.
#[test]
fn a_batch_mate_s_drain_does_not_undo_a_node_s_surge() {
    use crate::model::{ServiceId, Task, TaskState};
    use decide::{Verdict, evaluate};
    let (mut p, mut snap) = surging();
    snap.tasks.retain(|t| t.id != "web.5");
    for (id, node) in [("web.5", "manager1-id"), ("web.6", "manager2-id")] {
        snap.tasks.push(Task {
            id: id.into(),
            service: ServiceId("web-id".into()),
            slot: Some(id[4..].parse().unwrap()),
            node: Some(NodeId(node.into())),
            state: TaskState::Running,
            desired: TaskState::Running,
            error: None,
        });
    }
    p.surge[0].to = 6;
    p.converged_since = Some(t(0));
    let packages = set();
    let timeouts = Settings::default().timeouts;
    let mates = [NodeId("worker2-id".into())];
    let judge = |snap: &crate::model::ClusterSnapshot| {
        let obs = decide::Observation { mates: &mates, ..observed(snap, &packages) };
        evaluate(&p, &obs, &timeouts, t(60))
    };
    assert_eq!(judge(&snap), Verdict::Complete);
    // worker2 drained: its task web.2 is shut down.
    let web2 = snap.tasks.iter_mut().find(|t| t.id == "web.2").unwrap();
    web2.desired = TaskState::Shutdown;
    web2.state = TaskState::Shutdown;
    assert_eq!(judge(&snap), Verdict::Complete, "five run for six, but four off the batch");
    // One of the surged replicas fails: what worker1's drain would leave is short.
    snap.tasks.retain(|t| t.id != "web.6");
    let short = judge(&snap);
    assert!(
        matches!(&short, Verdict::Wait(w) if w.contains("3/4 running off worker1 and its batch-mates")),
        "{short:?}"
    );
}

/// A node Down in the swarm's view after its restart, while its engine runs in the swarm as
/// itself: waited for [`decide::KICK_AFTER`], then its engine is restarted, once in the phase;
/// the phase's limit still applies.
#[test]
fn a_node_that_stays_down_while_its_engine_runs_is_restarted_once() {
    let mut snap: crate::model::ClusterSnapshot =
        serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap();
    let w1 = snap.nodes.iter_mut().find(|n| n.hostname == "worker1").unwrap();
    w1.state = crate::model::NodeState::Down;
    let id = w1.id.clone();
    let mut p = progress();
    p.node = id.clone();
    p.phase = Phase::WaitReady;
    p.phase_started = t(0);
    let packages = set();
    let report = crate::model::AgentReport {
        engine_active: true,
        local_swarm: Some(crate::model::LocalSwarm {
            node_id: id.0.clone(),
            state: crate::model::LocalSwarmState::Active,
        }),
        ..Default::default()
    };
    let obs = decide::Observation { agent: Some(&report), ..observed(&snap, &packages) };
    let timeouts = Settings::default().timeouts;
    let kick = decide::KICK_AFTER.as_secs() as i64;
    let at = |p: &NodeProgress, secs| decide::condition(p, &obs, &timeouts, t(secs));
    assert!(matches!(at(&p, kick - 1), decide::Verdict::Wait(_)));
    let decide::Verdict::Kick(why) = at(&p, kick) else { panic!("{:?}", at(&p, kick)) };
    assert!(why.starts_with("worker1 has been Down in the swarm's view for 90 s while its engine runs in the swarm: restarting its engine once"), "{why}");
    p.kicked_at = Some(t(kick));
    assert!(matches!(at(&p, kick + 60), decide::Verdict::Wait(_)), "once in the phase");
    let limit = timeouts.ready.as_secs() as i64;
    let late = decide::deadline(&p, at(&p, limit + 1), &timeouts, t(limit + 1));
    assert!(matches!(late, decide::Verdict::Fail(_)), "{late:?}");
    // Another node ID locally (a stranger) is rejoined, not restarted.
    let mut other = report.clone();
    other.local_swarm.as_mut().unwrap().node_id = "someone-else".into();
    let obs = decide::Observation { agent: Some(&other), ..observed(&snap, &packages) };
    p.kicked_at = None;
    assert_eq!(decide::condition(&p, &obs, &timeouts, t(kick)), decide::Verdict::Rejoin);
}
