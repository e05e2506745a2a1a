//! Pipelining between batches: the next batch starts (prefetch, pause, surge) while the batch
//! before it verifies (its services settling, then its monitor window), and drains only once
//! that batch is done. Pure.
//!
//! Why each overlap is safe:
//! - The next batch starts only when every node before it is done or verifying
//!   ([`RunRecord::early_start`]): upgraded, Ready, back at its availability, and its surge
//!   scaled back, as noted (`rescaled_at`) once its verify action has scaled back every surge
//!   (none left to a batch-mate that still holds it: the last of a batch scales a shared surge
//!   back). The guard then reads the cluster as that batch left it: the counts the next batch
//!   surges from are the services' own, and every service must have converged, but for a
//!   global service's task still starting on a node of the batch before
//!   ([`RunRecord::verifying_before`]): that node's own verification waits for it, and the
//!   next batch takes nothing from it before it drains.
//! - Pausing and surging take no task away: the nodes in their window keep every task they run,
//!   and a surged replica lands on a node that is up (none of the next batch: it is paused
//!   whole before any of it surges).
//! - No node of the next batch drains before every node before it is done
//!   ([`RunRecord::unverified_before`]): at most one batch is ever out of service, and a
//!   verification that fails finds the next batch with all of its tasks.
//! - A node before it that fails turns the next batch back before it drains
//!   ([`RunRecord::failed_before`]): surge scaled back, availability restored, and the run halts
//!   on that first failure.
//! - A node verifying judges a service the next batch surged at its count before that surge
//!   ([`RunRecord::mates_from`]) and never scales it back ([`RunRecord::taken_by_next`]).

use std::collections::BTreeSet;
use std::ops::Range;

use jiff::Timestamp;

use super::RunRecord;
use crate::machine::Phase;
use crate::model::ServiceId;

impl RunRecord {
    /// The nodes of the batch after node `i`'s (empty after the last).
    pub(super) fn next_batch(&self, i: usize) -> Range<usize> {
        let end = self.members(i).end;
        if end < self.nodes.len() { self.members(end) } else { end..end }
    }

    /// The nodes of the batch before node `i`'s: the only ones before it that may not be done
    /// once it has started (a batch starts when every node before it is done, or early when
    /// the batch before verifies with its surges scaled back and every node before that is
    /// done).
    fn before(&self, i: usize) -> impl Iterator<Item = &crate::machine::NodeProgress> {
        let start = self.members(i).start;
        let previous = if start > 0 { self.members(start - 1) } else { 0..0 };
        previous.map(|j| &self.nodes[j])
    }

    /// Since when node `i`'s phase counts against its time limit: its phase's start, but a
    /// surge held for the batch before only from when the last node of that batch was done;
    /// `None` while it is held (the batch before is bounded by its own limits).
    pub(crate) fn clock(&self, i: usize) -> Option<Timestamp> {
        let n = &self.nodes[i];
        if n.phase != Phase::Surge {
            return Some(n.phase_started);
        }
        if self.unverified_before(i).is_some() {
            return None;
        }
        let done = self.before(i).filter_map(|b| b.history.last().map(|s| s.end)).max();
        Some(done.map_or(n.phase_started, |d| d.max(n.phase_started)))
    }

    /// The nodes of the next batch, all not started, when they may start now: every node
    /// before them done or verifying with its surges scaled back (none failed), and no abort
    /// asked.
    pub(crate) fn early_start(&self) -> Option<Vec<usize>> {
        if self.abort_requested {
            return None;
        }
        let first = self.nodes.iter().position(|n| n.phase != Phase::Done)?;
        let members = self.members(first);
        let verifying = members.clone().map(|j| &self.nodes[j]).all(|n| {
            // (A node verifying after its rollback ends rolled back: the run halts there.)
            n.phase == Phase::Done
                || (n.phase == Phase::VerifyConverged
                    && (n.rescaled_at.is_some() || n.converged_since.is_some())
                    && !n.rolled_back)
        });
        let next = self.next_batch(first);
        if self.held_at(next.start) {
            return None;
        }
        let fresh = next.clone().all(|j| self.nodes[j].phase == Phase::Pending);
        (verifying && fresh && !next.is_empty()).then(|| next.collect())
    }

    /// The nodes of the batch before node `i`'s that are not done yet (verifying, when `i`'s
    /// batch starts early): what its guard leaves their own verification to judge.
    pub(crate) fn verifying_before(&self, i: usize) -> Vec<crate::model::NodeId> {
        self.before(i).filter(|n| n.phase != Phase::Done).map(|n| n.node.clone()).collect()
    }

    /// Whether every node of the batch before node `i`'s is done or in its monitor window (its
    /// services converged).
    pub(crate) fn window_open_before(&self, i: usize) -> bool {
        self.before(i).all(|n| n.phase == Phase::Done || n.converged_since.is_some())
    }

    /// Why node `i` may not drain yet: nodes before its batch not done (their verification
    /// still runs).
    pub(crate) fn unverified_before(&self, i: usize) -> Option<String> {
        let waiting: Vec<&str> = self
            .before(i)
            .filter(|n| n.phase != Phase::Done)
            .map(|n| n.hostname.as_str())
            .collect();
        (!waiting.is_empty()).then(|| {
            format!("drains once the nodes before it are verified: {}", waiting.join(", "))
        })
    }

    /// Why node `i`, started while the batch before it verified, is turned back before it
    /// drains: a node before its batch failed.
    pub(crate) fn failed_before(&self, i: usize) -> Option<String> {
        if !matches!(self.nodes[i].phase, Phase::Prefetch | Phase::Pause | Phase::Surge) {
            return None;
        }
        let failed = self.before(i).find(|n| {
            use Phase::*;
            matches!(n.phase, RolledBack | Restored | Failed | Rollback | Rejoin | Restore)
        })?;
        Some(format!(
            "turned back before its drain: node {} before it failed, the run halts",
            failed.hostname
        ))
    }

    /// The surged services node `i`'s scale-backs leave alone: those a batch-mate still holds
    /// ([`RunRecord::held_by_mates`]) and those the next batch took over
    /// ([`RunRecord::taken_by_next`]).
    pub(crate) fn left_to_others(&self, i: usize) -> BTreeSet<ServiceId> {
        let mut left = self.held_by_mates(i);
        left.extend(self.taken_by_next(i));
        left
    }

    /// The surged services of node `i` that a started node of the next batch surged again: node
    /// `i` scaled them back before that batch started, and leaves them to it.
    pub(crate) fn taken_by_next(&self, i: usize) -> BTreeSet<ServiceId> {
        let mine: BTreeSet<&ServiceId> = self.nodes[i].surge.iter().map(|s| &s.service).collect();
        self.next_batch(i)
            .map(|j| &self.nodes[j])
            .filter(|n| n.phase != Phase::Pending)
            .flat_map(|n| n.surge.iter().map(|s| &s.service))
            .filter(|s| mine.contains(s))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
