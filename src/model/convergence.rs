//! Whether a service has converged, judged as the docker CLI's progress display does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cluster::{Availability, ClusterSnapshot, Mode, NodeState, Service, TaskState, UpdateState};
use super::constraint::satisfies_all;

/// A service's convergence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Convergence {
    /// Every slot (or eligible node) runs an up-to-date task.
    Converged,
    /// Not yet; the text says what is missing.
    Converging(String),
    /// It will not converge by itself (a paused or rolled-back update).
    Failed(String),
}

/// Judges one service. Per replica slot only the task with the lowest desired state counts (the
/// one the swarm means to keep); tasks on down nodes are ignored; a global service needs a running
/// task on every Ready, non-drained node that satisfies its constraints.
pub fn service_convergence(snap: &ClusterSnapshot, service: &Service) -> Convergence {
    match service.update_state {
        Some(UpdateState::Paused) => return Convergence::Failed(format!("the update of service {} is paused", service.name)),
        Some(UpdateState::RollbackStarted | UpdateState::RollbackPaused | UpdateState::RollbackCompleted) => {
            return Convergence::Failed(format!("service {} was rolled back by the swarm", service.name));
        }
        Some(UpdateState::Updating) => return Convergence::Converging(format!("service {} is updating", service.name)),
        _ => {}
    }
    let node_up = |t: &&super::cluster::Task| {
        t.node.as_ref().and_then(|n| snap.node(n)).is_none_or(|n| n.state != NodeState::Down)
    };
    let tasks: Vec<_> = snap.tasks.iter().filter(|t| t.service == service.id).filter(node_up).collect();
    match service.mode {
        Mode::Replicated { replicas } => {
            // The kept task per slot: lowest desired state, then the newest observed state.
            let mut by_slot: BTreeMap<u64, &super::cluster::Task> = BTreeMap::new();
            for t in &tasks {
                let Some(slot) = t.slot else { continue };
                let keep = by_slot.get(&slot).is_none_or(|k| (t.desired, std::cmp::Reverse(t.state)) < (k.desired, std::cmp::Reverse(k.state)));
                if keep {
                    by_slot.insert(slot, t);
                }
            }
            let running = by_slot
                .values()
                .filter(|t| t.desired == TaskState::Running && t.state == TaskState::Running)
                .count() as u64;
            if running >= replicas && by_slot.values().filter(|t| t.desired == TaskState::Running).count() as u64 == replicas {
                Convergence::Converged
            } else {
                Convergence::Converging(format!("service {}: {running}/{replicas} replicas running", service.name))
            }
        }
        Mode::Global => {
            let eligible = snap
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Ready && n.availability != Availability::Drain)
                .filter(|n| satisfies_all(&service.constraints, n));
            let mut missing = Vec::new();
            for n in eligible {
                let ok = tasks.iter().any(|t| t.node.as_ref() == Some(&n.id) && t.desired == TaskState::Running && t.state == TaskState::Running);
                if !ok {
                    missing.push(n.hostname.clone());
                }
            }
            if missing.is_empty() {
                Convergence::Converged
            } else {
                Convergence::Converging(format!("service {}: no running task on {}", service.name, missing.join(", ")))
            }
        }
    }
}

/// The first service that has not converged, with the reason, or `None` when all have.
pub fn first_unconverged(snap: &ClusterSnapshot) -> Option<Convergence> {
    snap.services.iter().map(|s| service_convergence(snap, s)).find(|c| *c != Convergence::Converged)
}
