//! Can a node's tasks run elsewhere? A simulation of the swarm scheduler's filters (readiness,
//! availability, constraints, max replicas per node, host-mode ports, reservations) over the nodes
//! in upgrade order. Greedy, and so conservative: it may refuse a cluster a perfect packing could
//! serve, never the other way round.

use std::collections::{BTreeMap, BTreeSet};

use super::{Refusal, RefusalKind, Surge};
use crate::model::constraint::satisfies_all;
use crate::model::{
    Availability, ClusterSnapshot, Mode, Node, NodeId, NodeState, Resources, Service, ServiceId,
    TaskState,
};

/// What draining one node does to the services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evacuation {
    /// Replicated services scaled up first (one extra replica per task on the node).
    pub surge: Vec<Surge>,
    /// Moves as `service.slot -> host`.
    pub moves: Vec<String>,
    /// Global services whose task stops with the node.
    pub global_stops: Vec<String>,
}

/// Which tasks sit where, with their ports and reservations.
#[derive(Clone, Debug, Default)]
pub struct Load {
    placed: Vec<(NodeId, ServiceId, Option<u64>)>,
    count: BTreeMap<(NodeId, ServiceId), u64>,
    ports: BTreeSet<(NodeId, u16, String)>,
    reserved: BTreeMap<NodeId, Resources>,
}

impl Load {
    /// The load of every task the swarm wants running.
    pub(crate) fn from_snapshot(snap: &ClusterSnapshot) -> Load {
        let mut load = Load::default();
        for t in snap.tasks.iter().filter(|t| t.desired == TaskState::Running) {
            let (Some(node), Some(svc)) = (&t.node, snap.service(&t.service)) else { continue };
            load.add(node, svc, t.slot);
        }
        load
    }

    fn add(&mut self, node: &NodeId, svc: &Service, slot: Option<u64>) {
        self.placed.push((node.clone(), svc.id.clone(), slot));
        *self.count.entry((node.clone(), svc.id.clone())).or_default() += 1;
        for p in &svc.host_ports {
            self.ports.insert((node.clone(), p.port, p.protocol.clone()));
        }
        let r = self.reserved.entry(node.clone()).or_default();
        r.nano_cpus += svc.reservations.nano_cpus;
        r.memory_bytes += svc.reservations.memory_bytes;
    }

    fn remove(&mut self, node: &NodeId, svc: &Service, slot: Option<u64>) {
        self.placed.retain(|p| *p != (node.clone(), svc.id.clone(), slot));
        if let Some(c) = self.count.get_mut(&(node.clone(), svc.id.clone())) {
            *c = c.saturating_sub(1);
        }
        for p in &svc.host_ports {
            self.ports.remove(&(node.clone(), p.port, p.protocol.clone()));
        }
        let r = self.reserved.entry(node.clone()).or_default();
        r.nano_cpus -= svc.reservations.nano_cpus;
        r.memory_bytes -= svc.reservations.memory_bytes;
    }

    fn tasks_of(&self, node: &NodeId, svc: &ServiceId) -> u64 {
        self.count.get(&(node.clone(), svc.clone())).copied().unwrap_or(0)
    }

    fn tasks_on(&self, node: &NodeId) -> u64 {
        self.count.iter().filter(|((n, _), _)| n == node).map(|(_, c)| c).sum()
    }

    /// Why `node` cannot take one more task of `svc`, or `None` if it can.
    pub(crate) fn rejects(&self, node: &Node, svc: &Service) -> Option<String> {
        if node.state != NodeState::Ready {
            return Some("not Ready".into());
        }
        if node.availability != Availability::Active {
            return Some(format!("availability {}", node.availability.name()));
        }
        if !satisfies_all(&svc.constraints, node) {
            return Some(format!("constraints {:?} not met", svc.constraints));
        }
        if let Some(max) = svc.max_replicas_per_node.filter(|m| *m > 0)
            && self.tasks_of(&node.id, &svc.id) >= max
        {
            return Some(format!("already runs {max} (max replicas per node)"));
        }
        if let Some(p) = svc
            .host_ports
            .iter()
            .find(|p| self.ports.contains(&(node.id.clone(), p.port, p.protocol.clone())))
        {
            return Some(format!("host port {}/{} already taken", p.port, p.protocol));
        }
        let used = self.reserved.get(&node.id).copied().unwrap_or_default();
        let r = svc.reservations;
        if r.nano_cpus > 0 && used.nano_cpus + r.nano_cpus > node.resources.nano_cpus {
            return Some("not enough CPU left to reserve".into());
        }
        if r.memory_bytes > 0 && used.memory_bytes + r.memory_bytes > node.resources.memory_bytes {
            return Some("not enough memory left to reserve".into());
        }
        None
    }
}

/// Simulates draining each node in turn (the earlier ones are back, empty, when the next starts)
/// and says, per node, where its tasks go or why some cannot go anywhere.
pub(crate) fn evacuate_in_order(
    snap: &ClusterSnapshot,
    order: &[NodeId],
) -> Vec<Result<Evacuation, Vec<Refusal>>> {
    let mut load = Load::from_snapshot(snap);
    order.iter().map(|id| evacuate(snap, &mut load, id)).collect()
}

/// Evacuates one node in the simulated load; the load is changed only when every task found a place.
pub(crate) fn evacuate(
    snap: &ClusterSnapshot,
    load: &mut Load,
    id: &NodeId,
) -> Result<Evacuation, Vec<Refusal>> {
    let Some(host) = snap.node(id) else { return Ok(Evacuation::default()) };
    let mut trial = load.clone();
    let mut ev = Evacuation::default();
    let mut refusals = Vec::new();
    let mut surged: BTreeMap<ServiceId, (u64, Vec<String>)> = BTreeMap::new();
    let mut tasks: Vec<(ServiceId, Option<u64>)> = load
        .placed
        .iter()
        .filter(|(n, _, _)| n == id)
        .map(|(_, s, slot)| (s.clone(), *slot))
        .collect();
    tasks.sort();
    for (sid, slot) in tasks {
        let Some(svc) = snap.service(&sid) else { continue };
        if svc.mode == Mode::Global {
            ev.global_stops.push(svc.name.clone());
            continue;
        }
        // The task leaves the node being upgraded; the node itself takes nothing while paused.
        trial.remove(id, svc, slot);
        let mut reasons = Vec::new();
        let mut best: Option<&Node> = None;
        for n in snap.nodes.iter().filter(|n| &n.id != id) {
            match trial.rejects(n, svc) {
                Some(why) => reasons.push(format!("{}: {why}", n.hostname)),
                None => {
                    let key = |n: &Node| {
                        (trial.tasks_of(&n.id, &svc.id), trial.tasks_on(&n.id), n.hostname.clone())
                    };
                    if best.is_none_or(|b| key(n) < key(b)) {
                        best = Some(n);
                    }
                }
            }
        }
        match best {
            Some(dest) => {
                trial.add(&dest.id, svc, slot);
                ev.moves.push(format!("{}.{} -> {}", svc.name, slot.unwrap_or(0), dest.hostname));
                let e = surged.entry(svc.id.clone()).or_default();
                e.0 += 1;
                e.1.push(dest.hostname.clone());
            }
            None => refusals.push(Refusal {
                kind: RefusalKind::CannotEvacuate,
                node: Some(host.hostname.clone()),
                service: Some(svc.name.clone()),
                reason: format!(
                    "task {}.{} on {} cannot run anywhere else while {} is drained: {}",
                    svc.name,
                    slot.unwrap_or(0),
                    host.hostname,
                    host.hostname,
                    if reasons.is_empty() { "there is no other node".to_string() } else { reasons.join("; ") }
                ),
                fix: format!(
                    "add a node that can take it, relax the constraints, max replicas per node, host ports or reservations of {}, or exclude {} with the exclude label",
                    svc.name, host.hostname
                ),
            }),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    for (sid, (extra, on)) in surged {
        let svc = snap.service(&sid).expect("surged services exist");
        if let Mode::Replicated { replicas } = svc.mode {
            ev.surge.push(Surge {
                service: sid,
                name: svc.name.clone(),
                from: replicas,
                to: replicas + extra,
                expected_on: on,
            });
        }
    }
    *load = trial;
    Ok(ev)
}
