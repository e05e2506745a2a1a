//! A run's floor: the time its nodes could not have avoided, against the time it took.
//!
//! A node's floor is what upgrading it takes whatever tool does it: its replacements starting
//! elsewhere (surge, with the warm-up a load balancer needs before the old replica may stop),
//! its old tasks stopping gracefully and running elsewhere (wait-migrated), the install
//! (upgrade), the engine restart (restart) and the node Ready again (wait-ready). The rest is
//! overhead: prefetch, pause, drain, reactivate, verify-converged (its monitor window), a
//! node's wait for its batch-mates' packages, and a surge's wait, once done, for the batch
//! before it (pipelining). (A surge that waits for batch-mates to be paused
//! counts as floor: that wait is a second or so.) The nodes of a batch go at once, so a batch's
//! floor is its slowest node's and the run's floor is the sum of its batches' (a batch the guard
//! shrank counts once per go); the ratio is the run's wall time over that floor (1.0 would be a
//! tool with no overhead at all at this batch size).

use serde::{Deserialize, Serialize};

use crate::machine::{NodeProgress, Phase, elapsed};
use crate::run::RunRecord;

/// The phases a node's floor is made of.
pub const FLOOR_PHASES: [Phase; 5] =
    [Phase::Surge, Phase::WaitMigrated, Phase::Upgrade, Phase::Restart, Phase::WaitReady];

/// One node's time, split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeFloor {
    /// Host name.
    pub hostname: String,
    /// Seconds in its floor phases.
    pub floor_s: f64,
    /// Seconds in its other phases.
    pub overhead_s: f64,
}

/// The run's time against its floor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFloor {
    /// From the run's start to its end (or its last recorded moment).
    pub wall_s: f64,
    /// The sum over its batches of each batch's slowest floor.
    pub floor_s: f64,
    /// `wall_s / floor_s` (0 when nothing was upgraded).
    pub ratio: f64,
    /// Per node, in run order (nodes that never started left out).
    pub nodes: Vec<NodeFloor>,
}

impl RunFloor {
    /// The floor of `run` as recorded.
    pub fn of(run: &RunRecord) -> RunFloor {
        let last = run.nodes.iter().flat_map(|n| n.history.iter().map(|s| s.end)).max();
        let end = run.finished_at.or(last).unwrap_or(run.started_at);
        let wall_s = elapsed(run.started_at, end).as_secs_f64();
        let mut nodes = Vec::new();
        let mut floor_s = 0.0;
        // The nodes that went together: of one batch and started at once (a batch the guard
        // shrank went in two goes). Nodes recorded without a batch each went alone.
        let mut went: Option<((Option<u32>, jiff::Timestamp), f64)> = None;
        for n in run.nodes.iter() {
            let Some((f, started)) = node_floor(n) else { continue };
            let key = (n.batch, started);
            went = match went {
                Some((k, slowest)) if k == key && key.0.is_some() => {
                    Some((k, slowest.max(f.floor_s)))
                }
                other => {
                    floor_s += other.map_or(0.0, |(_, slowest)| slowest);
                    Some((key, f.floor_s))
                }
            };
            nodes.push(f);
        }
        floor_s += went.map_or(0.0, |(_, slowest)| slowest);
        let ratio = if floor_s > 0.0 { wall_s / floor_s } else { 0.0 };
        RunFloor { wall_s, floor_s, ratio, nodes }
    }
}

/// A node's floor and overhead from its finished phases, and when it started (none if it never
/// did).
fn node_floor(n: &NodeProgress) -> Option<(NodeFloor, jiff::Timestamp)> {
    let worked: Vec<_> = n.history.iter().filter(|s| s.phase != Phase::Pending).collect();
    let started = worked.first()?.start;
    let (mut floor_s, mut overhead_s) = (0.0, 0.0);
    for s in worked {
        // A surge held for the batch before counts as floor only until it was done.
        let (work, wait) = (elapsed(s.start, s.worked_until()), elapsed(s.worked_until(), s.end));
        if FLOOR_PHASES.contains(&s.phase) {
            floor_s += work.as_secs_f64();
            overhead_s += wait.as_secs_f64();
        } else {
            overhead_s += (work + wait).as_secs_f64();
        }
    }
    Some((NodeFloor { hostname: n.hostname.clone(), floor_s, overhead_s }, started))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Span;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// A node's batch and its phases with their seconds, one after another from the run's start.
    type Node<'a> = (Option<u32>, &'a [(Phase, i64)]);

    /// A run of `nodes`, finished `finished` seconds after its start.
    fn run(nodes: &[Node<'_>], finished: i64) -> RunRecord {
        let mut r: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/run/partial.json")).unwrap();
        r.started_at = at(0);
        r.finished_at = Some(at(finished));
        let template = r.nodes[0].clone();
        r.nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, (batch, phases))| {
                let mut n = template.clone();
                n.hostname = format!("n{i}");
                n.batch = *batch;
                let mut t = 0;
                n.history = std::iter::once(Span::new(Phase::Pending, at(0), at(0)))
                    .chain(phases.iter().map(|&(phase, secs)| {
                        t += secs;
                        Span::new(phase, at(t - secs), at(t))
                    }))
                    .collect();
                n
            })
            .collect();
        r
    }

    const NODE: &[(Phase, i64)] = &[
        (Phase::Prefetch, 1),
        (Phase::Pause, 1),
        (Phase::Surge, 6),
        (Phase::Drain, 1),
        (Phase::WaitMigrated, 4),
        (Phase::Upgrade, 5),
        (Phase::Restart, 2),
        (Phase::WaitReady, 1),
        (Phase::Reactivate, 1),
        (Phase::VerifyConverged, 12),
    ];

    #[test]
    fn a_node_s_floor_is_its_unavoidable_phases_and_the_rest_is_overhead() {
        let f = RunFloor::of(&run(&[(Some(0), NODE)], 40));
        assert_eq!((f.nodes[0].floor_s, f.nodes[0].overhead_s), (18.0, 16.0));
        assert_eq!((f.wall_s, f.floor_s), (40.0, 18.0));
        assert!((f.ratio - 40.0 / 18.0).abs() < 1e-9);
    }

    #[test]
    fn a_batch_counts_its_slowest_node_once_and_batches_add_up() {
        let slow: Vec<(Phase, i64)> =
            NODE.iter().map(|&(p, s)| (p, if p == Phase::Upgrade { 15 } else { s })).collect();
        let f = RunFloor::of(&run(
            &[(Some(0), NODE), (Some(0), &slow), (Some(1), NODE), (None, NODE), (None, NODE)],
            200,
        ));
        // Batch 0: the slow node's 28 s; batch 1: 18 s; two nodes without a batch: 18 s each.
        assert_eq!(f.floor_s, 28.0 + 18.0 + 18.0 + 18.0);
        assert_eq!(f.nodes.len(), 5);
    }

    #[test]
    fn a_batch_that_went_in_two_goes_counts_each_go() {
        let mut r = run(&[(Some(0), NODE), (Some(0), NODE)], 80);
        let later = jiff::SignedDuration::from_secs(40);
        for s in r.nodes[1].history.iter_mut().filter(|s| s.phase != Phase::Pending) {
            (s.start, s.end) = (s.start + later, s.end + later);
        }
        assert_eq!(RunFloor::of(&r).floor_s, 36.0);
    }

    #[test]
    fn a_surge_held_for_the_batch_before_counts_as_floor_only_until_it_was_done() {
        let mut r = run(&[(Some(0), NODE)], 40);
        let surge = r.nodes[0].history.iter_mut().find(|s| s.phase == Phase::Surge).unwrap();
        // The surge ran 6 s, of which its last 4 s were held.
        surge.held_from = Some(surge.start + jiff::SignedDuration::from_secs(2));
        let f = RunFloor::of(&r);
        assert_eq!((f.nodes[0].floor_s, f.nodes[0].overhead_s), (14.0, 20.0));
    }

    #[test]
    fn nodes_that_never_started_have_no_floor() {
        let f = RunFloor::of(&run(&[(Some(0), NODE), (Some(1), &[])], 40));
        assert_eq!(f.nodes.len(), 1);
        assert_eq!(f.floor_s, 18.0);
        assert_eq!(RunFloor::of(&run(&[(Some(0), &[])], 5)).ratio, 0.0);
    }
}
