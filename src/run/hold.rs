//! The hold after a run's canary (issue 17): once the first nodes are done, the run starts no
//! other node until an operator approves (`swarm-upgrade approve`) or its soak has passed with
//! every service converged. An abort during the hold ends the run as aborted; so does the hold's
//! limit, the canary nodes left at the target. Pure: the coordinator applies it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::RunRecord;
use crate::machine::Phase;

/// A run's hold after its canary nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The canary: the run's first `after` nodes.
    pub after: usize,
    /// Seconds it soaks before going on by itself; none: only `approve` lets it go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_s: Option<u64>,
    /// Seconds it holds at most.
    pub limit_s: u64,
    /// Since when it holds, once it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Since when, during the hold, every service has converged and every canary node has been
    /// Ready at its availability without a break: what the soak counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_since: Option<Timestamp>,
    /// What let it go, once something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<Released>,
}

/// What let a hold go, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// `approve` by its coordinator-to-be (`host/pid`), or `soak`.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

impl Hold {
    /// A hold after the first `after` nodes, soaking `soak` (none: until approved), at most
    /// `limit`.
    pub fn new(after: usize, soak: Option<Duration>, limit: Duration) -> Hold {
        Hold {
            after,
            soak_s: soak.map(|s| s.as_secs()),
            limit_s: limit.as_secs(),
            since: None,
            converged_since: None,
            released: None,
        }
    }

    /// When its soak ends if nothing breaks it: `soak` after the cluster was last seen settled
    /// (none without a soak, or while it is not).
    pub fn soak_until(&self) -> Option<Timestamp> {
        Some(later(self.converged_since?, self.soak_s?))
    }

    /// When it gives up, once it holds.
    pub fn expires_at(&self) -> Option<Timestamp> {
        Some(later(self.since?, self.limit_s))
    }

    /// What it waits for, for people: `swarm-upgrade approve` (and the soak's end, if any).
    pub fn waiting_for(&self) -> String {
        let soak = match (self.soak_until(), self.soak_s) {
            (Some(until), _) => {
                format!(", or its soak until {until} with every service converged")
            }
            (None, Some(s)) => format!(", or a soak of {s} s with every service converged"),
            (None, None) => String::new(),
        };
        let expires =
            self.expires_at().map(|t| format!("; it gives up at {t}")).unwrap_or_default();
        format!("`swarm-upgrade approve`{soak}{expires}")
    }
}

/// What one look at the cluster during the soak leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Soak {
    /// It has been settled for the whole soak: let the hold go.
    Release,
    /// Record since when it has been settled (none: it is not, the soak starts again).
    Mark(Option<Timestamp>),
    /// Nothing changed.
    Nothing,
}

impl Hold {
    /// The soak's step at `now`, the cluster `settled` or not ([`RunRecord::unsettled`]): it
    /// counts from when the cluster was last seen settled, without a break.
    pub fn soak_step(&self, settled: bool, now: Timestamp) -> Soak {
        let soaked = |since| {
            self.soak_s.is_some_and(|soak| crate::machine::elapsed(since, now).as_secs() >= soak)
        };
        match (settled, self.converged_since) {
            (false, None) => Soak::Nothing,
            (false, Some(_)) => Soak::Mark(None),
            (true, None) => Soak::Mark(Some(now)),
            (true, Some(since)) if soaked(since) => Soak::Release,
            (true, Some(_)) => Soak::Nothing,
        }
    }
}

fn later(t: Timestamp, secs: u64) -> Timestamp {
    t.saturating_add(SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX)))
        .unwrap_or(t)
}

impl RunRecord {
    /// Whether node `i` waits for the hold: it is past the canary and nothing has let the hold
    /// go. It neither starts early beside the last canary node nor starts after it until then.
    pub(crate) fn held_at(&self, i: usize) -> bool {
        self.hold.as_ref().is_some_and(|h| i >= h.after && h.released.is_none())
    }

    /// Whether the run holds now: every canary node done, the next node waiting for the hold.
    pub fn holding(&self) -> bool {
        let first = self.nodes.iter().position(|n| n.phase != Phase::Done);
        !self.finished() && first.is_some_and(|i| self.held_at(i))
    }

    /// Why the cluster is not settled for the soak: a service not converged, or a canary node
    /// not Ready at its availability; `None` when it is.
    pub fn unsettled(&self, snap: &crate::model::ClusterSnapshot) -> Option<String> {
        let after = self.hold.as_ref().map_or(0, |h| h.after);
        crate::model::convergence::first_unconverged(snap).map(|c| format!("{c:?}")).or_else(|| {
            self.nodes.iter().take(after).find_map(|n| {
                let fine = snap.node(&n.node).is_some_and(|node| {
                    node.state == crate::model::NodeState::Ready
                        && node.availability == n.original_availability
                });
                (!fine)
                    .then(|| format!("canary node {} is not Ready at its availability", n.hostname))
            })
        })
    }

    /// The canary nodes' host names.
    pub fn canary(&self) -> Vec<&str> {
        let after = self.hold.as_ref().map_or(0, |h| h.after);
        self.nodes.iter().take(after).map(|n| n.hostname.as_str()).collect()
    }
}

#[cfg(test)]
#[path = "hold_tests.rs"]
mod tests;
