use super::*;
use crate::config::Settings;
use crate::planner::NodePlan;

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
    };
    NodeProgress::new(&plan, "10.0.0.2".into(), BTreeMap::new(), t(0))
}

fn set() -> PackageSet {
    PackageSet([("docker-ce".to_string(), "5:26.1.5-1~debian.13~trixie".parse().unwrap())].into())
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
    assert_eq!(seen, vec![Prefetch, Pause, Surge, Drain, WaitMigrated, Upgrade, Restart, WaitReady, Reactivate, VerifyConverged, Done]);
    assert_eq!(p.history.len(), 11);
    assert_eq!(p.history[1], Span { phase: Prefetch, start: t(1), end: t(2) });
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
    assert_eq!((p.phase, p.node.0.as_str(), p.rejoined_from.as_ref().unwrap().0.as_str()), (Phase::WaitReady, "n1-new", "n1"));
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
    for phase in
        [Prefetch, Pause, Surge, Drain, WaitMigrated, Upgrade, Restart, WaitReady, Reactivate, VerifyConverged, Rollback, Rejoin, Restore]
    {
        assert!(phase.timeout(&s.timeouts).is_some(), "{phase:?}");
    }
    let mut p = at(Phase::Restart);
    let limit = s.timeouts.restart.as_secs() as i64;
    assert!(!p.timed_out(&s.timeouts, t(limit)));
    assert!(p.timed_out(&s.timeouts, t(limit + 1)));
    p.resumed(t(limit + 1));
    assert!(!p.timed_out(&s.timeouts, t(limit + 2)));
}
