//! What a plan decides for a run: each node's part, its surge, the reasons to refuse, and the
//! operator's permissions. Shared by the planner that makes them, the machine and run record that
//! carry them out, and the reports that show them.

use serde::{Deserialize, Serialize};

use super::{
    Availability, DebVersion, EngineVersion, NodeId, PackageSet, Role, ServiceId, Standalone,
};

/// What kind of reason refuses a run: what code and `--output json` readers act on (the
/// refusal's `reason` and `fix` say it for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// An operator's stop label on a node.
    StopLabel,
    /// A node is not Ready.
    NodeNotReady,
    /// A manager is unreachable by the other managers.
    ManagerUnreachable,
    /// A single-manager swarm without the opt-in.
    SingleManager,
    /// Restarting any manager would lose the quorum.
    Quorum,
    /// A manager reports no Raft status.
    NoRaftStatus,
    /// A node's agent did not answer, or no report was taken.
    AgentUnreachable,
    /// dpkg was left mid-transaction on a node.
    DpkgInterrupted,
    /// dockerd on a node would refuse its configuration file when the upgrade restarts it.
    EngineConfig,
    /// A node's apt repository cannot be used.
    RepositoryBroken,
    /// A package version is not offered, or no target could be resolved.
    VersionUnavailable,
    /// Not enough free disk for the packages.
    DiskLow,
    /// The target is below what is installed, without the opt-in.
    Downgrade,
    /// Too many major versions between the engine and the target.
    MajorSkew,
    /// A service has not converged.
    ServiceUnsettled,
    /// A node's tasks could not run elsewhere while it is drained.
    CannotEvacuate,
    /// A scheduled run does not retry a target whose last run failed.
    FailedBefore,
    /// The swarm is autolocked and the unlock key given is missing or not the current one.
    Autolocked,
    /// A node runs containers no service owns, and `upgrade.standalone` refuses them.
    StandaloneContainers,
    /// `--accept-downtime` names a service the swarm does not have.
    UnknownService,
    /// The alert gate's monitoring system cannot be asked.
    AlertGate,
    /// A hook a node's configuration names cannot run there.
    HookUnusable,
    /// A manager's swarm state would not fit twice in the free space where its archive goes
    /// (`upgrade.backup_managers`).
    BackupNoRoom,
}

/// A reason to refuse the run: what, where, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind of reason.
    pub kind: RefusalKind,
    /// The node concerned, by host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The service concerned, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// What the operator can do about it.
    pub fix: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.fix)
    }
}

/// A replicated service scaled up before a node is drained, so its capacity never drops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Surge {
    /// Service ID.
    pub service: ServiceId,
    /// Service name.
    pub name: String,
    /// Replicas before.
    pub from: u64,
    /// Replicas during the node's upgrade.
    pub to: u64,
    /// Where the planner expects the extra replicas (host names).
    pub expected_on: Vec<String>,
}

/// A service whose task on a node cannot run elsewhere, and whose outage while that node
/// upgrades an operator accepted (its label, or `--accept-downtime`): the drain stops it, and it
/// comes back with the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Service ID.
    pub service: ServiceId,
    /// Service name.
    pub name: String,
    /// How many of its tasks on the node cannot run elsewhere (the others move as usual).
    #[serde(default = "one")]
    pub tasks: u64,
}

fn one() -> u64 {
    1
}

/// One node's part of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Node ID.
    pub node: NodeId,
    /// Host name.
    pub hostname: String,
    /// Role.
    pub role: Role,
    /// Whether it is the Raft leader.
    pub leader: bool,
    /// Engine version now.
    pub engine_from: EngineVersion,
    /// Installed engine package version, if its agent reported it.
    pub installed: Option<DebVersion>,
    /// Availability to return it to (an operator's pause or drain is kept).
    pub availability: Availability,
    /// Services scaled up before the drain (empty without surge).
    pub surge: Vec<Surge>,
    /// Tasks the drain moves, as `service.slot -> host`.
    pub moves: Vec<String>,
    /// Global services whose task stops with the node and comes back with it.
    pub global_stops: Vec<String>,
    /// Its batch: its position in the plan's batches.
    #[serde(default)]
    pub batch: u32,
    /// The packages it installs, each at the exact version its own repository has for the target.
    #[serde(default)]
    pub packages: PackageSet,
    /// Running containers no service owns: they stop while its engine restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standalone: Vec<Standalone>,
    /// Services down while it upgrades, by the operator's leave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downtime: Vec<Outage>,
}

/// Permissions given when the run started (`--allow-downgrade`, `--allow-single-manager`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFlags {
    /// A downgrade was allowed.
    pub allow_downgrade: bool,
    /// A one-manager swarm was allowed.
    pub allow_single_manager: bool,
    /// Services whose outage was accepted on the command line (`--accept-downtime`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_downtime: Vec<String>,
    /// Managers archive their swarm state before their install (`upgrade.backup_managers` when
    /// the run started: a coordinator that takes over keeps it).
    #[serde(default)]
    pub backup_managers: bool,
}
