//! The fake cluster's orchestrator and scheduler (see [`World`] for their semantics), indexed
//! once per reconciliation: a tick costs the cluster's tasks plus each placement's candidate
//! nodes, not services times tasks (the scale simulation runs 2,500 nodes and 30,000 tasks).

use std::collections::{BTreeSet, HashMap, HashSet};

use swarm_upgrade::model::constraint::satisfies_all;
use swarm_upgrade::model::*;

use super::world::World;

/// Finished tasks swarmkit keeps per slot by default (`docker swarm update --task-history-limit`).
const TASK_HISTORY: usize = 5;

/// What runs where, kept up to date while one reconciliation places and removes tasks; nodes
/// and services by their positions in the world.
struct Load {
    /// Node positions by ID.
    node_at: HashMap<NodeId, usize>,
    /// Tasks meant to run, per node.
    tasks: Vec<usize>,
    /// Tasks meant to run, per node and service.
    of_service: HashMap<(usize, usize), usize>,
    /// Host ports bound by tasks meant to run, per node (a multiset).
    ports: HashMap<usize, Vec<HostPort>>,
    /// Positions of the tasks meant to run (placed or not), per service.
    live: Vec<Vec<usize>>,
    /// Positions of the nodes that take new tasks (Ready and Active).
    open: Vec<usize>,
}

impl Load {
    fn new(w: &World) -> Load {
        let node_at: HashMap<NodeId, usize> =
            w.nodes.iter().enumerate().map(|(p, n)| (n.id.clone(), p)).collect();
        let service_at: HashMap<&ServiceId, usize> =
            w.services.iter().enumerate().map(|(p, s)| (&s.id, p)).collect();
        let mut load = Load {
            tasks: vec![0; w.nodes.len()],
            of_service: HashMap::new(),
            ports: HashMap::new(),
            live: vec![Vec::new(); w.services.len()],
            open: (0..w.nodes.len())
                .filter(|&p| {
                    let n = &w.nodes[p];
                    n.state == NodeState::Ready && n.availability == Availability::Active
                })
                .collect(),
            node_at,
        };
        for (i, t) in w.tasks.iter().enumerate() {
            if t.desired != TaskState::Running {
                continue;
            }
            let Some(&s) = service_at.get(&t.service) else { continue };
            load.live[s].push(i);
            if let Some(&n) = t.node.as_ref().and_then(|n| load.node_at.get(n)) {
                load.add(n, s, &w.services[s]);
            }
        }
        load
    }

    fn add(&mut self, node: usize, s: usize, svc: &Service) {
        self.tasks[node] += 1;
        *self.of_service.entry((node, s)).or_default() += 1;
        if !svc.host_ports.is_empty() {
            self.ports.entry(node).or_default().extend(svc.host_ports.iter().cloned());
        }
    }

    fn remove(&mut self, node: usize, s: usize, svc: &Service) {
        self.tasks[node] = self.tasks[node].saturating_sub(1);
        if let Some(c) = self.of_service.get_mut(&(node, s)) {
            *c = c.saturating_sub(1);
        }
        if let Some(ports) = self.ports.get_mut(&node) {
            for p in &svc.host_ports {
                if let Some(k) = ports.iter().position(|q| q == p) {
                    ports.swap_remove(k);
                }
            }
        }
    }

    fn of(&self, node: usize, s: usize) -> usize {
        self.of_service.get(&(node, s)).copied().unwrap_or(0)
    }

    fn port_taken(&self, node: usize, svc: &Service) -> bool {
        self.ports.get(&node).is_some_and(|ports| ports.iter().any(|p| svc.host_ports.contains(p)))
    }
}

impl World {
    /// One step of the cluster's life: restarted nodes come back, new tasks start, the
    /// orchestrator reconciles, and the running counts are recorded.
    pub fn tick(&mut self) {
        self.hosts_come_back();
        let ready: HashSet<&NodeId> =
            self.nodes.iter().filter(|n| n.state == NodeState::Ready).map(|n| &n.id).collect();
        let timed = &self.timed;
        let mut changed = false;
        for t in &mut self.tasks {
            if t.desired == TaskState::Running
                && t.state < TaskState::Running
                && t.node.as_ref().is_some_and(|n| ready.contains(n))
                && timed.as_ref().is_none_or(|c| c.started(&t.id))
            {
                t.state = TaskState::Running;
                changed = true;
            }
        }
        // On simulated time the orchestrator reconciles on events (a write, a node going down or
        // coming back), as swarmkit's does; on ticks, every tick.
        if self.timed.is_none() || self.dirty || self.reconciled_at != self.index {
            self.dirty = false;
            self.reconciled_at = self.index;
            self.reconcile();
            changed = true;
        }
        if changed {
            self.record_running();
            if self.timed.is_some() {
                self.forget_history(TASK_HISTORY);
            }
        }
    }

    /// Keeps `keep` finished tasks per slot (per node for a global service), the newest, as
    /// swarmkit's task reaper does (its `TaskHistoryRetentionLimit`, 5 by default).
    fn forget_history(&mut self, keep: usize) {
        let mut seen: HashMap<(&ServiceId, Option<u64>, Option<&NodeId>), usize> = HashMap::new();
        let mut forget = vec![false; self.tasks.len()];
        for (i, t) in self.tasks.iter().enumerate().rev() {
            if t.desired == TaskState::Running || t.state <= TaskState::Running {
                continue;
            }
            let node = if t.slot.is_none() { t.node.as_ref() } else { None };
            let n = seen.entry((&t.service, t.slot, node)).or_default();
            *n += 1;
            forget[i] = *n > keep;
        }
        let mut i = 0;
        self.tasks.retain(|_| {
            i += 1;
            !forget[i - 1]
        });
    }

    /// Restarted hosts whose time is up (ticks, or simulated time) report Ready again.
    fn hosts_come_back(&mut self) {
        for i in 0..self.hosts.len() {
            let h = &mut self.hosts[i];
            if h.down_ticks == 0 {
                continue;
            }
            let back = match &self.timed {
                Some(c) => c.ready_at.get(&h.hostname).is_none_or(|at| *at <= c.now),
                None => {
                    h.down_ticks -= 1;
                    h.down_ticks == 0
                }
            };
            if !back {
                continue;
            }
            h.down_ticks = 0;
            self.dirty = true;
            if !h.engine_active {
                continue;
            }
            let version = h.installed.get("docker-ce").map(|v| v.engine_version());
            if let Some(id) = h.local_id.clone()
                && let Some(n) = self.node_mut(&id)
            {
                n.state = NodeState::Ready;
                if let Some(v) = version {
                    n.engine_version = v;
                }
            }
        }
    }

    /// The lowest running count of every replicated service, updated with now's.
    fn record_running(&mut self) {
        let mut running: HashMap<&ServiceId, u64> = HashMap::new();
        for t in &self.tasks {
            if t.state == TaskState::Running && t.desired == TaskState::Running {
                *running.entry(&t.service).or_default() += 1;
            }
        }
        for s in &self.services {
            if let Mode::Replicated { .. } = s.mode {
                let now = running.get(&s.id).copied().unwrap_or(0);
                let m = self.min_running.entry(s.id.clone()).or_insert(now);
                *m = (*m).min(now);
            }
        }
    }

    fn shut_down(t: &mut Task) {
        t.desired = TaskState::Shutdown;
        if t.state <= TaskState::Running {
            t.state = TaskState::Shutdown;
        }
    }

    /// The orchestrator and scheduler.
    pub fn reconcile(&mut self) {
        let gone: HashSet<&NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.availability == Availability::Drain || n.state == NodeState::Down)
            .map(|n| &n.id)
            .collect();
        let known: HashSet<&NodeId> = self.nodes.iter().map(|n| &n.id).collect();
        for t in &mut self.tasks {
            let lost = t.node.as_ref().is_some_and(|n| gone.contains(n) || !known.contains(n));
            if t.desired == TaskState::Running && lost {
                Self::shut_down(t);
            }
        }
        let mut load = Load::new(self);
        for si in 0..self.services.len() {
            match self.services[si].mode {
                Mode::Replicated { replicas } => self.reconcile_replicated(si, replicas, &mut load),
                Mode::Global => self.reconcile_global(si, &mut load),
            }
        }
    }

    /// Whether a replicated service already runs its replica count, every task placed.
    fn settled(&self, si: usize, replicas: u64, load: &Load) -> bool {
        let live = &load.live[si];
        live.len() as u64 == replicas && live.iter().all(|&i| self.tasks[i].node.is_some())
    }

    fn reconcile_replicated(&mut self, si: usize, replicas: u64, load: &mut Load) {
        if self.settled(si, replicas, load) {
            return;
        }
        let svc = self.services[si].clone();
        let mut live = std::mem::take(&mut load.live[si]);
        // Scale down: not running first, then the highest slot.
        if live.len() as u64 > replicas && !self.missed_scale_down.contains(&svc.id) {
            live.sort_by_key(|&i| {
                (self.tasks[i].state == TaskState::Running, std::cmp::Reverse(self.tasks[i].slot))
            });
            let surplus = live.len() - replicas as usize;
            for &i in &live[..surplus] {
                if let Some(&n) = self.tasks[i].node.as_ref().and_then(|n| load.node_at.get(n)) {
                    load.remove(n, si, &svc);
                }
                Self::shut_down(&mut self.tasks[i]);
            }
            live.drain(..surplus);
            live.sort_unstable();
        }
        // Unplaced tasks try again.
        for &i in &live {
            if self.tasks[i].node.is_none()
                && let Some(n) = self.place_with(si, load)
            {
                load.add(n, si, &svc);
                self.tasks[i].node = Some(self.nodes[n].id.clone());
                self.tasks[i].state = TaskState::Assigned;
                if let Some(c) = self.timed.as_mut() {
                    c.placed(&self.tasks[i].id);
                }
            }
        }
        // Missing slots get a new task: as swarmkit counts slots (a scale-down does not renumber
        // the ones kept), the lowest free numbers until there are `replicas`.
        let mut kept: BTreeSet<u64> = live.iter().filter_map(|&i| self.tasks[i].slot).collect();
        for slot in 1.. {
            if kept.len() as u64 >= replicas {
                break;
            }
            if kept.insert(slot) {
                let node = self.place_with(si, load);
                let id = self.fresh_id(&format!("{}.{slot}.", svc.name));
                self.new_task(si, &svc, id, Some(slot), node, load);
                live.push(self.tasks.len() - 1);
            }
        }
        load.live[si] = live;
    }

    fn reconcile_global(&mut self, si: usize, load: &mut Load) {
        let svc = self.services[si].clone();
        let eligible: Vec<usize> = (0..self.nodes.len())
            .filter(|&p| {
                let n = &self.nodes[p];
                n.state == NodeState::Ready
                    && n.availability != Availability::Drain
                    && load.of(p, si) == 0
                    && satisfies_all(&svc.constraints, n)
            })
            .collect();
        for n in eligible {
            let id = self.fresh_id(&format!("{}.", svc.name));
            self.new_task(si, &svc, id, None, Some(n), load);
        }
    }

    /// A new task of service `si`, meant to run, placed on node position `node` if any.
    fn new_task(
        &mut self,
        si: usize,
        svc: &Service,
        id: String,
        slot: Option<u64>,
        node: Option<usize>,
        load: &mut Load,
    ) {
        let state = if node.is_some() { TaskState::Assigned } else { TaskState::Pending };
        if let Some(n) = node {
            load.add(n, si, svc);
            if let Some(c) = self.timed.as_mut() {
                c.placed(&id);
            }
        }
        self.tasks.push(Task {
            id,
            service: svc.id.clone(),
            slot,
            node: node.map(|n| self.nodes[n].id.clone()),
            state,
            desired: TaskState::Running,
            error: None,
        });
    }

    /// The scheduler's choice for one new task of `svc`: eligible nodes, fewest tasks of the
    /// service, then fewest tasks, then host name.
    pub fn place(&self, svc: &Service) -> Option<NodeId> {
        let si = self.services.iter().position(|s| s.id == svc.id)?;
        self.place_with(si, &Load::new(self)).map(|n| self.nodes[n].id.clone())
    }

    /// The position of the node a new task of service `si` goes to.
    fn place_with(&self, si: usize, load: &Load) -> Option<usize> {
        let svc = &self.services[si];
        load.open
            .iter()
            .copied()
            .filter(|&p| {
                svc.max_replicas_per_node.is_none_or(|m| m == 0 || (load.of(p, si) as u64) < m)
            })
            .filter(|&p| !load.port_taken(p, svc))
            .filter(|&p| satisfies_all(&svc.constraints, &self.nodes[p]))
            .min_by_key(|&p| (load.of(p, si), load.tasks[p], self.nodes[p].hostname.as_str()))
    }

    /// Ticks until nothing changes (at most `max` ticks); whether every service converged.
    pub fn settle(&mut self, max: usize) -> bool {
        for _ in 0..max {
            self.tick();
        }
        let snap = self.snapshot(jiff::Timestamp::UNIX_EPOCH);
        swarm_upgrade::model::convergence::first_unconverged(&snap).is_none()
    }
}
