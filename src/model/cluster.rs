//! The observed cluster: nodes, services and tasks, with each node's agent report ([`super::report`]).
//!
//! These are this project's own types; adapters convert Docker's models into them.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::report::{AgentReport, AgentStatus};
use super::version::EngineVersion;

/// A swarm node's ID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

/// A swarm service's ID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node's role in the swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes part in Raft and may run tasks.
    Manager,
    /// Only runs tasks.
    Worker,
}

/// Whether the scheduler may place tasks on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// New tasks may be placed; tasks keep running.
    Active,
    /// No new tasks; running tasks stay.
    Pause,
    /// No tasks: running ones are stopped and rescheduled elsewhere.
    Drain,
}

impl Availability {
    /// The word Docker uses (`docker node update --availability WORD`).
    pub fn name(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }

    /// The availability Docker's `word` names.
    pub fn from_name(word: &str) -> Option<Availability> {
        [Availability::Active, Availability::Pause, Availability::Drain]
            .into_iter()
            .find(|a| a.name() == word)
    }
}

/// The service label with which an operator accepts a service's outage while the node of a task
/// that cannot run elsewhere upgrades (`docker service update --label-add
/// swarm-upgrade.downtime=accept db`): the value [`DOWNTIME_ACCEPT`] accepts it, any other does not.
pub const DOWNTIME_LABEL: &str = "swarm-upgrade.downtime";

/// The value of [`DOWNTIME_LABEL`] that accepts the outage.
pub const DOWNTIME_ACCEPT: &str = "accept";

/// The label swarm-upgrade sets on a node it had to leave out of service (a failed upgrade it
/// could not undo): the availability the node had before, which a later run gives back. It tells
/// "swarm-upgrade left it drained" apart from "an operator drained it" without guessing.
pub const RESTORE_LABEL: &str = "swarm-upgrade.restore-availability";

/// A node's state as the managers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeats arrive.
    Ready,
    /// The node stopped sending heartbeats.
    Down,
    /// Not known yet.
    Unknown,
    /// Lost its connection to the managers.
    Disconnected,
}

/// A manager's Raft reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// Reachable by the other managers.
    Reachable,
    /// Not reachable: it does not count toward quorum.
    Unreachable,
    /// Not known yet.
    Unknown,
}

/// Raft status of a manager node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerStatus {
    /// Whether this manager is the Raft leader.
    pub leader: bool,
    /// Whether the other managers reach it.
    pub reachability: Reachability,
    /// Where the other managers reach it (`ip:port`, the swarm's listen port); empty when not
    /// known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

/// CPU and memory, in the swarm's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in billionths of a CPU.
    #[serde(default)]
    pub nano_cpus: i64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: i64,
}

/// A swarm node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Node ID.
    pub id: NodeId,
    /// Host name.
    pub hostname: String,
    /// Manager or worker.
    pub role: Role,
    /// Scheduling availability.
    pub availability: Availability,
    /// Liveness as the managers see it.
    pub state: NodeState,
    /// The address the node reports (its agent listens there).
    #[serde(default)]
    pub addr: String,
    /// Raft status, for managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ManagerStatus>,
    /// The engine version the node reports.
    pub engine_version: EngineVersion,
    /// Node labels (set by operators).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Engine labels (from daemon.json).
    #[serde(default)]
    pub engine_labels: BTreeMap<String, String>,
    /// Operating system and architecture, e.g. `linux`, `x86_64`.
    #[serde(default)]
    pub platform: Platform,
    /// Resources the node offers to tasks.
    #[serde(default)]
    pub resources: Resources,
    /// The swarm's version index of the node's spec when it was read: a write decided on this
    /// reading carries it, and the swarm refuses the write if anyone changed the node since.
    #[serde(default)]
    pub version: u64,
}

impl Node {
    /// The availability swarm-upgrade owes this node (its [`RESTORE_LABEL`]), if it left it out
    /// of service.
    pub fn availability_to_restore(&self) -> Option<Availability> {
        self.labels.get(RESTORE_LABEL).and_then(|w| Availability::from_name(w))
    }

    /// The availability the node had before swarm-upgrade touched it: the one owed, or its own.
    pub fn availability_before_us(&self) -> Availability {
        self.availability_to_restore().unwrap_or(self.availability)
    }
}

/// A node's platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// Architecture, e.g. `x86_64`.
    #[serde(default)]
    pub arch: String,
}

/// How many tasks a service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fixed number of replicas.
    Replicated {
        /// Desired replicas.
        replicas: u64,
    },
    /// One task per eligible node.
    Global,
}

/// A port published in host mode: it binds on the node itself, so two such tasks clash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPort {
    /// Published port number.
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "tcp".to_string()
}

/// State of a service's rolling update, as the swarm reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// An update is in progress.
    Updating,
    /// An update was paused after failures.
    Paused,
    /// The last update completed.
    Completed,
    /// A rollback is in progress.
    RollbackStarted,
    /// A rollback was paused.
    RollbackPaused,
    /// A rollback completed.
    RollbackCompleted,
}

/// A swarm service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Service ID.
    pub id: ServiceId,
    /// Service name.
    pub name: String,
    /// Replicated or global.
    pub mode: Mode,
    /// Placement constraints, as written in the spec (`node.role==worker`).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// At most this many tasks per node (`None`: no limit).
    #[serde(default)]
    pub max_replicas_per_node: Option<u64>,
    /// Ports published in host mode.
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
    /// Resources reserved by each task.
    #[serde(default)]
    pub reservations: Resources,
    /// State of the last update, if any.
    #[serde(default)]
    pub update_state: Option<UpdateState>,
    /// Its label [`DOWNTIME_LABEL`] says `accept`: a task that cannot run elsewhere while its
    /// node upgrades may be down meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub downtime_accepted: bool,
    /// The swarm's version index of the service's spec when it was read (see [`Node::version`]).
    #[serde(default)]
    pub version: u64,
}

/// A task's observed or desired state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created.
    New,
    /// Waiting for resources or a node.
    Pending,
    /// Assigned to a node.
    Assigned,
    /// Accepted by the node.
    Accepted,
    /// Preparing (pulling, creating).
    Preparing,
    /// Ready to start (start-first tasks wait here).
    Ready,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Exited successfully.
    Complete,
    /// Shut down on request.
    Shutdown,
    /// Failed.
    Failed,
    /// Rejected by the node.
    Rejected,
    /// Marked for removal.
    Remove,
    /// Its node is gone.
    Orphaned,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Task ID.
    pub id: String,
    /// The service it belongs to.
    pub service: ServiceId,
    /// Replica slot, for replicated services.
    #[serde(default)]
    pub slot: Option<u64>,
    /// The node it was assigned to.
    #[serde(default)]
    pub node: Option<NodeId>,
    /// Observed state.
    pub state: TaskState,
    /// Desired state.
    pub desired: TaskState,
    /// The engine's error for the task, if it gave one (why it is pending, rejected or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything observed about a cluster at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// When it was taken.
    pub taken_at: Timestamp,
    /// Swarm cluster ID.
    #[serde(default)]
    pub cluster_id: String,
    /// Every node.
    pub nodes: Vec<Node>,
    /// Every service.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Every task the swarm still lists.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Agent reports, by node.
    #[serde(default)]
    pub agents: BTreeMap<NodeId, AgentStatus>,
    /// Whether the swarm is autolocked, and whether swarm-upgrade holds its unlock key.
    #[serde(default)]
    pub autolock: Autolock,
}

/// The swarm's autolock (`docker swarm update --autolock=true`: a restarted manager's engine stays
/// locked until it is given the unlock key), and the unlock key swarm-upgrade was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Autolock {
    /// Off: managers start unlocked.
    #[default]
    Off,
    /// On, and the key given is the swarm's current one.
    Keyed,
    /// On, and no key was given.
    NoKey,
    /// On, and the key given is not the swarm's current one.
    WrongKey,
}

impl ClusterSnapshot {
    /// The node with this ID.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// The service with this ID.
    pub fn service(&self, id: &ServiceId) -> Option<&Service> {
        self.services.iter().find(|s| &s.id == id)
    }

    /// The Raft leader.
    pub fn leader(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.manager.as_ref().is_some_and(|m| m.leader))
    }

    /// Manager nodes.
    pub fn managers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Manager)
    }

    /// How many tasks of `service` are running (and meant to keep running) on none of the
    /// nodes `away`.
    pub(crate) fn running_outside(&self, service: &ServiceId, away: &[&NodeId]) -> u64 {
        self.tasks
            .iter()
            .filter(|t| {
                &t.service == service
                    && t.state == TaskState::Running
                    && t.desired == TaskState::Running
                    && t.node.as_ref().is_none_or(|n| !away.contains(&n))
            })
            .count() as u64
    }

    /// The tasks of `service` meant to run that do not (at most three), each with its state,
    /// node and the engine's error: what a wait for replicas says it waits on, so that a wait
    /// that times out can be read without the cluster.
    pub(crate) fn not_running(&self, service: &ServiceId) -> String {
        let stuck: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| {
                &t.service == service
                    && t.desired == TaskState::Running
                    && t.state != TaskState::Running
            })
            .take(3)
            .map(|t| {
                let id: String = t.id.chars().take(12).collect();
                let node = t.node.as_ref().map_or_else(
                    || " unassigned".to_owned(),
                    |n| format!(" on {}", self.node(n).map_or(n.0.as_str(), |n| &n.hostname)),
                );
                let error = t.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
                format!("task {id} {:?}{node}{error}", t.state)
            })
            .collect();
        if stuck.is_empty() {
            String::new()
        } else {
            format!(" (not running: {})", stuck.join("; "))
        }
    }

    /// How many tasks of each service are running and meant to keep running, in one pass.
    pub(crate) fn running_counts(&self) -> std::collections::HashMap<&ServiceId, u64> {
        let mut counts = std::collections::HashMap::new();
        for t in &self.tasks {
            if t.state == TaskState::Running && t.desired == TaskState::Running {
                *counts.entry(&t.service).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The agent's report for a node, if the agent answered.
    pub fn agent_report(&self, node: &NodeId) -> Option<&AgentReport> {
        match self.agents.get(node) {
            Some(AgentStatus::Reachable(r)) => Some(r.as_ref()),
            _ => None,
        }
    }
}
