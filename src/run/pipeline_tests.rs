//! Pipelining: when the next batch may start, what holds its drain, and what it takes over.

use std::collections::BTreeSet;

use crate::machine::Phase;
use crate::machine::decide::Verdict;
use crate::model::ServiceId;
use crate::run::RunStep;
use crate::run::batch::tests::{record, surge};

/// worker1 and worker2 together, then each manager alone.
fn batched() -> crate::run::RunRecord {
    record(&[Some(0), Some(0), Some(1), Some(2), Some(3)])
}

#[test]
fn the_next_batch_starts_once_every_node_before_it_is_in_its_monitor_window() {
    let mut r = batched();
    assert_eq!(r.early_start(), None, "nothing has started");
    r.nodes[0].phase = Phase::VerifyConverged;
    r.nodes[1].phase = Phase::VerifyConverged;
    r.nodes[0].converged_since = Some(r.started_at);
    assert_eq!(r.early_start(), None, "worker2's window has not opened");
    r.nodes[1].converged_since = Some(r.started_at);
    assert_eq!(r.early_start(), Some(vec![2]));
    r.nodes[1].rolled_back = true;
    assert_eq!(r.early_start(), None, "worker2 verifies its rollback: the run halts after it");
    r.nodes[1].rolled_back = false;
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.early_start(), Some(vec![2]), "a node done counts as verified");
    r.abort_requested = true;
    assert_eq!(r.early_start(), None, "an abort stops before the next batch");
    r.abort_requested = false;
    r.nodes[2].phase = Phase::Prefetch;
    assert_eq!(r.early_start(), None, "the next batch has started");
    assert_eq!(r.next_step(), RunStep::Continue(vec![1, 2]), "both batches are followed");
    r.nodes[1].phase = Phase::RolledBack;
    r.nodes[2].phase = Phase::Pending;
    assert_eq!(r.early_start(), None, "a failed node before it");
}

#[test]
fn the_next_batch_starts_once_every_node_before_it_has_scaled_its_surge_back() {
    let mut r = batched();
    r.nodes[0].phase = Phase::VerifyConverged;
    r.nodes[1].phase = Phase::VerifyConverged;
    assert_eq!(r.early_start(), None, "verifying, but no surge scaled back yet");
    r.nodes[0].rescaled_at = Some(r.started_at);
    assert_eq!(r.early_start(), None, "worker2 has not scaled its surge back");
    r.nodes[1].rescaled_at = Some(r.started_at);
    assert_eq!(r.early_start(), Some(vec![2]), "settling still, but every surge is back");
    assert!(!r.window_open_before(2), "neither window is open");
    let verifying: Vec<_> = r.verifying_before(2).into_iter().map(|n| n.0).collect();
    assert_eq!(verifying.len(), 2, "both workers are left to their own verification");
    r.nodes[0].phase = Phase::Done;
    r.nodes[1].converged_since = Some(r.started_at);
    assert!(r.window_open_before(2), "worker1 done, worker2 in its window");
    assert_eq!(r.verifying_before(2), vec![r.nodes[1].node.clone()]);
    r.nodes[1].phase = Phase::Reactivate;
    r.nodes[1].rescaled_at = None;
    r.nodes[1].converged_since = None;
    assert_eq!(r.early_start(), None, "worker2 is not verifying yet");
}

#[test]
fn no_batch_starts_early_after_the_last() {
    let mut r = batched();
    for n in 0..4 {
        r.nodes[n].phase = Phase::Done;
    }
    r.nodes[4].phase = Phase::VerifyConverged;
    r.nodes[4].converged_since = Some(r.started_at);
    assert_eq!(r.early_start(), None);
}

#[test]
fn a_batch_started_early_drains_only_once_the_batch_before_is_done() {
    let mut r = batched();
    r.nodes[0].phase = Phase::Done;
    r.nodes[1].phase = Phase::VerifyConverged;
    r.nodes[2].phase = Phase::Surge;
    let held = r.gate(2, Verdict::Complete);
    assert!(matches!(&held, Verdict::Held(why) if why.contains("worker2")), "{held:?}");
    assert_eq!(r.gate(2, Verdict::Monitoring), Verdict::Monitoring, "its warm-up runs");
    r.nodes[1].phase = Phase::Done;
    assert_eq!(r.gate(2, Verdict::Complete), Verdict::Complete);
    r.nodes[1].phase = Phase::VerifyConverged;
    r.nodes[2].phase = Phase::Pause;
    assert_eq!(r.gate(2, Verdict::Complete), Verdict::Complete, "only the drain waits");
}

#[test]
fn a_failure_before_it_turns_an_early_batch_back_before_its_drain() {
    let mut r = batched();
    r.nodes[0].phase = Phase::Done;
    r.nodes[1].phase = Phase::VerifyConverged;
    for phase in [Phase::Prefetch, Phase::Pause, Phase::Surge] {
        r.nodes[2].phase = phase;
        assert_eq!(r.failed_before(2), None, "{phase:?}");
    }
    for failed in [Phase::Failed, Phase::Rollback, Phase::RolledBack, Phase::Restored] {
        r.nodes[1].phase = failed;
        r.nodes[2].phase = Phase::Surge;
        let why = r.failed_before(2).expect("turned back");
        assert!(why.contains("node worker2 before it failed"), "{why}");
        r.nodes[2].phase = Phase::Restore;
        assert_eq!(r.failed_before(2), None, "already turned back");
    }
    assert_eq!(r.failed_before(0), None, "nothing before the first batch");
}

#[test]
fn a_service_the_next_batch_surged_again_is_judged_at_its_count_and_left_to_it() {
    let mut r = batched();
    r.nodes[0].surge = vec![surge("web"), surge("api")];
    r.nodes[2].surge = vec![surge("web")];
    r.nodes[0].phase = Phase::VerifyConverged;
    assert!(r.taken_by_next(0).is_empty(), "the next batch has not started");
    assert!(r.mates_from(0).is_empty());
    r.nodes[2].phase = Phase::Surge;
    let web: BTreeSet<ServiceId> = [ServiceId("web".into())].into();
    assert_eq!(r.taken_by_next(0), web);
    assert_eq!(r.mates_from(0), [(ServiceId("web".into()), 2)].into());
    assert!(r.taken_by_next(2).is_empty(), "nothing after manager2 has started");
}

#[test]
fn a_held_surge_counts_against_its_limit_only_from_when_the_batch_before_is_done() {
    let mut r = batched();
    let t = |s: i64| r.started_at + jiff::SignedDuration::from_secs(s);
    let (t10, t50) = (t(10), t(50));
    r.nodes[0].phase = Phase::Done;
    r.nodes[1].phase = Phase::VerifyConverged;
    r.nodes[2].phase = Phase::Surge;
    r.nodes[2].phase_started = t10;
    assert_eq!(r.clock(2), None, "held: the batch before bounds the wait");
    r.nodes[1].phase = Phase::Done;
    r.nodes[1].history.push(crate::machine::Span::new(Phase::VerifyConverged, t10, t50));
    assert_eq!(r.clock(2), Some(t50), "counted from when worker2 was done");
    r.nodes[2].phase_started = t(60);
    assert_eq!(r.clock(2), Some(t(60)), "a surge started after it counts from its own start");
    r.nodes[3].phase = Phase::Prefetch;
    r.nodes[3].phase_started = t10;
    assert_eq!(r.clock(3), Some(t10), "only a surge is held");
}
