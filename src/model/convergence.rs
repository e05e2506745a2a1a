//! Whether a service has converged, judged as the docker CLI's progress display does.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::cluster::{
    Availability, ClusterSnapshot, Mode, NodeId, NodeState, Service, ServiceId, Task, TaskState,
    UpdateState,
};
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

/// The snapshot's tasks by service, less those on down nodes: judging every service costs one
/// pass over the tasks, not one per service.
pub(crate) struct LiveTasks<'a> {
    by_service: HashMap<&'a ServiceId, Vec<&'a Task>>,
}

impl<'a> LiveTasks<'a> {
    /// Groups the snapshot's tasks.
    pub(crate) fn new(snap: &'a ClusterSnapshot) -> Self {
        let down: HashSet<&NodeId> =
            snap.nodes.iter().filter(|n| n.state == NodeState::Down).map(|n| &n.id).collect();
        let mut by_service: HashMap<&ServiceId, Vec<&Task>> = HashMap::new();
        for t in snap.tasks.iter().filter(|t| t.node.as_ref().is_none_or(|n| !down.contains(n))) {
            by_service.entry(&t.service).or_default().push(t);
        }
        LiveTasks { by_service }
    }

    fn of(&self, service: &Service) -> &[&'a Task] {
        self.by_service.get(&service.id).map_or(&[], Vec::as_slice)
    }
}

/// Judges one service. Per replica slot only the task with the lowest desired state counts (the
/// one the swarm means to keep); tasks on down nodes are ignored; a global service needs a running
/// task on every Ready, non-drained node that satisfies its constraints.
#[cfg(test)]
pub(crate) fn service_convergence(snap: &ClusterSnapshot, service: &Service) -> Convergence {
    judge(snap, &LiveTasks::new(snap), service, &[])
}

/// Judges every service, in the snapshot's order; a global service's task placed on a node of
/// `settling` (just back in service, and verified on its own) and still starting there is not
/// counted against it (one not placed yet is).
pub(crate) fn every_service<'a>(
    snap: &'a ClusterSnapshot,
    settling: &'a [NodeId],
) -> impl Iterator<Item = (&'a Service, Convergence)> {
    let live = LiveTasks::new(snap);
    snap.services.iter().map(move |s| (s, judge(snap, &live, s, settling)))
}

/// Judges one service with the snapshot's tasks already grouped (see [`every_service`] for
/// `settling`).
fn judge(
    snap: &ClusterSnapshot,
    live: &LiveTasks,
    service: &Service,
    settling: &[NodeId],
) -> Convergence {
    match service.update_state {
        Some(UpdateState::Paused) => {
            return Convergence::Failed(format!(
                "the update of service {} is paused",
                service.name
            ));
        }
        Some(
            UpdateState::RollbackStarted
            | UpdateState::RollbackPaused
            | UpdateState::RollbackCompleted,
        ) => {
            return Convergence::Failed(format!(
                "service {} was rolled back by the swarm",
                service.name
            ));
        }
        Some(UpdateState::Updating) => {
            return Convergence::Converging(format!("service {} is updating", service.name));
        }
        _ => {}
    }
    let tasks = live.of(service);
    match service.mode {
        Mode::Replicated { replicas } => {
            let by_slot = kept_per_slot(tasks);
            let running = by_slot
                .values()
                .filter(|t| t.desired == TaskState::Running && t.state == TaskState::Running)
                .count() as u64;
            if running >= replicas
                && by_slot.values().filter(|t| t.desired == TaskState::Running).count() as u64
                    == replicas
            {
                Convergence::Converged
            } else {
                Convergence::Converging(format!(
                    "service {}: {running}/{replicas} replicas running",
                    service.name
                ))
            }
        }
        Mode::Global => {
            let on = |ok: fn(TaskState) -> bool| -> HashSet<&NodeId> {
                tasks
                    .iter()
                    .filter(|t| t.desired == TaskState::Running && ok(t.state))
                    .filter_map(|t| t.node.as_ref())
                    .collect()
            };
            let running = on(|s| s == TaskState::Running);
            // On a settling node, a task the swarm has placed and is starting will do.
            let starting = on(|s| s < TaskState::Running);
            let missing: Vec<&str> = snap
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Ready && n.availability != Availability::Drain)
                .filter(|n| satisfies_all(&service.constraints, n))
                .filter(|n| !running.contains(&n.id))
                .filter(|n| !(settling.contains(&n.id) && starting.contains(&n.id)))
                .map(|n| n.hostname.as_str())
                .collect();
            if missing.is_empty() {
                Convergence::Converged
            } else {
                Convergence::Converging(format!(
                    "service {}: no running task on {}",
                    service.name,
                    missing.join(", ")
                ))
            }
        }
    }
}

/// The kept task per replica slot: lowest desired state, then the newest observed state.
fn kept_per_slot<'a>(tasks: &[&'a Task]) -> BTreeMap<u64, &'a Task> {
    let mut by_slot: BTreeMap<u64, &Task> = BTreeMap::new();
    for t in tasks {
        let Some(slot) = t.slot else { continue };
        let keep = by_slot.get(&slot).is_none_or(|k| {
            (t.desired, std::cmp::Reverse(t.state)) < (k.desired, std::cmp::Reverse(k.state))
        });
        if keep {
            by_slot.insert(slot, t);
        }
    }
    by_slot
}

/// How many replica slots of a service the swarm means to keep running (their kept task is
/// desired Running). More than the spec's replicas, for longer than the orchestrator takes to
/// react, is a scale-down the swarm missed.
pub(crate) fn slots_meant_to_run(snap: &ClusterSnapshot, service: &Service) -> u64 {
    kept_per_slot(LiveTasks::new(snap).of(service))
        .values()
        .filter(|t| t.desired == TaskState::Running)
        .count() as u64
}

/// The first service that has not converged, with the reason, or `None` when all have.
pub fn first_unconverged(snap: &ClusterSnapshot) -> Option<Convergence> {
    every_service(snap, &[]).map(|(_, c)| c).find(|c| *c != Convergence::Converged)
}

/// As [`first_unconverged`], but a service that another node surged above its count before the
/// surge (`surged_from`) has converged once that many replicas run: its surplus is that node's
/// to wait for.
pub fn first_unconverged_at(
    snap: &ClusterSnapshot,
    surged_from: &BTreeMap<ServiceId, u64>,
) -> Option<Convergence> {
    let live = LiveTasks::new(snap);
    snap.services
        .iter()
        .map(|s| match (s.mode, surged_from.get(&s.id)) {
            (Mode::Replicated { replicas }, Some(&from)) if replicas > from => {
                let surged = Service { mode: Mode::Replicated { replicas: from }, ..s.clone() };
                judge_at_least(snap, &live, &surged)
            }
            _ => judge(snap, &live, s, &[]),
        })
        .find(|c| *c != Convergence::Converged)
}

/// Judges a replicated service whose spec says more replicas than `service.mode` (another
/// node's surge): converged once that many run, whatever else is still starting.
fn judge_at_least(snap: &ClusterSnapshot, live: &LiveTasks, service: &Service) -> Convergence {
    let Mode::Replicated { replicas } = service.mode else {
        return judge(snap, live, service, &[]);
    };
    let running = kept_per_slot(live.of(service))
        .values()
        .filter(|t| t.desired == TaskState::Running && t.state == TaskState::Running)
        .count() as u64;
    let updating = service.update_state == Some(UpdateState::Updating);
    match judge(snap, live, service, &[]) {
        Convergence::Converging(_) if running >= replicas && !updating => Convergence::Converged,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeId, Task};

    fn snap() -> ClusterSnapshot {
        serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap()
    }

    fn task(
        id: &str,
        svc: &str,
        slot: Option<u64>,
        node: &str,
        state: TaskState,
        desired: TaskState,
    ) -> Task {
        Task {
            id: id.into(),
            service: crate::model::ServiceId(svc.into()),
            slot,
            node: Some(NodeId(node.into())),
            state,
            desired,
            error: None,
        }
    }

    #[test]
    fn fixture_is_converged() {
        assert_eq!(first_unconverged(&snap()), None);
    }

    #[test]
    fn per_slot_the_task_meant_to_keep_running_counts() {
        let mut s = snap();
        // solo.1 is being replaced: the old task shuts down, the new one is still starting.
        s.tasks.iter_mut().find(|t| t.id == "solo.1").unwrap().desired = TaskState::Shutdown;
        s.tasks.push(task(
            "solo.1b",
            "solo-id",
            Some(1),
            "worker2-id",
            TaskState::Starting,
            TaskState::Running,
        ));
        let solo = s.services[1].clone();
        assert!(matches!(service_convergence(&s, &solo), Convergence::Converging(_)));
        s.tasks.last_mut().unwrap().state = TaskState::Running;
        assert_eq!(service_convergence(&s, &solo), Convergence::Converged);
    }

    #[test]
    fn tasks_on_down_nodes_are_ignored_and_global_needs_every_eligible_node() {
        let mut s = snap();
        let global = s.services[2].clone();
        s.tasks.retain(|t| t.id != "agentcheck.worker2");
        assert_eq!(
            service_convergence(&s, &global),
            Convergence::Converging("service agentcheck: no running task on worker2".into())
        );
        s.nodes.iter_mut().find(|n| n.hostname == "worker2").unwrap().availability =
            crate::model::Availability::Drain;
        assert_eq!(
            service_convergence(&s, &global),
            Convergence::Converged,
            "a drained node runs no global task"
        );
        let mut s = snap();
        s.nodes.iter_mut().find(|n| n.hostname == "worker1").unwrap().state =
            crate::model::NodeState::Down;
        s.tasks.iter_mut().find(|t| t.id == "web.1").unwrap().state = TaskState::Failed;
        let web = s.services[0].clone();
        assert!(
            matches!(service_convergence(&s, &web), Convergence::Converging(_)),
            "the down node's task no longer counts"
        );
    }

    #[test]
    fn a_global_task_still_starting_on_a_settling_node_is_left_to_that_node() {
        let mut s = snap();
        s.tasks.iter_mut().find(|t| t.id == "agentcheck.worker2").unwrap().state =
            TaskState::Preparing;
        let worker2 = s.nodes.iter().find(|n| n.hostname == "worker2").unwrap().id.clone();
        let judged = |s: &ClusterSnapshot, settling: &[NodeId]| -> Vec<Convergence> {
            every_service(s, settling).map(|(_, c)| c).collect()
        };
        assert!(
            judged(&s, std::slice::from_ref(&worker2)).iter().all(|c| *c == Convergence::Converged)
        );
        let worker1 = s.nodes.iter().find(|n| n.hostname == "worker1").unwrap().id.clone();
        assert!(
            judged(&s, &[worker1]).contains(&Convergence::Converging(
                "service agentcheck: no running task on worker2".into()
            )),
            "another node settling does not excuse worker2"
        );
        s.tasks.iter_mut().find(|t| t.id == "web.1").unwrap().state = TaskState::Failed;
        assert!(
            judged(&s, std::slice::from_ref(&worker2))
                .iter()
                .any(|c| matches!(c, Convergence::Converging(_))),
            "a replicated service is judged as ever"
        );
        s.tasks.retain(|t| t.id != "agentcheck.worker2");
        assert!(
            judged(&s, &[worker2]).contains(&Convergence::Converging(
                "service agentcheck: no running task on worker2".into()
            )),
            "a task not placed yet is missing: its resources are not counted yet"
        );
    }

    #[test]
    fn slots_meant_to_run_counts_a_surplus_the_swarm_kept_but_not_one_it_removes() {
        let mut s = snap();
        let web = s.services[0].clone();
        assert_eq!(slots_meant_to_run(&s, &web), 4);
        s.tasks.push(task(
            "web.5",
            "web-id",
            Some(5),
            "worker2-id",
            TaskState::Running,
            TaskState::Running,
        ));
        assert_eq!(slots_meant_to_run(&s, &web), 5);
        assert_eq!(
            service_convergence(&s, &web),
            Convergence::Converging("service web: 5/4 replicas running".into())
        );
        s.tasks.last_mut().unwrap().desired = TaskState::Remove;
        assert_eq!(
            slots_meant_to_run(&s, &web),
            4,
            "a slot marked for removal is not meant to run"
        );
        assert_eq!(service_convergence(&s, &web), Convergence::Converged);
    }

    #[test]
    fn paused_and_rolled_back_updates_are_failures() {
        let mut s = snap();
        s.services[0].update_state = Some(crate::model::UpdateState::RollbackCompleted);
        let web = s.services[0].clone();
        assert!(matches!(service_convergence(&s, &web), Convergence::Failed(_)));
    }
}
