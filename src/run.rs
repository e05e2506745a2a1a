//! The run record (kept in the store so any manager can resume) and the run-level decision.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::machine::{NodeProgress, Phase};
use crate::model::{ClusterSnapshot, DebVersion, PackageSet};
use crate::planner::Plan;

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

/// A run: its target, its nodes in order, and how far each got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run ID.
    pub id: String,
    /// Target version of the engine packages.
    pub target: DebVersion,
    /// Exact package set installed on every node.
    pub packages: PackageSet,
    /// When it started.
    pub started_at: Timestamp,
    /// Nodes in order.
    pub nodes: Vec<NodeProgress>,
    /// The operator's permissions, re-checked before every node.
    #[serde(default)]
    pub flags: RunFlags,
    /// Set by `swarm-upgrade abort`: stop after the current node.
    #[serde(default)]
    pub abort_requested: bool,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
    /// Why it ended that way.
    pub reason: Option<String>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

/// Permissions given when the run started (`--allow-downgrade`, `--allow-single-manager`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFlags {
    /// A downgrade was allowed.
    pub allow_downgrade: bool,
    /// A one-manager swarm was allowed.
    pub allow_single_manager: bool,
}

/// What the coordinator does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStep {
    /// Work on the node at this index, which is in progress.
    Continue(usize),
    /// Check the guards for the node at this index, then start it.
    Start(usize),
    /// The run is over.
    Finish(Outcome, String),
}

impl RunRecord {
    /// A new run from an accepted plan.
    pub fn new(id: String, plan: &Plan, flags: RunFlags, snap: &ClusterSnapshot, now: Timestamp) -> Self {
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
            packages: plan.packages.clone(),
            started_at: now,
            nodes,
            flags,
            abort_requested: false,
            outcome: None,
            reason: None,
            finished_at: None,
        }
    }

    /// Decides the next step: go on with the node in progress; halt after a node that did not
    /// finish Done; stop between nodes when an abort was asked; otherwise start the next node.
    pub fn next_step(&self) -> RunStep {
        for (i, n) in self.nodes.iter().enumerate() {
            match n.phase {
                Phase::Done => continue,
                Phase::RolledBack | Phase::Restored | Phase::Failed => {
                    let why = n.reason.clone().unwrap_or_else(|| "no reason recorded".into());
                    let what = match n.phase {
                        Phase::RolledBack => "was rolled back to its previous packages and is back in service",
                        Phase::Restored => "was restored without upgrading",
                        _ => "needs an operator (left drained)",
                    };
                    return RunStep::Finish(Outcome::Failed, format!("node {} {what}: {why}", n.hostname));
                }
                Phase::Pending if self.abort_requested => {
                    return RunStep::Finish(Outcome::Aborted, format!("aborted by an operator before node {}", n.hostname));
                }
                Phase::Pending => return RunStep::Start(i),
                _ => return RunStep::Continue(i),
            }
        }
        RunStep::Finish(Outcome::Succeeded, format!("all {} nodes at {}", self.nodes.len(), self.target))
    }

    /// Records the end of the run.
    pub fn finish(&mut self, outcome: Outcome, reason: String, now: Timestamp) {
        self.outcome = Some(outcome);
        self.reason = Some(reason);
        self.finished_at = Some(now);
    }

    /// Whether the run is over.
    pub fn finished(&self) -> bool {
        self.outcome.is_some()
    }
}
