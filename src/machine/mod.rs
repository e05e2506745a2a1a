//! The per-node state machine. Each transition is a named method that declares the phases it may
//! start from; `now` is always passed in. What a phase waits for is decided in [`decide`].

pub mod decide;
pub mod recovery;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::Timeouts;
use crate::model::plan::{NodePlan, Surge};
use crate::model::{Availability, NodeId, PackageSet, Role, ServiceId};

/// Where a node is in its upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Not started.
    Pending,
    /// The agent downloads the packages.
    Prefetch,
    /// No new tasks are placed on the node.
    Pause,
    /// Services with tasks here get extra replicas elsewhere.
    Surge,
    /// The node is drained.
    Drain,
    /// Waiting until its tasks run elsewhere.
    WaitMigrated,
    /// The agent installs the target package set.
    Upgrade,
    /// The agent restarts the engine.
    Restart,
    /// Waiting for the node to be Ready at the expected version.
    WaitReady,
    /// The node's availability is restored.
    Reactivate,
    /// Surge undone; waiting for every service to converge and stay so.
    VerifyConverged,
    /// Upgraded.
    Done,
    /// Recovery: the agent reinstalls the previous package set and restarts the engine.
    Rollback,
    /// Recovery: the engine runs but the node left the swarm; it joins again.
    Rejoin,
    /// Recovery before the engine was touched: surge undone, availability restored.
    Restore,
    /// Terminal: rolled back to the previous packages, back in service; the run halts.
    RolledBack,
    /// Terminal: restored without upgrading; the run halts.
    Restored,
    /// Terminal: needs an operator; the run halts.
    Failed,
}

impl Phase {
    /// The phase's name as reports, metrics and `status --output json` write it (`wait-ready`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{self:?}"))
    }

    /// Whether the node's part is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::RolledBack | Phase::Restored | Phase::Failed)
    }

    /// The next phase on the main path.
    pub(crate) fn successor(self) -> Option<Phase> {
        use Phase::*;
        Some(match self {
            Prefetch => Pause,
            Pause => Surge,
            Surge => Drain,
            Drain => WaitMigrated,
            WaitMigrated => Upgrade,
            Upgrade => Restart,
            Restart => WaitReady,
            WaitReady => Reactivate,
            Reactivate => VerifyConverged,
            VerifyConverged => Done,
            _ => return None,
        })
    }

    /// This phase's time limit.
    pub fn timeout(self, t: &Timeouts) -> Option<Duration> {
        use Phase::*;
        Some(match self {
            Prefetch => t.prefetch,
            Pause | Drain | Reactivate | Restore => t.availability,
            Surge => t.surge,
            WaitMigrated => t.migrate,
            Upgrade => t.upgrade,
            Restart => t.restart,
            WaitReady => t.ready,
            VerifyConverged => t.verify,
            Rollback => t.rollback,
            Rejoin => t.rejoin,
            Pending | Done | RolledBack | Restored | Failed => return None,
        })
    }
}

/// When a phase started and ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The phase.
    pub phase: Phase,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// When a surge that was done began to wait for the batch before it (pipelining): the rest
    /// of the span is that wait, not the surge's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_from: Option<Timestamp>,
}

impl Span {
    /// A phase from `start` to `end`, never held.
    pub fn new(phase: Phase, start: Timestamp, end: Timestamp) -> Span {
        Span { phase, start, end, held_from: None }
    }

    /// When the phase's own work ended: its end, or when it began to be held.
    pub fn worked_until(&self) -> Timestamp {
        self.held_from.map_or(self.end, |h| h.clamp(self.start, self.end))
    }
}

/// One node's progress: everything a coordinator needs to go on from here, on any manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// Node ID (changes when the node rejoins).
    pub node: NodeId,
    /// Host name.
    pub hostname: String,
    /// Role (a rejoin asks for this role's join token).
    pub role: Role,
    /// The address its agent listens on.
    #[serde(default)]
    pub addr: String,
    /// Current phase.
    pub phase: Phase,
    /// When the current phase started (reset on resume).
    pub phase_started: Timestamp,
    /// Availability to return to.
    pub original_availability: Availability,
    /// Node labels to carry over if it rejoins.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Services scaled up for this node.
    pub surge: Vec<Surge>,
    /// Services whose accepted outage its drain starts: their task here cannot run elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downtime: Vec<crate::model::plan::Outage>,
    /// The services its polls read and judge (see [`crate::model::scope`]): those running on it
    /// when it started, then its surged ones. Empty in records written before scopes were kept:
    /// such a node's polls read the whole cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<ServiceId>,
    /// The package set it installs, at the versions its own repository has for the target.
    /// Empty in records written before each node had its own: the run's set is its set.
    #[serde(default, skip_serializing_if = "PackageSet::is_empty")]
    pub packages: PackageSet,
    /// The package set before the upgrade, once known.
    pub previous: Option<PackageSet>,
    /// The containers no service owns that ran on it when it started (names), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone_before: Option<Vec<String>>,
    /// Those that ran on it when it was done, rolled back or restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone_after: Option<Vec<String>>,
    /// The archive of its swarm state taken before its install (a manager, with
    /// `upgrade.backup_managers`), as its agent named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_backup: Option<String>,
    /// Whether a rollback happened.
    pub rolled_back: bool,
    /// The node's ID before it rejoined.
    pub rejoined_from: Option<NodeId>,
    /// Since when the phase's condition has held: all services converged (verify), the surged
    /// replicas running (surge, for the warm-up), its packages fetched (prefetch, while its
    /// batch-mates fetch theirs).
    pub converged_since: Option<Timestamp>,
    /// When the coordinator last wrote the node's surges back (verify phase): all of them, by its
    /// action (nothing left to batch-mates), then a scale-down the swarm had missed, again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescaled_at: Option<Timestamp>,
    /// Since when its finished surge has been held for the batch before it (pipelining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<Timestamp>,
    /// When its engine was last restarted because it stayed Down in the swarm's view while
    /// running (see [`decide::KICK_AFTER`]): once a WaitReady phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kicked_at: Option<Timestamp>,
    /// Why the node failed, rolled back or was restored.
    pub reason: Option<String>,
    /// For a node left failed: its state and the exact steps that bring it back (see
    /// [`recovery::steps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<String>,
    /// The runs of its hooks (see [`crate::model::hooks`]), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::model::hooks::HookRun>,
    /// Why it needs a person's look though it is upgraded (its `after_verify` hook failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// Finished phases.
    pub history: Vec<Span>,
    /// Its batch (the plan's batch number): the nodes of one batch go through their upgrade
    /// together. Absent in records written before batches: such a node goes alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

/// A transition attempted from a phase that does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: transition `{transition}` is not allowed from phase {from:?}")]
pub struct TransitionError {
    /// Node host name.
    pub node: String,
    /// The transition.
    pub transition: &'static str,
    /// The phase it was attempted from.
    pub from: Phase,
}

impl NodeProgress {
    /// A node that has not started, from its plan.
    pub fn new(
        plan: &NodePlan,
        addr: String,
        labels: BTreeMap<String, String>,
        now: Timestamp,
    ) -> Self {
        NodeProgress {
            node: plan.node.clone(),
            hostname: plan.hostname.clone(),
            role: plan.role,
            addr,
            phase: Phase::Pending,
            phase_started: now,
            original_availability: plan.availability,
            labels,
            surge: plan.surge.clone(),
            downtime: plan.downtime.clone(),
            scope: Vec::new(),
            packages: plan.packages.clone(),
            previous: None,
            standalone_before: None,
            standalone_after: None,
            swarm_backup: None,
            rolled_back: false,
            rejoined_from: None,
            converged_since: None,
            rescaled_at: None,
            held_since: None,
            kicked_at: None,
            reason: None,
            recovery: None,
            hooks: Vec::new(),
            attention: None,
            history: Vec::new(),
            batch: Some(plan.batch),
        }
    }

    fn go(
        &mut self,
        transition: &'static str,
        allowed: &[Phase],
        to: Phase,
        now: Timestamp,
    ) -> Result<(), TransitionError> {
        if !allowed.contains(&self.phase) {
            return Err(TransitionError {
                node: self.hostname.clone(),
                transition,
                from: self.phase,
            });
        }
        let held_from = self.held_since.take();
        self.history.push(Span { held_from, ..Span::new(self.phase, self.phase_started, now) });
        self.phase = to;
        self.phase_started = now;
        self.converged_since = None;
        self.rescaled_at = None;
        Ok(())
    }

    /// Pending -> Prefetch.
    pub fn start(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        self.go("start", &[Phase::Pending], Phase::Prefetch, now)
    }

    /// Main path: a phase's work is done. Verification after a rollback ends in RolledBack.
    pub(crate) fn advance(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        use Phase::*;
        let allowed = [
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
        ];
        let next = match self.phase {
            VerifyConverged if self.rolled_back => RolledBack,
            p => p.successor().unwrap_or(Failed),
        };
        self.go("advance", &allowed, next, now)
    }

    /// Prefetch records the installed package set, so a failed upgrade can always roll back to it.
    pub(crate) fn record_previous(&mut self, previous: PackageSet) {
        if self.previous.is_none() {
            self.previous = Some(previous);
        }
    }

    /// Something failed: recover as far as the phase allows.
    /// Before the engine was touched: Restore. Engine touched: Rollback (once). After the node was
    /// back, or when recovery itself fails: Failed, for an operator.
    pub fn fail(&mut self, reason: String, now: Timestamp) -> Result<(), TransitionError> {
        use Phase::*;
        let allowed = [
            Prefetch,
            Pause,
            Surge,
            Drain,
            WaitMigrated,
            Upgrade,
            Restart,
            WaitReady,
            Rejoin,
            Reactivate,
            VerifyConverged,
            Rollback,
            Restore,
        ];
        let to = match self.phase {
            Prefetch | Pause | Surge | Drain | WaitMigrated => Restore,
            Upgrade | Restart | WaitReady | Rejoin
                if !self.rolled_back && self.previous.is_some() =>
            {
                Rollback
            }
            _ => Failed,
        };
        if self.reason.is_none() {
            self.reason = Some(reason);
        } else if to == Failed {
            self.reason =
                Some(format!("{}; then: {reason}", self.reason.take().unwrap_or_default()));
        }
        self.go("fail", &allowed, to, now)
    }

    /// Rollback -> WaitReady: the previous packages are installed and the engine restarted.
    pub fn rolled_back(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        self.go("rolled_back", &[Phase::Rollback], Phase::WaitReady, now)?;
        self.rolled_back = true;
        Ok(())
    }

    /// WaitReady -> Rejoin: the engine runs at the expected version but the node is not in the swarm.
    pub(crate) fn needs_rejoin(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        self.go("needs_rejoin", &[Phase::WaitReady], Phase::Rejoin, now)
    }

    /// Rejoin -> WaitReady under the node's new ID.
    pub fn rejoined(&mut self, new_id: NodeId, now: Timestamp) -> Result<(), TransitionError> {
        self.go("rejoined", &[Phase::Rejoin], Phase::WaitReady, now)?;
        if self.rejoined_from.is_none() {
            self.rejoined_from = Some(self.node.clone());
        }
        self.node = new_id;
        Ok(())
    }

    /// Restore -> Restored.
    pub fn restored(&mut self, now: Timestamp) -> Result<(), TransitionError> {
        self.go("restored", &[Phase::Restore], Phase::Restored, now)
    }

    /// A coordinator took over: the time it was away does not count against the phase.
    pub fn resumed(&mut self, now: Timestamp) {
        self.phase_started = now;
        self.converged_since = None;
        self.rescaled_at = None;
        self.held_since = None;
    }

    /// Whether the current phase has run out of time.
    pub(crate) fn timed_out(&self, timeouts: &Timeouts, now: Timestamp) -> bool {
        match self.phase.timeout(timeouts) {
            Some(limit) => elapsed(self.phase_started, now) > limit,
            None => false,
        }
    }
}

/// Time from `start` to `now` (zero if the clock went back).
pub fn elapsed(start: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests;
