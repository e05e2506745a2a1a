//! A node's scope: the part of the cluster that one node's upgrade can change, and so the part
//! its polls read and judge. A node's drain moves only the tasks of services running on it, and
//! its surge scales only its services: every other service is judged before the node starts (the
//! guard) and again before the next one, not on every poll. Reading the scope instead of the
//! whole cluster keeps a poll's cost flat in the cluster's size.

use std::collections::HashSet;

use super::cluster::{ClusterSnapshot, Mode, Node, NodeId, Service, ServiceId, Task, TaskState};

/// The services a node's upgrade can change: those with a task meant to run on it, then `also`
/// (its surged services), each once, in that order.
pub fn services_on(snap: &ClusterSnapshot, node: &NodeId, also: &[ServiceId]) -> Vec<ServiceId> {
    let mut seen = HashSet::new();
    let on_node = snap
        .tasks
        .iter()
        .filter(|t| t.node.as_ref() == Some(node) && t.desired == TaskState::Running)
        .map(|t| &t.service);
    on_node.chain(also).filter(|s| seen.insert(*s)).cloned().collect()
}

impl ClusterSnapshot {
    /// What a scoped read of `node` and `services` returns (see [`crate::ports::Swarm::scoped`]):
    /// every task on `node` (if it is listed), whatever its state; the services asked for and
    /// those of the tasks on `node` (one that landed there after the node's scope was recorded is
    /// judged too); every task of the replicated ones; the nodes read, `node` and every listed
    /// node a replicated one's task is on; and the global ones' tasks on the nodes read. A global
    /// service is judged on the nodes read only (its tasks elsewhere are not read), so its
    /// convergence here is convergence on `node` and its neighbours.
    pub fn scoped(&self, node: &NodeId, services: &[ServiceId]) -> ClusterSnapshot {
        let mut out = Parts { nodes: &self.nodes, services: &self.services, tasks: &self.tasks }
            .scoped(node, services);
        out.taken_at = self.taken_at;
        out.cluster_id = self.cluster_id.clone();
        out.autolock = self.autolock;
        out
    }
}

/// A cluster's parts, borrowed (an in-memory cluster scopes its own without copying them).
pub struct Parts<'a> {
    /// Every node.
    pub nodes: &'a [Node],
    /// Every service.
    pub services: &'a [Service],
    /// Every task.
    pub tasks: &'a [Task],
}

impl Parts<'_> {
    /// [`ClusterSnapshot::scoped`] of these parts (taken now, no cluster ID, autolock off).
    pub fn scoped(&self, node: &NodeId, services: &[ServiceId]) -> ClusterSnapshot {
        let listed: HashSet<&NodeId> = self.nodes.iter().map(|n| &n.id).collect();
        let here = listed.contains(node);
        let on_node = |t: &Task| here && t.node.as_ref() == Some(node);
        let mut wanted: HashSet<&ServiceId> = services.iter().collect();
        wanted.extend(self.tasks.iter().filter(|t| on_node(t)).map(|t| &t.service));
        let kept: Vec<Service> =
            self.services.iter().filter(|s| wanted.contains(&s.id)).cloned().collect();
        let replicated: HashSet<&ServiceId> = kept
            .iter()
            .filter(|s| matches!(s.mode, Mode::Replicated { .. }))
            .map(|s| &s.id)
            .collect();
        let read: HashSet<&NodeId> = self
            .tasks
            .iter()
            .filter(|t| replicated.contains(&t.service))
            .filter_map(|t| t.node.as_ref())
            .chain([node])
            .filter(|n| listed.contains(n))
            .collect();
        let global = |t: &Task| {
            wanted.contains(&t.service)
                && !replicated.contains(&t.service)
                && t.node.as_ref().is_some_and(|n| read.contains(n))
        };
        let tasks = self
            .tasks
            .iter()
            .filter(|t| replicated.contains(&t.service) || on_node(t) || global(t))
            .cloned()
            .collect();
        let nodes = self.nodes.iter().filter(|n| read.contains(&n.id)).cloned().collect();
        ClusterSnapshot {
            taken_at: jiff::Timestamp::now(),
            cluster_id: String::new(),
            nodes,
            services: kept,
            tasks,
            agents: Default::default(),
            autolock: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests;
