//! What each node's agent reports about its node: packages, repository, disk, engine (its
//! configuration included) and the engine's own view of its swarm membership.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DebVersion;

/// What a node's agent reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum AgentStatus {
    /// The agent answered.
    Reachable(Box<AgentReport>),
    /// The agent did not answer.
    Unreachable {
        /// Why it could not be reached.
        error: String,
    },
}

/// A node's packages, repository and engine, as its agent sees them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    /// Installed versions of the configured packages.
    #[serde(default)]
    pub installed: BTreeMap<String, DebVersion>,
    /// Versions the node's apt repositories offer, per package.
    #[serde(default)]
    pub available: BTreeMap<String, Vec<DebVersion>>,
    /// Why the repository cannot be used (unreachable, bad signature), if it cannot.
    #[serde(default)]
    pub repository_error: Option<String>,
    /// Free disk space for packages, in bytes.
    #[serde(default)]
    pub disk_free_bytes: u64,
    /// Whether `docker.service` is active.
    #[serde(default)]
    pub engine_active: bool,
    /// The engine's own view of its swarm membership.
    #[serde(default)]
    pub local_swarm: Option<LocalSwarm>,
    /// Packages dpkg left mid-transaction (an interrupted install), if any.
    #[serde(default)]
    pub dpkg_interrupted: Option<String>,
    /// Why dockerd would not start with its configuration as it is on disk now, if it would not
    /// (`None` too from an agent too old to check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_config: Option<EngineConfigProblem>,
    /// Running containers no swarm service owns (empty too from an agent too old to look).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standalone: Vec<Standalone>,
    /// The archives of its swarm state the agent keeps (full paths), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub swarm_backups: Vec<String>,
    /// The hooks its configuration names, each with why it cannot run, if it cannot (none from
    /// an agent too old to have hooks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::model::hooks::HookStatus>,
    /// The room for an archive of its swarm state (`None`: it holds none, or its agent is too
    /// old to say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_room: Option<crate::model::swarm_backup::BackupRoom>,
}

/// A running container no swarm service owns (started with `docker run`): no drain moves it, and
/// it stops while the node's engine restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standalone {
    /// Its name.
    pub name: String,
    /// Its image, as it was started.
    pub image: String,
    /// Its restart policy: `no`, `always`, `unless-stopped` or `on-failure`.
    pub restart: String,
}

impl Standalone {
    /// Each of `containers` as it displays, joined: `cache (restart always: comes back), …`.
    pub fn list(containers: &[Standalone]) -> String {
        let shown: Vec<String> = containers.iter().map(ToString::to_string).collect();
        shown.join(", ")
    }

    /// The names of `containers`, the first `at_most` and a count of the rest.
    pub fn names(containers: &[Standalone], at_most: usize) -> Vec<String> {
        let mut names: Vec<String> =
            containers.iter().take(at_most).map(|c| c.name.clone()).collect();
        if containers.len() > at_most {
            names.push(format!("... and {} more", containers.len() - at_most));
        }
        names
    }

    /// Whether the engine starts it again when it comes back: `always` and `unless-stopped`
    /// do; `on-failure` only after an exit with an error, `no` never.
    pub fn comes_back(&self) -> bool {
        matches!(self.restart.as_str(), "always" | "unless-stopped")
    }
}

impl std::fmt::Display for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fate = match self.restart.as_str() {
            "on-failure" => "comes back only if it exits with an error",
            _ if self.comes_back() => "comes back",
            _ => "stays stopped",
        };
        write!(f, "{} (restart {}: {fate})", self.name, self.restart)
    }
}

/// A reason dockerd would refuse to start with its configuration file. The file may have been
/// written after the engine last started, so the running engine says nothing of it; the upgrade's
/// own restart (docker-ce's postinst restarts dockerd) would be the first to meet it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfigProblem {
    /// The configuration file (`/etc/docker/daemon.json`).
    pub file: String,
    /// The options at fault, when the check could tell (`live-restore`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// What is wrong: our own check's words, or dockerd's own (`dockerd --validate`).
    pub detail: String,
}

/// A node's swarm membership as its own engine reports it (`docker info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSwarm {
    /// The node ID the engine holds (empty when not in a swarm).
    pub node_id: String,
    /// `active`, `inactive`, `pending`, `error` or `locked`.
    pub state: LocalSwarmState,
}

/// The engine's local swarm state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalSwarmState {
    /// A member.
    Active,
    /// Not in a swarm.
    Inactive,
    /// Joining.
    Pending,
    /// In error.
    Error,
    /// Autolocked, waiting for the unlock key.
    Locked,
}

impl LocalSwarmState {
    const ALL: [LocalSwarmState; 5] = [
        LocalSwarmState::Active,
        LocalSwarmState::Inactive,
        LocalSwarmState::Pending,
        LocalSwarmState::Error,
        LocalSwarmState::Locked,
    ];

    /// The state as the Docker API and our wire write it (`active`, `locked`, …).
    pub fn name(self) -> &'static str {
        match self {
            LocalSwarmState::Active => "active",
            LocalSwarmState::Inactive => "inactive",
            LocalSwarmState::Pending => "pending",
            LocalSwarmState::Error => "error",
            LocalSwarmState::Locked => "locked",
        }
    }

    /// The state a name stands for, if any.
    pub(crate) fn from_name(name: &str) -> Option<LocalSwarmState> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}
