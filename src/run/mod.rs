//! The run record (kept in the store so any manager can resume) and the run-level decision.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::machine::NodeProgress;
pub use crate::model::plan::RunFlags;
use crate::model::plan::{Refusal, RefusalKind};
use crate::model::{ClusterSnapshot, PackageSet, Target};
use crate::planner::Plan;
pub use hold::{Hold, Released};
pub use nodes::Nodes;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every node upgraded.
    Succeeded,
    /// A node failed, rolled back or was restored; the run halted.
    Failed,
    /// An operator asked it to stop; it stopped between nodes.
    Aborted,
}

impl Outcome {
    /// The outcome as reports, metrics and JSON output write it (`succeeded`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Why a run ended, as a kind: what code acts on (the run's `reason` says it for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Halt {
    /// Every node upgraded.
    Completed,
    /// A node failed: rolled back, restored, or left for an operator.
    NodeFailed,
    /// An operator's `abort`, between nodes.
    Aborted,
    /// An operator's stop label on a node, between nodes.
    StopLabel,
    /// The guards before a node refused it, with the cluster as it then was.
    Guard,
    /// The cluster could not be observed before a node.
    Unobservable,
    /// Nothing let the hold after the canary go within its limit.
    HoldExpired,
    /// The alert gate stayed closed before a node for all of `gates.wait`.
    AlertGate,
}

impl Halt {
    /// The outcome this kind of end is.
    pub fn outcome(self) -> Outcome {
        match self {
            Halt::Completed => Outcome::Succeeded,
            Halt::Aborted | Halt::StopLabel | Halt::HoldExpired | Halt::AlertGate => {
                Outcome::Aborted
            }
            Halt::NodeFailed | Halt::Guard | Halt::Unobservable => Outcome::Failed,
        }
    }
}

/// A run: its target, its nodes in order, and how far each got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run ID.
    pub id: String,
    /// The target: an engine version, or an exact package version (runs recorded before
    /// engine-version targets have the package version).
    pub target: Target,
    /// The package set of every node, in runs recorded before each node had its own
    /// ([`NodeProgress::packages`]); empty since.
    #[serde(default, skip_serializing_if = "PackageSet::is_empty")]
    pub packages: PackageSet,
    /// When it started.
    pub started_at: Timestamp,
    /// Nodes in order.
    pub nodes: Nodes,
    /// The operator's permissions, re-checked before every node.
    #[serde(default)]
    pub flags: RunFlags,
    /// Set by `swarm-upgrade abort`: stop after the current node.
    #[serde(default)]
    pub abort_requested: bool,
    /// The hold after the canary nodes, if the run has a canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// The alert gate's wait before a node, while it lasts (for `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_wait: Option<GateWait>,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
    /// Why, as a kind (absent in runs recorded before the kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<Halt>,
    /// Why it ended that way.
    pub reason: Option<String>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

/// A run waiting before a node for the alert gate to open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateWait {
    /// The node that waits (the first of its batch).
    pub node: String,
    /// Which alerts fire, or why the monitoring system cannot be asked.
    pub why: String,
    /// Since when it waits.
    pub since: Timestamp,
    /// When it gives up (`gates.wait` after `since`).
    pub until: Timestamp,
}

/// What the coordinator does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStep {
    /// Work on the nodes at these indexes, which are in progress (one batch, and the next if
    /// it started while that one verifies).
    Continue(Vec<usize>),
    /// Check the guards for the nodes at these indexes (the rest of one batch), then start as
    /// many of them as can go together now.
    Start(Vec<usize>),
    /// The canary nodes are done: wait for the hold to be let go (see [`hold`]).
    Hold,
    /// The run is over: why, as a kind and for people.
    Finish(Halt, String),
}

impl RunRecord {
    /// The run without its nodes (the store's header; every other field copied).
    pub fn without_nodes(&self) -> RunRecord {
        RunRecord {
            id: self.id.clone(),
            target: self.target.clone(),
            packages: self.packages.clone(),
            started_at: self.started_at,
            nodes: Nodes::default(),
            flags: self.flags.clone(),
            abort_requested: self.abort_requested,
            hold: self.hold.clone(),
            gate_wait: self.gate_wait.clone(),
            outcome: self.outcome,
            halt: self.halt,
            reason: self.reason.clone(),
            finished_at: self.finished_at,
        }
    }

    /// A new run from an accepted plan.
    pub fn new(
        id: String,
        plan: &Plan,
        flags: RunFlags,
        snap: &ClusterSnapshot,
        now: Timestamp,
    ) -> Self {
        let nodes = plan
            .nodes
            .iter()
            .map(|np| {
                let node = snap.node(&np.node);
                let addr = node.map(|n| n.addr.clone()).unwrap_or_default();
                NodeProgress::new(np, addr, node.map(|n| n.labels.clone()).unwrap_or_default(), now)
            })
            .collect();
        RunRecord {
            id,
            target: plan.target.clone(),
            packages: PackageSet::default(),
            started_at: now,
            nodes,
            flags,
            abort_requested: false,
            gate_wait: None,
            hold: None,
            outcome: None,
            halt: None,
            reason: None,
            finished_at: None,
        }
    }

    /// The package set the run installs on node `p`: its own, or in a run recorded before each
    /// node had its own, the run's.
    pub fn packages_of<'a>(&'a self, p: &'a NodeProgress) -> &'a PackageSet {
        if p.packages.is_empty() { &self.packages } else { &p.packages }
    }

    /// Records the end of the run.
    pub fn finish(&mut self, halt: Halt, reason: String, now: Timestamp) {
        self.outcome = Some(halt.outcome());
        self.halt = Some(halt);
        self.reason = Some(reason);
        self.finished_at = Some(now);
        // (A wait for the alert gate, if one was recorded, is over too.)
        self.gate_wait = None;
    }

    /// Whether the run is over.
    pub fn finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// Why a scheduled run must not retry `target`: this run, to the same target, failed, or
    /// ended during the hold after its canary without being let go (aborted there, or past the
    /// hold's limit). A timer would otherwise roll the same node back at every window, or take
    /// a new canary at every window without anyone's approval; an operator looks first.
    pub(crate) fn refuses_scheduled_retry(&self, target: &Target) -> Option<Refusal> {
        if &self.target != target {
            return None;
        }
        if self.hold.as_ref().is_some_and(|h| h.since.is_some() && h.released.is_none()) {
            let when = self.finished_at.map(|t| format!(" at {t}")).unwrap_or_default();
            return Some(Refusal {
                kind: RefusalKind::FailedBefore,
                node: None,
                service: None,
                reason: format!(
                    "the last run to {target} ({}) ended{when} while it held after its canary ({}), never let go: {}; scheduled runs do not go past a canary nobody approved",
                    self.id,
                    self.canary().join(", "),
                    self.reason.as_deref().unwrap_or("no reason recorded")
                ),
                fix: format!(
                    "look at the canary, then go on by hand with `swarm-upgrade run --to {target}`, or configure another target"
                ),
            });
        }
        if self.outcome != Some(Outcome::Failed) {
            return None;
        }
        let when = self.finished_at.map(|t| format!(" at {t}")).unwrap_or_default();
        Some(Refusal {
            kind: RefusalKind::FailedBefore,
            node: None,
            service: None,
            reason: format!(
                "the last run to {target} ({}) failed{when}: {}; scheduled runs do not retry a target that failed",
                self.id,
                self.reason.as_deref().unwrap_or("no reason recorded")
            ),
            fix: format!(
                "look at that node (`swarm-upgrade report /var/lib/swarm-upgrade/runs/{}.json`), then retry once by hand with `swarm-upgrade run --to {target}`, or configure another target",
                self.id
            ),
        })
    }
}

mod batch;
pub mod hold;
mod nodes;
mod pipeline;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::machine::Phase;
    use crate::planner::{PlanRequest, plan};

    fn record() -> RunRecord {
        let snap: ClusterSnapshot =
            serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap();
        let req = PlanRequest {
            to: Some("5:28.5.2-1~debian.13~trixie".parse().unwrap()),
            ..Default::default()
        };
        let p = plan(&snap, &Settings::default(), &req).unwrap();
        RunRecord::new("r1".into(), &p, RunFlags::default(), &snap, snap.taken_at)
    }

    #[test]
    fn nodes_go_one_at_a_time_and_success_needs_all_done() {
        let mut r = record();
        let now = r.started_at;
        assert_eq!(r.next_step(), RunStep::Start(vec![0]));
        r.nodes[0].start(now).unwrap();
        assert_eq!(r.next_step(), RunStep::Continue(vec![0]));
        for n in r.nodes.iter_mut() {
            n.phase = Phase::Done;
        }
        assert!(matches!(r.next_step(), RunStep::Finish(Halt::Completed, _)));
    }

    #[test]
    fn abort_stops_between_nodes_never_inside_one() {
        let mut r = record();
        r.nodes[0].start(r.started_at).unwrap();
        r.abort_requested = true;
        assert_eq!(r.next_step(), RunStep::Continue(vec![0]), "the current node is finished first");
        r.nodes[0].phase = Phase::Done;
        match r.next_step() {
            RunStep::Finish(Halt::Aborted, why) => {
                assert!(why.contains("before node worker2"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outcome_names_are_the_serialized_ones() {
        for o in [Outcome::Succeeded, Outcome::Failed, Outcome::Aborted] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.name());
        }
    }

    #[test]
    fn a_rolled_back_node_halts_the_run_with_its_reason() {
        let mut r = record();
        r.nodes[0].phase = Phase::RolledBack;
        r.nodes[0].reason = Some("docker.service failed".into());
        match r.next_step() {
            RunStep::Finish(Halt::NodeFailed, why) => {
                assert_eq!(
                    why,
                    "node worker1 was rolled back to its previous packages and is back in service: docker.service failed"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_record_survives_the_store_round_trip() {
        let r = record();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<RunRecord>(&text).unwrap(), r);
    }
}
