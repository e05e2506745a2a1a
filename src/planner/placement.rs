//! Can a node's tasks run elsewhere? A simulation of the swarm scheduler's filters (readiness,
//! availability, constraints, max replicas per node, host-mode ports, reservations) over the nodes
//! in upgrade order. Greedy, and so conservative: it may refuse a cluster a perfect packing could
//! serve, never the other way round.
//!
//! Each task goes to the acceptable node with the fewest tasks of its service, then the fewest
//! tasks, then the first host name. The load keeps the schedulable nodes ordered by (tasks, host
//! name), so the search usually stops at the first nodes it looks at: evacuating a node costs
//! about its own tasks times a few candidates, not times every node and task of the cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::index::Index;
use super::{Refusal, RefusalKind, Surge};
use crate::model::plan::Outage;
use crate::model::{
    Availability, Mode, NodeId, NodeState, Resources, Service, ServiceId, TaskState,
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
    /// Services whose task cannot run elsewhere and whose outage is accepted: the task stops
    /// with the node and comes back with it.
    pub downtime: Vec<Outage>,
}

/// A task of service `.0` (a position in the snapshot) in replica slot `.1`.
type Placed = (usize, Option<u64>);

/// Which tasks sit where, with their ports and reservations, by node and service position.
#[derive(Clone, Debug, Default)]
pub struct Load {
    /// Per node, its tasks.
    placed: Vec<Vec<Placed>>,
    /// Per service, how many tasks each node runs.
    of: Vec<HashMap<usize, u64>>,
    /// Per node, how many tasks it runs.
    on: Vec<u64>,
    /// Host ports taken, as (node, port, protocol), with how many tasks hold each.
    ports: HashMap<(usize, u16, String), u32>,
    /// Per node, the resources its tasks reserve.
    reserved: Vec<Resources>,
    /// The nodes that take tasks (Ready, active and not closed), as (tasks, rank in host-name
    /// order).
    open: BTreeSet<(u64, usize)>,
    /// Whether each node takes tasks.
    schedulable: Vec<bool>,
    /// The nodes of the batch being evacuated: they take no task while it is drained.
    closed: Vec<bool>,
}

/// Why a node cannot take one more task of a service.
enum Reject {
    InBatch,
    NotReady,
    Availability(Availability),
    Constraints,
    MaxReplicas(u64),
    Port(u16, String),
    Cpu,
    Memory,
}

impl Reject {
    fn describe(&self, svc: &Service) -> String {
        match self {
            Reject::InBatch => "drained in the same batch".into(),
            Reject::NotReady => "not Ready".into(),
            Reject::Availability(a) => format!("availability {}", a.name()),
            Reject::Constraints => format!("constraints {:?} not met", svc.constraints),
            Reject::MaxReplicas(max) => format!("already runs {max} (max replicas per node)"),
            Reject::Port(port, protocol) => format!("host port {port}/{protocol} already taken"),
            Reject::Cpu => "not enough CPU left to reserve".into(),
            Reject::Memory => "not enough memory left to reserve".into(),
        }
    }
}

/// One change to the load, kept so a failed evacuation can be undone.
enum Change {
    Added(usize, Placed),
    Removed(usize, Placed),
    Closed(usize),
}

impl Load {
    /// The load of every task the swarm wants running.
    pub(crate) fn from_snapshot(ix: &Index) -> Load {
        let snap = ix.snap;
        let nodes = snap.nodes.len();
        let schedulable: Vec<bool> = snap
            .nodes
            .iter()
            .map(|n| n.state == NodeState::Ready && n.availability == Availability::Active)
            .collect();
        let mut load = Load {
            placed: vec![Vec::new(); nodes],
            of: vec![HashMap::new(); snap.services.len()],
            on: vec![0; nodes],
            reserved: vec![Resources::default(); nodes],
            open: (0..nodes).filter(|&n| schedulable[n]).map(|n| (0, ix.rank[n])).collect(),
            schedulable,
            closed: vec![false; nodes],
            ..Load::default()
        };
        for t in snap.tasks.iter().filter(|t| t.desired == TaskState::Running) {
            let node = t.node.as_ref().and_then(|n| ix.node(n));
            let (Some(node), Some(svc)) = (node, ix.service(&t.service)) else { continue };
            load.add(ix, node, (svc, t.slot));
        }
        load
    }

    /// Whether node `n` is in the open set.
    fn takes(&self, n: usize) -> bool {
        self.schedulable[n] && !self.closed[n]
    }

    /// Node `n` takes no task until it is opened again.
    fn close(&mut self, ix: &Index, n: usize) {
        if self.takes(n) {
            self.open.remove(&(self.on[n], ix.rank[n]));
        }
        self.closed[n] = true;
    }

    /// Node `n`, closed, takes tasks again.
    fn reopen(&mut self, ix: &Index, n: usize) {
        self.closed[n] = false;
        if self.takes(n) {
            self.open.insert((self.on[n], ix.rank[n]));
        }
    }

    fn set_on(&mut self, ix: &Index, node: usize, tasks: u64) {
        if self.takes(node) {
            self.open.remove(&(self.on[node], ix.rank[node]));
            self.open.insert((tasks, ix.rank[node]));
        }
        self.on[node] = tasks;
    }

    fn add(&mut self, ix: &Index, node: usize, (s, slot): Placed) {
        let svc = &ix.snap.services[s];
        self.placed[node].push((s, slot));
        *self.of[s].entry(node).or_default() += 1;
        self.set_on(ix, node, self.on[node] + 1);
        for p in &svc.host_ports {
            *self.ports.entry((node, p.port, p.protocol.clone())).or_default() += 1;
        }
        let r = &mut self.reserved[node];
        r.nano_cpus += svc.reservations.nano_cpus;
        r.memory_bytes += svc.reservations.memory_bytes;
    }

    fn remove(&mut self, ix: &Index, node: usize, (s, slot): Placed) {
        let svc = &ix.snap.services[s];
        if let Some(at) = self.placed[node].iter().position(|p| *p == (s, slot)) {
            self.placed[node].remove(at);
        }
        if let Some(c) = self.of[s].get_mut(&node) {
            *c -= 1;
            if *c == 0 {
                self.of[s].remove(&node);
            }
            self.set_on(ix, node, self.on[node] - 1);
        }
        for p in &svc.host_ports {
            let key = (node, p.port, p.protocol.clone());
            if let Some(holders) = self.ports.get_mut(&key) {
                *holders -= 1;
                if *holders == 0 {
                    self.ports.remove(&key);
                }
            }
        }
        let r = &mut self.reserved[node];
        r.nano_cpus -= svc.reservations.nano_cpus;
        r.memory_bytes -= svc.reservations.memory_bytes;
    }

    fn undo(&mut self, ix: &Index, changes: Vec<Change>) {
        for change in changes.into_iter().rev() {
            match change {
                Change::Added(node, task) => self.remove(ix, node, task),
                Change::Removed(node, task) => self.add(ix, node, task),
                Change::Closed(node) => self.reopen(ix, node),
            }
        }
    }

    fn tasks_of(&self, node: usize, s: usize) -> u64 {
        self.of[s].get(&node).copied().unwrap_or(0)
    }

    /// Why node `n` cannot take one more task of service `s`, or `None` if it can.
    fn why_not(&self, ix: &Index, n: usize, s: usize) -> Option<Reject> {
        let (node, svc) = (&ix.snap.nodes[n], &ix.snap.services[s]);
        if self.closed[n] {
            return Some(Reject::InBatch);
        }
        if node.state != NodeState::Ready {
            return Some(Reject::NotReady);
        }
        if node.availability != Availability::Active {
            return Some(Reject::Availability(node.availability));
        }
        if !ix.satisfies(s, n) {
            return Some(Reject::Constraints);
        }
        if let Some(max) = svc.max_replicas_per_node.filter(|m| *m > 0)
            && self.tasks_of(n, s) >= max
        {
            return Some(Reject::MaxReplicas(max));
        }
        if let Some(p) = svc
            .host_ports
            .iter()
            .find(|p| self.ports.contains_key(&(n, p.port, p.protocol.clone())))
        {
            return Some(Reject::Port(p.port, p.protocol.clone()));
        }
        let used = self.reserved[n];
        let r = svc.reservations;
        if r.nano_cpus > 0 && used.nano_cpus + r.nano_cpus > node.resources.nano_cpus {
            return Some(Reject::Cpu);
        }
        if r.memory_bytes > 0 && used.memory_bytes + r.memory_bytes > node.resources.memory_bytes {
            return Some(Reject::Memory);
        }
        None
    }

    /// Where a task of service `s` leaving node `from` goes: the acceptable node with the fewest
    /// tasks of `s`, then the fewest tasks, then the first host name. Nodes without a task of `s`
    /// are looked at in (tasks, host name) order, so the first acceptable one is the best of them;
    /// only when there is none are the nodes that already run `s` compared.
    fn best(&self, ix: &Index, s: usize, from: usize) -> Option<usize> {
        let fits = |n: usize| n != from && self.why_not(ix, n, s).is_none();
        let free = self
            .open
            .iter()
            .map(|&(_, rank)| ix.by_rank[rank])
            .find(|&n| self.tasks_of(n, s) == 0 && fits(n));
        free.or_else(|| {
            self.of[s]
                .keys()
                .copied()
                .filter(|&n| fits(n))
                .min_by_key(|&n| (self.tasks_of(n, s), self.on[n], ix.rank[n]))
        })
    }
}

/// Evacuates the nodes `ids` together, as one batch: all of them closed first (none takes a task
/// of another), then each one's tasks moved. Each node's surge is raised to the batch's: a
/// service with tasks on several of them is scaled up once by all of those tasks. With `keep`,
/// the moves stay in the load when every task found a place (the nodes, back and empty, take
/// tasks again); otherwise, or on failure, the load is left as it was. Without `surge`, no two
/// nodes of a batch may run tasks of one replicated service: it would lose both at once.
pub(crate) fn evacuate_batch(
    ix: &Index,
    load: &mut Load,
    ids: &[NodeId],
    keep: bool,
    surge: bool,
) -> Result<Vec<Evacuation>, Vec<Refusal>> {
    let mut changes = Vec::new();
    let hosts: Vec<usize> = ids.iter().filter_map(|id| ix.node(id)).collect();
    for &h in &hosts {
        load.close(ix, h);
        changes.push(Change::Closed(h));
    }
    let mut refusals = if surge { Vec::new() } else { shared_services(ix, load, &hosts) };
    let before: Vec<BTreeSet<usize>> =
        hosts.iter().map(|&h| load.placed[h].iter().map(|p| p.0).collect()).collect();
    let mut evs = Vec::new();
    for id in ids {
        match move_tasks(ix, load, id, &mut changes) {
            Ok(ev) => evs.push(ev),
            Err(r) => refusals.extend(r),
        }
    }
    if refusals.is_empty() && hosts.len() == evs.len() {
        refusals.extend(shared_outages(ix, &hosts, &before, &evs));
    }
    if !refusals.is_empty() || !keep {
        load.undo(ix, changes);
    } else {
        for &h in &hosts {
            load.reopen(ix, h);
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    raise_to_batch(&mut evs);
    Ok(evs)
}

/// Each surge raised to the batch's: `to` is the service's replicas plus every task of it the
/// batch moves.
fn raise_to_batch(evs: &mut [Evacuation]) {
    let mut extra: HashMap<ServiceId, u64> = HashMap::new();
    for s in evs.iter().flat_map(|ev| &ev.surge) {
        *extra.entry(s.service.clone()).or_default() += s.to - s.from;
    }
    for s in evs.iter_mut().flat_map(|ev| &mut ev.surge) {
        s.to = s.from + extra[&s.service];
    }
}

/// An accepted outage on one node of the batch of a service another node of it also runs: they
/// go in separate batches, so that the service's other tasks run while its stuck one is down
/// (and each node's waits count only its own outage).
fn shared_outages(
    ix: &Index,
    hosts: &[usize],
    before: &[BTreeSet<usize>],
    evs: &[Evacuation],
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for (i, ev) in evs.iter().enumerate() {
        for o in &ev.downtime {
            let Some(s) = ix.service(&o.service) else { continue };
            let other = (0..hosts.len()).find(|&j| j != i && before[j].contains(&s));
            if let Some(j) = other {
                let (a, b) = (&ix.snap.nodes[hosts[i]].hostname, &ix.snap.nodes[hosts[j]].hostname);
                refusals.push(Refusal {
                    kind: RefusalKind::CannotEvacuate,
                    node: Some(a.clone()),
                    service: Some(o.name.clone()),
                    reason: format!(
                        "{a} and {b} both run tasks of {}, whose outage on {a} is accepted: they go in separate batches",
                        o.name
                    ),
                    fix: "nothing: the plan puts them in separate batches".into(),
                });
            }
        }
    }
    refusals
}

/// Without surge: a replicated service with tasks on two nodes of the batch, which would lose
/// both at once.
fn shared_services(ix: &Index, load: &Load, hosts: &[usize]) -> Vec<Refusal> {
    let mut first: HashMap<usize, usize> = HashMap::new();
    let mut refusals = Vec::new();
    for &h in hosts {
        let mut here: Vec<usize> = load.placed[h].iter().map(|p| p.0).collect();
        here.sort_unstable();
        here.dedup();
        for s in here {
            let svc = &ix.snap.services[s];
            if svc.mode == Mode::Global {
                continue;
            }
            match first.get(&s) {
                Some(&other) => refusals.push(Refusal {
                    kind: RefusalKind::CannotEvacuate,
                    node: Some(ix.snap.nodes[h].hostname.clone()),
                    service: Some(svc.name.clone()),
                    reason: format!(
                        "without surge, {} and {} would drain tasks of {} at once",
                        ix.snap.nodes[other].hostname, ix.snap.nodes[h].hostname, svc.name
                    ),
                    fix: "turn surge on, or let them go in separate batches".into(),
                }),
                None => {
                    first.insert(s, h);
                }
            }
        }
    }
    refusals
}

/// Moves every task off node `id`, recording each change.
fn move_tasks(
    ix: &Index,
    load: &mut Load,
    id: &NodeId,
    changes: &mut Vec<Change>,
) -> Result<Evacuation, Vec<Refusal>> {
    let Some(h) = ix.node(id) else { return Ok(Evacuation::default()) };
    let snap = ix.snap;
    let mut ev = Evacuation::default();
    let mut refusals = Vec::new();
    let mut surged: BTreeMap<(&ServiceId, usize), (u64, Vec<String>)> = BTreeMap::new();
    let mut tasks = load.placed[h].clone();
    tasks.sort_by(|a, b| (&snap.services[a.0].id, a.1).cmp(&(&snap.services[b.0].id, b.1)));
    for (s, slot) in tasks {
        let svc = &snap.services[s];
        if svc.mode == Mode::Global {
            ev.global_stops.push(svc.name.clone());
            continue;
        }
        // The task leaves the node being upgraded; the node itself takes nothing while paused.
        load.remove(ix, h, (s, slot));
        changes.push(Change::Removed(h, (s, slot)));
        match load.best(ix, s, h) {
            Some(dest) => {
                load.add(ix, dest, (s, slot));
                changes.push(Change::Added(dest, (s, slot)));
                let to = &snap.nodes[dest].hostname;
                ev.moves.push(format!("{}.{} -> {to}", svc.name, slot.unwrap_or(0)));
                let e = surged.entry((&svc.id, s)).or_default();
                e.0 += 1;
                e.1.push(to.clone());
            }
            None if ix.accepted[s] => {
                // Its outage is accepted: the task stays, stops with the node, comes back with it.
                load.add(ix, h, (s, slot));
                changes.push(Change::Added(h, (s, slot)));
                match ev.downtime.iter_mut().find(|o| o.service == svc.id) {
                    Some(o) => o.tasks += 1,
                    None => ev.downtime.push(Outage {
                        service: svc.id.clone(),
                        name: svc.name.clone(),
                        tasks: 1,
                    }),
                }
            }
            None => refusals.push(stuck(ix, load, h, s, slot)),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    ev.surge = surged
        .into_iter()
        .filter_map(|((_, s), (extra, on))| {
            let svc = &snap.services[s];
            let Mode::Replicated { replicas } = svc.mode else { return None };
            Some(Surge {
                service: svc.id.clone(),
                name: svc.name.clone(),
                from: replicas,
                to: replicas + extra,
                expected_on: on,
            })
        })
        .collect();
    Ok(ev)
}

/// The refusal for a task of service `s` on node `h` that no other node can take, with every
/// other node's reason.
fn stuck(ix: &Index, load: &Load, h: usize, s: usize, slot: Option<u64>) -> Refusal {
    let (host, svc) = (&ix.snap.nodes[h].hostname, &ix.snap.services[s]);
    let reasons: Vec<String> = (0..ix.snap.nodes.len())
        .filter(|&n| n != h)
        .filter_map(|n| {
            let why = load.why_not(ix, n, s)?;
            Some(format!("{}: {}", ix.snap.nodes[n].hostname, why.describe(svc)))
        })
        .collect();
    Refusal {
        kind: RefusalKind::CannotEvacuate,
        node: Some(host.clone()),
        service: Some(svc.name.clone()),
        reason: format!(
            "task {}.{} on {host} cannot run anywhere else while {host} is drained: {}",
            svc.name,
            slot.unwrap_or(0),
            if reasons.is_empty() {
                "there is no other node".to_string()
            } else {
                reasons.join("; ")
            }
        ),
        fix: format!(
            "add a node that can take it; relax the constraints, max replicas per node, host ports or reservations of {name}; accept its outage while {host} upgrades (`docker service update --label-add {label}={accept} {name}`, or `--accept-downtime {name}`); or exclude {host} with the exclude label",
            name = svc.name,
            label = crate::model::DOWNTIME_LABEL,
            accept = crate::model::DOWNTIME_ACCEPT,
        ),
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
