//! A run's batches: which nodes go together, the next step, and what the nodes of a batch wait
//! for from each other. Pure.
//!
//! Why the overlaps inside a batch are safe:
//! - Every node of a batch is paused before any of them is surged (and so drained): a task
//!   evicted from one never lands on another about to go down, and a surged replica never lands
//!   on a node of the batch ([`RunRecord::unpaused_mates`]).
//! - A node leaves Prefetch only once its batch-mates have their packages too, so that wait
//!   counts against the long prefetch limit, not the short pause and surge ones
//!   ([`RunRecord::gate`]). A fetched node is marked so (its `converged_since`), so that two
//!   fetched nodes never wait for each other.
//! - A service with tasks on several nodes of a batch is surged once for all of them (the
//!   planner raises each node's surge to the batch's), and scaled back only when no batch-mate's
//!   tasks still need the surplus ([`RunRecord::held_by_mates`]): until then its nodes leave it
//!   surged and do not wait for it to come back.

use std::collections::{BTreeMap, BTreeSet};

use super::{Halt, RunRecord, RunStep};
use crate::machine::decide::Verdict;
use crate::machine::{NodeProgress, Phase};
use crate::model::{NodeId, ServiceId};

/// Which batch a node is in: nodes recorded before batches each go alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Batch(u32),
    Alone(usize),
}

impl RunRecord {
    fn key(&self, i: usize) -> Key {
        self.nodes[i].batch.map_or(Key::Alone(i), Key::Batch)
    }

    /// The indexes of the nodes in node `i`'s batch (batches are consecutive in the order).
    pub(super) fn members(&self, i: usize) -> std::ops::Range<usize> {
        let key = self.key(i);
        let start = (0..=i).rev().take_while(|&j| self.key(j) == key).last().unwrap_or(i);
        let end = (i..self.nodes.len()).take_while(|&j| self.key(j) == key).last().unwrap_or(i);
        start..end + 1
    }

    /// Whether every node of node `i`'s batch has ended (a terminal phase).
    pub(crate) fn batch_ended(&self, i: usize) -> bool {
        self.members(i).all(|j| self.nodes[j].phase.is_terminal())
    }

    /// Node `i`'s batch-mates that have started (a batch the guard shrank starts the rest later).
    fn mates(&self, i: usize) -> impl Iterator<Item = &NodeProgress> {
        self.members(i)
            .filter(move |&j| j != i)
            .map(|j| &self.nodes[j])
            .filter(|n| n.phase != Phase::Pending)
    }

    /// Decides the next step from the first node not done: go on with its batch's nodes in
    /// progress (and the next batch's, started early: see [`super::pipeline`]); once none is, halt if one of them did not finish Done, stop if an abort was
    /// asked, or start the batch's nodes not yet started. All done: the run is complete.
    pub(crate) fn next_step(&self) -> RunStep {
        let Some(first) = self.nodes.iter().position(|n| n.phase != Phase::Done) else {
            return RunStep::Finish(
                Halt::Completed,
                format!("all {} nodes at {}", self.nodes.len(), self.target),
            );
        };
        let members = self.members(first);
        let with = |keep: fn(Phase) -> bool| -> Vec<usize> {
            members.clone().filter(|&j| keep(self.nodes[j].phase)).collect()
        };
        // The next batch too: it may have started while this one verifies.
        let active: Vec<usize> = members
            .clone()
            .chain(self.next_batch(first))
            .filter(|&j| {
                !self.nodes[j].phase.is_terminal() && self.nodes[j].phase != Phase::Pending
            })
            .collect();
        if !active.is_empty() {
            return RunStep::Continue(active);
        }
        if let Some(n) = members
            .clone()
            .map(|j| &self.nodes[j])
            .find(|n| matches!(n.phase, Phase::RolledBack | Phase::Restored | Phase::Failed))
        {
            return RunStep::Finish(Halt::NodeFailed, failed(n));
        }
        let pending = with(|p| p == Phase::Pending);
        if self.abort_requested {
            return RunStep::Finish(
                Halt::Aborted,
                format!("aborted by an operator before node {}", self.nodes[pending[0]].hostname),
            );
        }
        if self.held_at(pending[0]) {
            return RunStep::Hold;
        }
        RunStep::Start(pending)
    }

    /// Why node `i` may not surge yet: batch-mates not yet paused.
    pub(crate) fn unpaused_mates(&self, i: usize) -> Option<String> {
        let waiting: Vec<&str> = self
            .mates(i)
            .filter(|n| matches!(n.phase, Phase::Prefetch | Phase::Pause))
            .map(|n| n.hostname.as_str())
            .collect();
        (!waiting.is_empty()).then(|| format!("batch-mates not paused yet: {}", waiting.join(", ")))
    }

    /// Node `i`'s verdict with its batch's gates applied: a finished prefetch waits, with its
    /// window running (it is marked fetched), for the batch-mates not yet marked so; a finished
    /// surge is held (its drain waits) while a node before its batch is not done yet.
    pub(crate) fn gate(&self, i: usize, verdict: Verdict) -> Verdict {
        if verdict != Verdict::Complete {
            return verdict;
        }
        if self.nodes[i].phase == Phase::Surge {
            return self.unverified_before(i).map_or(verdict, Verdict::Held);
        }
        if self.nodes[i].phase != Phase::Prefetch {
            return verdict;
        }
        let fetching =
            self.mates(i).any(|n| n.phase == Phase::Prefetch && n.converged_since.is_none());
        if fetching { Verdict::Monitoring } else { verdict }
    }

    /// The nodes of node `i`'s batch-mates that take no tasks now: paused or drained, not yet
    /// given back their availability (a surged replica runs elsewhere).
    pub(crate) fn mate_nodes(&self, i: usize) -> Vec<NodeId> {
        use Phase::*;
        self.mates(i)
            .filter(|n| {
                matches!(
                    n.phase,
                    Pause
                        | Surge
                        | Drain
                        | WaitMigrated
                        | Upgrade
                        | Restart
                        | WaitReady
                        | Rollback
                        | Rejoin
                )
            })
            .map(|n| n.node.clone())
            .collect()
    }

    /// Each service a started batch-mate, or a started node of the next batch, surged, with its
    /// replica count before the surge.
    pub(crate) fn mates_from(&self, i: usize) -> BTreeMap<ServiceId, u64> {
        let next = self.next_batch(i).map(|j| &self.nodes[j]).filter(|n| n.phase != Phase::Pending);
        self.mates(i)
            .chain(next)
            .flat_map(|n| n.surge.iter().map(|s| (s.service.clone(), s.from)))
            .collect()
    }

    /// The surged services of node `i` that a started batch-mate still needs surged: one whose
    /// tasks have not yet run elsewhere (it is not yet past WaitMigrated, nor recovering).
    pub(crate) fn held_by_mates(&self, i: usize) -> BTreeSet<ServiceId> {
        let mine: BTreeSet<&ServiceId> = self.nodes[i].surge.iter().map(|s| &s.service).collect();
        self.mates(i)
            .filter(|n| {
                use Phase::*;
                matches!(n.phase, Prefetch | Pause | Surge | Drain | WaitMigrated)
            })
            .flat_map(|n| n.surge.iter().map(|s| &s.service))
            .filter(|s| mine.contains(s))
            .cloned()
            .collect()
    }
}

/// Why the run halts at node `n`, which did not finish Done.
fn failed(n: &NodeProgress) -> String {
    let why = n.reason.clone().unwrap_or_else(|| "no reason recorded".into());
    let what = match n.phase {
        Phase::RolledBack => "was rolled back to its previous packages and is back in service",
        Phase::Restored => "was restored without upgrading",
        _ => "needs a person (its recovery: `swarm-upgrade status`)",
    };
    format!("node {} {what}: {why}", n.hostname)
}

#[cfg(test)]
#[path = "batch_tests.rs"]
pub(super) mod tests;
