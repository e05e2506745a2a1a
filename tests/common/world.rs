//! The state of a fake cluster and its scheduler: synchronous, so property tests can also drive
//! it directly. Semantics follow swarmkit where the coordinator depends on them: drained and
//! down nodes lose their tasks, which are rescheduled; paused nodes keep theirs but get no new
//! ones; placement honours constraints, max replicas per node and host ports; scaling down
//! removes tasks that are not running first; a new task runs one tick after it is created.

use std::collections::{BTreeMap, BTreeSet};

use swarm_upgrade::lock::StoreDoc;
use swarm_upgrade::model::*;
use swarm_upgrade::ports::PortError;

use super::latency::Timed;

/// One describe asked of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// The host asked.
    pub host: String,
    /// Whether it refreshed its package lists.
    pub refresh: bool,
    /// The run's current nodes then, if a run was in the store (see [`World::current_nodes`]).
    pub current: Vec<String>,
}

/// One machine: its packages, engine and agent. Its swarm entry is found by `local_id`.
#[derive(Clone, Debug)]
pub struct Host {
    pub hostname: String,
    pub addr: String,
    pub installed: PackageSet,
    pub available: BTreeMap<String, Vec<DebVersion>>,
    pub engine_active: bool,
    pub agent_up: bool,
    /// The node ID the engine holds; `None` when it is not in a swarm.
    pub local_id: Option<NodeId>,
    /// Ticks until the node reports Ready again after a restart.
    pub down_ticks: u32,
    /// Running containers no service owns.
    pub standalone: Vec<swarm_upgrade::model::Standalone>,
    /// The swarm-state archives its agent keeps, newest first.
    pub swarm_backups: Vec<String>,
    /// Its configured hooks: the exit code each returns (and a problem that keeps it from
    /// running, for preflight).
    pub hooks: BTreeMap<swarm_upgrade::model::hooks::HookPoint, (i32, Option<String>)>,
}

/// The fake cluster's whole state.
#[derive(Clone, Debug)]
pub struct World {
    pub hosts: Vec<Host>,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    pub next_id: u64,
    pub store_text: String,
    /// Whether store writes are laid out as the swarm adapter lays them out and counted in
    /// `store_writes` (the scale benchmark; costly for property tests).
    pub count_writes: bool,
    /// The last write's layout, when counted.
    pub last_layout: Option<Stored>,
    /// The size of every part each counted store write rewrote (changed shards, the header).
    pub store_writes: Vec<Vec<usize>>,
    pub store_version: u64,
    /// An engine package version whose engine fails to start.
    pub broken: Option<DebVersion>,
    /// A host whose repository fails downloads (prefetch fails).
    pub fail_prefetch_on: Option<String>,
    /// How many upgrade orders from now find apt's lock held by another apt (busy, nothing changed).
    pub busy_upgrades: u32,
    /// A host whose upgrade fails like a broken package (dpkg returns an error).
    pub fail_upgrade_on: Option<String>,
    /// The first engine restart on this host never answers (an engine that never becomes ready).
    pub hang_restart_on: Option<String>,
    /// A host whose rollback fails (its previous packages cannot be installed again).
    pub fail_rollback_on: Option<String>,
    /// A host whose swarm state is wiped at its next engine restart.
    pub wipe_on_restart: Option<String>,
    /// Lowest running count seen per replicated service (checked against `floor`).
    pub min_running: BTreeMap<ServiceId, u64>,
    /// Replica counts before the run: surge must never let a service drop below them.
    pub floor: BTreeMap<ServiceId, u64>,
    pub highest_token: BTreeMap<String, u64>,
    /// The next scale-down is missed by the orchestrator (swarmkit's lost REMOVE write).
    pub miss_next_scale_down: bool,
    /// Services whose last scale-down was missed: their surplus stays until their next update.
    pub missed_scale_down: BTreeSet<ServiceId>,
    /// The swarm's last version index: every node or service write takes the next one.
    pub index: u64,
    /// Just before our next availability write to this host, another coordinator takes the lock
    /// (as if ours had stalled past its lease) and drains the node itself.
    pub rival_before_write_on: Option<String>,
    /// Just before our next availability write to this host, an operator labels the node.
    pub operator_before_write_on: Option<String>,
    /// The swarm's current unlock key when it is autolocked.
    pub unlock_key: Option<UnlockKey>,
    /// Every describe asked of an agent, in order.
    pub describes: Vec<Described>,
    /// The run's current nodes at a store version (see [`World::current_nodes`]).
    pub current_at: Option<(u64, Vec<String>)>,
    /// How long each describe takes (a node whose apt sources include a dead mirror).
    pub describe_takes: std::time::Duration,
    /// The prefetch orders each agent carried out, as (host, run, token): the same order again
    /// is answered from memory, as the real agent does.
    pub prefetched: BTreeSet<(String, String, u64)>,
    /// A host whose next prefetch fails (a mirror down for a moment).
    pub fail_next_prefetch_on: Option<String>,
    /// Simulated time and latencies (the scale simulation); `None`: ticks, no latency.
    pub timed: Option<Timed>,
    /// Something the orchestrator reacts to happened (a node went down or came back).
    pub dirty: bool,
    /// The version index the orchestrator last reconciled at.
    pub reconciled_at: u64,
    /// What the coordinator asked of the cluster, counted.
    pub calls: Calls,
    /// The last document saved, kept parsed when timed (loads then skip the parse).
    pub saved_doc: Option<StoreDoc>,
    pub log: Vec<String>,
}

/// What the coordinator asked of the fake, counted as the real adapters make the calls.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Calls {
    /// Docker API requests: a snapshot is four (swarm, nodes, services, tasks), a node or service
    /// write two (inspect, update), reading an unlock key or join token one.
    pub docker: u64,
    /// Objects those requests listed (each read's nodes, services and tasks).
    pub listed: u64,
    /// Whole snapshots taken (the guard before each node; preflight).
    pub snapshots: u64,
    /// Scoped reads (polls, and the readings writes are decided on).
    pub scoped: u64,
    /// Objects the scoped reads listed.
    pub listed_scoped: u64,
    /// Agent calls, by kind.
    pub agent: BTreeMap<&'static str, u64>,
    /// Store loads.
    pub store_loads: u64,
    /// Store saves.
    pub store_saves: u64,
    /// The document's size now, in bytes (laid out in parts when writes are counted).
    pub document: u64,
    /// The largest the document has been.
    pub largest_document: u64,
    /// CPU time spent inside the fake's reads and store (its own work, not the caller's).
    pub busy: std::time::Duration,
    /// Bytes of the document the loads read: the header, and every shard when the header is
    /// not the one the coordinator last read or wrote (as the swarm adapter reads).
    pub store_read: u64,
}

/// The store as the swarm adapter lays it out: the header's text, and each shard's nodes and
/// size, so that a write is counted without serializing the shards it did not change.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    pub header: String,
    pub run: Option<String>,
    pub shards: Vec<(Vec<std::sync::Arc<swarm_upgrade::machine::NodeProgress>>, usize)>,
    /// The header the coordinator last read or wrote (it then reads only the header), and when
    /// it last read every shard (it does again after `FRESH_FOR`).
    pub seen: Option<(String, tokio::time::Instant)>,
}

impl Stored {
    /// The document's size: header and shards.
    pub fn bytes(&self) -> u64 {
        (self.header.len() + self.shards.iter().map(|s| s.1).sum::<usize>()) as u64
    }
}

impl World {
    pub fn host(&self, addr: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.addr == addr)
    }

    pub fn host_mut(&mut self, addr: &str) -> Option<&mut Host> {
        self.hosts.iter_mut().find(|h| h.addr == addr)
    }

    pub fn node_mut(&mut self, id: &NodeId) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| &n.id == id)
    }

    pub(crate) fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// The snapshot the swarm port returns (agents left empty).
    pub fn snapshot(&self, now: jiff::Timestamp) -> ClusterSnapshot {
        ClusterSnapshot {
            taken_at: now,
            cluster_id: "fake".into(),
            nodes: self.nodes.clone(),
            services: self.services.clone(),
            tasks: self.tasks.clone(),
            agents: BTreeMap::new(),
            autolock: if self.unlock_key.is_some() { Autolock::NoKey } else { Autolock::Off },
        }
    }

    /// The next version index (swarmkit's Raft index: one counter for every object).
    pub fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Node `id` for a write decided at version `at`: swarmkit's check on every spec update
    /// ("update out of sequence" when the node moved on), the refusal logged; the node takes
    /// the next version index.
    pub fn node_at(&mut self, id: &NodeId, at: u64) -> Result<&mut Node, PortError> {
        let current = self
            .node_mut(id)
            .ok_or_else(|| PortError::Failed(format!("node {id} not found")))?
            .version;
        if current != at {
            self.log.push(format!("refused write to {id} decided at {at}, now at {current}"));
            return Err(PortError::Conflict);
        }
        let index = self.next_index();
        let n = self.node_mut(id).unwrap();
        n.version = index;
        Ok(n)
    }

    /// Service `id` for a write decided at version `at` (see [`World::node_at`]).
    pub fn service_at(&mut self, id: &ServiceId, at: u64) -> Result<&mut Service, PortError> {
        let index = self.index + 1;
        let s = self
            .services
            .iter_mut()
            .find(|s| &s.id == id)
            .ok_or_else(|| PortError::Failed(format!("service {id} not found")))?;
        if s.version != at {
            let msg = format!("refused write to {id} decided at {at}, now at {}", s.version);
            self.log.push(msg);
            return Err(PortError::Conflict);
        }
        s.version = index;
        self.index = index;
        Ok(self.services.iter_mut().find(|s| &s.id == id).unwrap())
    }

    /// Another coordinator takes the lock (as if ours had lapsed) and drains node `id` itself.
    pub fn rival_takes_over(&mut self, id: &NodeId) {
        let mut doc = self.store_doc();
        doc.last_token += 1;
        let lock = doc.lock.as_mut().expect("a lock is held");
        lock.token = doc.last_token;
        lock.holder = "rival".into();
        self.store_text = serde_json::to_string(&doc).unwrap();
        self.store_version += 1;
        let index = self.next_index();
        let n = self.node_mut(id).unwrap();
        n.availability = Availability::Drain;
        n.version = index;
        let host = n.hostname.clone();
        self.log.push(format!("rival took the lock and drained {host}"));
    }

    /// An operator labels node `id` (`docker node update --label-add ops=1`).
    pub fn operator_labels(&mut self, id: &NodeId) {
        let index = self.next_index();
        let n = self.node_mut(id).unwrap();
        n.labels.insert("ops".into(), "1".into());
        n.version = index;
        let host = n.hostname.clone();
        self.log.push(format!("operator labelled {host}"));
    }

    /// The run's current nodes, if a run is in the store: the first not finished, and the one
    /// after it (with batches of one, the next batch: it starts during the first's window).
    pub fn current_nodes(&mut self) -> Vec<String> {
        match &self.current_at {
            Some((version, current)) if *version == self.store_version => current.clone(),
            _ => {
                let current: Vec<String> = self.store_doc().run.map_or(Vec::new(), |r| {
                    r.nodes
                        .into_iter()
                        .skip_while(|n| n.phase.is_terminal())
                        .take(2)
                        .map(|n| n.hostname.clone())
                        .collect()
                });
                self.current_at = Some((self.store_version, current.clone()));
                current
            }
        }
    }

    /// The store document as it is now.
    pub fn store_doc(&self) -> StoreDoc {
        if let Some(doc) = &self.saved_doc {
            doc.clone()
        } else if self.store_text.is_empty() {
            StoreDoc::default()
        } else {
            StoreDoc::from_json(&self.store_text).unwrap()
        }
    }

    /// Starts recording running counts from now, against the current replica counts.
    pub fn watch_capacity(&mut self) {
        self.min_running.clear();
        self.floor = self
            .services
            .iter()
            .filter_map(|s| match s.mode {
                Mode::Replicated { replicas } => Some((s.id.clone(), replicas)),
                Mode::Global => None,
            })
            .collect();
    }

    /// Services whose running count dropped below their replica count since `watch_capacity`.
    pub fn capacity_dips(&self) -> Vec<String> {
        self.floor
            .iter()
            .filter(|(s, floor)| self.min_running.get(*s).is_some_and(|m| m < floor))
            .map(|(s, floor)| format!("{s}: {} < {floor}", self.min_running[s]))
            .collect()
    }
}
