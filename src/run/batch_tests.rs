//! A run's batches: the next step, the gates between batch-mates and the surge they share.

use super::*;
use crate::config::{Parallel, Settings};
use crate::model::ClusterSnapshot;
use crate::model::plan::Surge;
use crate::planner::{PlanRequest, plan};
use crate::run::RunFlags;

pub(in crate::run) fn snapshot() -> ClusterSnapshot {
    serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap()
}

/// The five-node run with the batches given by number (node order: worker1, worker2, then the
/// managers).
pub(in crate::run) fn record(batches: &[Option<u32>]) -> RunRecord {
    let snap = snapshot();
    let req = PlanRequest {
        to: Some("5:28.5.2-1~debian.13~trixie".parse().unwrap()),
        ..Default::default()
    };
    let p = plan(&snap, &Settings::default(), &req).unwrap();
    let mut r = RunRecord::new("r1".into(), &p, RunFlags::default(), &snap, snap.taken_at);
    for (n, b) in r.nodes.iter_mut().zip(batches) {
        n.batch = *b;
    }
    r
}

pub(in crate::run) fn surge(service: &str) -> Surge {
    Surge {
        service: ServiceId(service.into()),
        name: service.into(),
        from: 2,
        to: 4,
        expected_on: vec![],
    }
}

#[test]
fn a_batch_starts_together_and_the_next_waits_for_all_of_it() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    assert_eq!(r.next_step(), RunStep::Start(vec![0, 1]));
    let now = r.started_at;
    r.nodes[0].start(now).unwrap();
    r.nodes[1].start(now).unwrap();
    assert_eq!(r.next_step(), RunStep::Continue(vec![0, 1]));
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Continue(vec![1]), "its batch-mate is not done yet");
    r.nodes[1].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Start(vec![2]));
}

#[test]
fn a_batch_the_guard_shrank_starts_the_rest_once_the_first_are_done() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].start(r.started_at).unwrap();
    assert_eq!(r.next_step(), RunStep::Continue(vec![0]), "a node not started is not stepped");
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Start(vec![1]));
}

#[test]
fn a_failed_node_lets_its_batch_finish_then_halts_the_run() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].phase = Phase::RolledBack;
    r.nodes[0].reason = Some("docker.service failed".into());
    r.nodes[1].phase = Phase::VerifyConverged;
    assert_eq!(r.next_step(), RunStep::Continue(vec![1]), "the batch-mate finishes first");
    r.nodes[1].phase = Phase::Done;
    match r.next_step() {
        RunStep::Finish(Halt::NodeFailed, why) => {
            assert!(why.contains("worker1 was rolled back"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_abort_stops_between_batches() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].phase = Phase::Done;
    r.nodes[1].phase = Phase::Upgrade;
    r.abort_requested = true;
    assert_eq!(r.next_step(), RunStep::Continue(vec![1]));
    r.nodes[1].phase = Phase::Done;
    assert!(
        matches!(r.next_step(), RunStep::Finish(Halt::Aborted, why) if why.contains("manager"))
    );
}

#[test]
fn nodes_recorded_before_batches_go_one_at_a_time() {
    let mut r = record(&[None, None, None, None, None]);
    assert_eq!(r.next_step(), RunStep::Start(vec![0]));
    r.nodes[0].phase = Phase::Done;
    assert_eq!(r.next_step(), RunStep::Start(vec![1]));
}

#[test]
fn a_fetched_node_waits_for_its_batch_mates_packages() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].phase = Phase::Prefetch;
    r.nodes[1].phase = Phase::Prefetch;
    assert_eq!(r.gate(0, Verdict::Complete), Verdict::Monitoring);
    assert_eq!(r.gate(0, Verdict::Wait("x".into())), Verdict::Wait("x".into()));
    r.nodes[1].converged_since = Some(r.started_at);
    assert_eq!(r.gate(0, Verdict::Complete), Verdict::Complete, "worker2 is fetched");
    r.nodes[1].converged_since = None;
    r.nodes[1].phase = Phase::Pause;
    assert_eq!(r.gate(0, Verdict::Complete), Verdict::Complete);
    r.nodes[1].phase = Phase::Prefetch;
    r.nodes[0].phase = Phase::Pause;
    assert_eq!(r.gate(0, Verdict::Complete), Verdict::Complete, "only Prefetch is gated");
}

#[test]
fn no_node_surges_before_its_whole_batch_is_paused() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].phase = Phase::Surge;
    for (mate, waits) in [
        (Phase::Prefetch, true),
        (Phase::Pause, true),
        (Phase::Surge, false),
        (Phase::Drain, false),
        (Phase::Restore, false),
        (Phase::Restored, false),
        (Phase::Pending, false),
    ] {
        r.nodes[1].phase = mate;
        assert_eq!(r.unpaused_mates(0).is_some(), waits, "batch-mate in {mate:?}");
    }
    r.nodes[1].phase = Phase::Pause;
    r.nodes[1].batch = Some(1);
    assert_eq!(r.unpaused_mates(0), None, "another batch does not count");
}

#[test]
fn a_shared_surge_is_held_until_every_batch_mate_has_migrated() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].surge = vec![surge("web"), surge("api")];
    r.nodes[1].surge = vec![surge("web"), surge("db")];
    r.nodes[0].phase = Phase::VerifyConverged;
    for (mate, held) in [
        (Phase::Surge, true),
        (Phase::WaitMigrated, true),
        (Phase::Upgrade, false),
        (Phase::VerifyConverged, false),
        (Phase::Restore, false),
        (Phase::Done, false),
        (Phase::Pending, false),
    ] {
        r.nodes[1].phase = mate;
        let want: BTreeSet<ServiceId> =
            if held { [ServiceId("web".into())].into() } else { BTreeSet::new() };
        assert_eq!(r.held_by_mates(0), want, "batch-mate in {mate:?}");
    }
}

#[test]
fn the_plan_cuts_a_batch_where_the_nodes_cannot_be_drained_together() {
    // web runs 4 replicas, at most one per node and on host port 8080, on 5 nodes: the two
    // workers' web tasks have one free node between them.
    let snap = snapshot();
    let req = PlanRequest {
        to: Some("5:28.5.2-1~debian.13~trixie".parse().unwrap()),
        parallel: Some(Parallel::Nodes(2)),
        ..Default::default()
    };
    let p = plan(&snap, &Settings::default(), &req).unwrap();
    let sizes: Vec<usize> = p.batches.iter().map(|b| b.nodes.len()).collect();
    assert_eq!(sizes, [1, 1, 1, 1, 1]);
    assert!(
        p.batches[0].why.contains("worker2 could not be drained together with worker1"),
        "{}",
        p.batches[0].why
    );
    assert!(p.batches[2].why.contains("managers go one at a time"), "{}", p.batches[2].why);
    let mut snap = snap;
    for s in &mut snap.services {
        s.max_replicas_per_node = None;
        s.host_ports.clear();
    }
    let p = plan(&snap, &Settings::default(), &req).unwrap();
    assert_eq!(p.batches[0].nodes, ["worker1", "worker2"], "{:?}", p.batches[0].why);
    assert_eq!(p.nodes[0].batch, p.nodes[1].batch);
    let web: Vec<u64> = p.nodes[..2]
        .iter()
        .map(|n| n.surge.iter().find(|s| s.name == "web").map_or(0, |s| s.to))
        .collect();
    assert_eq!(web, [6, 6], "web is surged once for both workers' tasks");
}

#[test]
fn a_batch_mate_s_surge_is_judged_at_its_count_before_the_surge() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].surge = vec![];
    r.nodes[1].surge = vec![surge("web")];
    r.nodes[0].phase = Phase::WaitMigrated;
    assert!(r.mates_from(0).is_empty(), "a batch-mate not started counts for nothing");
    r.nodes[1].phase = Phase::WaitMigrated;
    assert_eq!(r.mates_from(0), [(ServiceId("web".into()), 2)].into());
    assert!(r.mates_from(1).is_empty(), "its own surge is not a batch-mate's");
}

#[test]
fn a_surge_counts_off_the_batch_mates_that_take_no_tasks() {
    let mut r = record(&[Some(0), Some(0), Some(1), Some(2), Some(3)]);
    r.nodes[0].phase = Phase::Surge;
    for (mate, away) in [
        (Phase::Pending, false),
        (Phase::Pause, true),
        (Phase::Drain, true),
        (Phase::WaitReady, true),
        (Phase::Reactivate, false),
        (Phase::Done, false),
        (Phase::Restore, false),
    ] {
        r.nodes[1].phase = mate;
        assert_eq!(r.mate_nodes(0) == [r.nodes[1].node.clone()], away, "batch-mate in {mate:?}");
    }
}
