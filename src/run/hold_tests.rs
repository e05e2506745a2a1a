//! The hold after the canary: what it stops, what lets it go, and what it says.

use std::time::Duration;

use super::*;
use crate::machine::Phase;
use crate::run::batch::tests::record;
use crate::run::{Halt, RunStep};

/// Each node alone, the first the canary, held for approval (a soak of `soak`).
fn canary(soak: Option<u64>) -> RunRecord {
    let mut r = record(&[Some(0), Some(1), Some(2), Some(3), Some(4)]);
    r.hold = Some(Hold::new(1, soak.map(Duration::from_secs), Duration::from_secs(3600)));
    r
}

#[test]
fn nothing_after_the_canary_starts_early_or_late_until_the_hold_is_let_go() {
    let mut r = canary(None);
    assert_eq!(r.next_step(), RunStep::Start(vec![0]), "the canary goes first");
    r.nodes[0].phase = Phase::VerifyConverged;
    r.nodes[0].converged_since = Some(r.started_at);
    assert_eq!(r.early_start(), None, "the node after the canary does not start beside it");
    assert!(!r.holding(), "the canary still verifies");
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Hold);
    assert!(r.holding());
    r.hold.as_mut().unwrap().released =
        Some(Released { by: "approve by manager2/7".into(), at: r.started_at });
    assert!(!r.holding());
    assert_eq!(r.next_step(), RunStep::Start(vec![1]));
    // Once let go, the batches overlap again as usual.
    r.nodes[1].phase = Phase::VerifyConverged;
    r.nodes[1].converged_since = Some(r.started_at);
    assert_eq!(r.early_start(), Some(vec![2]));
}

#[test]
fn an_abort_during_the_hold_ends_the_run_and_a_failed_canary_halts_it() {
    let mut r = canary(None);
    r.nodes[0].phase = Phase::Done;
    r.abort_requested = true;
    assert!(matches!(r.next_step(), RunStep::Finish(Halt::Aborted, _)));
    let mut r = canary(None);
    r.nodes[0].phase = Phase::RolledBack;
    assert!(matches!(r.next_step(), RunStep::Finish(Halt::NodeFailed, _)));
    assert!(!r.holding());
}

#[test]
fn a_run_without_canary_never_holds_and_approving_early_skips_the_hold() {
    let mut r = record(&[Some(0), Some(1)]);
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Start(vec![1]));
    let mut r = canary(None);
    r.hold.as_mut().unwrap().released =
        Some(Released { by: "approve by manager1/1".into(), at: r.started_at });
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Start(vec![1]), "approved before the canary was done");
}

#[test]
fn the_hold_says_what_it_waits_for_and_until_when() {
    let mut h = Hold::new(2, Some(Duration::from_secs(1800)), Duration::from_secs(86_400));
    assert_eq!((h.soak_until(), h.expires_at()), (None, None), "not holding yet");
    assert_eq!(
        h.waiting_for(),
        "`swarm-upgrade approve`, or a soak of 1800 s with every service converged"
    );
    h.since = Some("2026-12-05T04:00:00Z".parse().unwrap());
    assert_eq!(h.soak_until(), None, "not settled yet: the soak has not begun");
    assert_eq!(h.expires_at(), Some("2026-12-06T04:00:00Z".parse().unwrap()));
    h.converged_since = Some("2026-12-05T04:05:00Z".parse().unwrap());
    assert_eq!(h.soak_until(), Some("2026-12-05T04:35:00Z".parse().unwrap()));
    assert_eq!(
        h.waiting_for(),
        "`swarm-upgrade approve`, or its soak until 2026-12-05T04:35:00Z with every service converged; it gives up at 2026-12-06T04:00:00Z"
    );
    let plain = Hold { soak_s: None, ..h };
    assert_eq!(plain.waiting_for(), "`swarm-upgrade approve`; it gives up at 2026-12-06T04:00:00Z");
}

#[test]
fn the_soak_counts_only_an_unbroken_settled_stretch() {
    let at = |m: i64| -> jiff::Timestamp {
        "2026-12-05T04:00:00Z".parse::<jiff::Timestamp>().unwrap()
            + jiff::SignedDuration::from_mins(m)
    };
    let mut h = Hold::new(1, Some(Duration::from_secs(600)), Duration::from_secs(86_400));
    assert_eq!(h.soak_step(false, at(0)), Soak::Nothing, "not settled, never was");
    assert_eq!(h.soak_step(true, at(1)), Soak::Mark(Some(at(1))), "settled: it starts");
    h.converged_since = Some(at(1));
    assert_eq!(h.soak_step(true, at(5)), Soak::Nothing, "still soaking");
    assert_eq!(h.soak_step(false, at(6)), Soak::Mark(None), "a break starts it again");
    assert_eq!(h.soak_step(true, at(11)), Soak::Release, "ten unbroken minutes");
    let plain = Hold { soak_s: None, ..h };
    assert_eq!(plain.soak_step(true, at(600)), Soak::Nothing, "no soak: only approve");
}
