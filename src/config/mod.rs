//! Configuration: `config.toml` plus `config.d/*.toml` drop-ins (later files win, key by key),
//! merged over the defaults and validated into typed [`Settings`].

pub mod fragments;
mod locate;
pub mod parallel;
pub mod values;
pub mod window;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Target;
use fragments::Fragment;
pub use parallel::Parallel;
pub use window::Window;

/// The default configuration file.
pub(crate) const DEFAULT_PATH: &str = "/etc/swarm-upgrade/config.toml";

/// What to upgrade to when `--to` is not given.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "version")]
pub enum TargetSetting {
    /// No target configured: `--to` is required.
    Unset,
    /// An engine version (resolved on each node) or an exact package version.
    Exact(Target),
    /// The newest engine version every selected node's repository offers.
    Latest,
    /// The newest engine version of the cluster's lowest major.minor.
    LatestPatch,
}

impl std::str::FromStr for TargetSetting {
    type Err = crate::model::TargetError;

    /// `latest`, `latest-patch`, or a [`Target`] (`28.5.2`, `5:28.5.2-1~debian.13~trixie`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "latest" => Ok(TargetSetting::Latest),
            "latest-patch" => Ok(TargetSetting::LatestPatch),
            _ => text.parse().map(TargetSetting::Exact),
        }
    }
}

/// Which nodes go first; the leader is always the last manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Written with its `rename_all` name; read through `TryFrom<String>` (in `values`), so that a
// wrong name is refused with the names to choose from, as every other value is.
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum NodeOrder {
    /// Workers, then managers.
    WorkersFirst,
    /// Managers, then workers.
    ManagersFirst,
}

/// What a run does with containers no swarm service owns (`upgrade.standalone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum StandalonePolicy {
    /// Upgrade the node anyway, and say which containers stop and which come back.
    Allow,
    /// Refuse a node that runs any, naming them.
    Refuse,
}

/// A node label selector: `key` (any value) or `key=value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelMatch {
    /// Label key.
    pub key: String,
    /// Required value; any when `None`.
    pub value: Option<String>,
}

impl LabelMatch {
    fn parse(text: &str) -> Option<LabelMatch> {
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
            None => (text.trim(), None),
        };
        (!key.is_empty()).then(|| LabelMatch { key: key.to_string(), value })
    }

    /// Whether a node's labels match.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(&self.key).is_some_and(|v| self.value.as_ref().is_none_or(|want| want == v))
    }
}

/// Per-phase time limits.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct Timeouts {
    pub prefetch: Duration,
    pub availability: Duration,
    pub surge: Duration,
    /// How long surged replicas must have run before the node is drained: the time load
    /// balancers' health checks need to send them requests.
    pub warmup: Duration,
    pub migrate: Duration,
    pub upgrade: Duration,
    pub restart: Duration,
    pub ready: Duration,
    pub verify: Duration,
    /// How long services must stay converged before a node counts as done.
    pub monitor: Duration,
    pub rollback: Duration,
    pub rejoin: Duration,
    /// The longest a run holds after its canary nodes for approval (or its soak): then it ends,
    /// aborted, the canary nodes at the target.
    pub hold: Duration,
}

/// The alert gate: a Prometheus whose firing alerts hold the run before each node or batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gates {
    /// Prometheus' base URL (its `/api/v1/alerts` is asked); `None`: no gate.
    pub prometheus_url: Option<String>,
    /// Which firing alerts count.
    pub alert_filter: crate::model::alerts::AlertFilter,
    /// How long a run waits before a node for the alerts that count to clear, then gives up.
    pub wait: Duration,
}

/// Hooks: commands this node's agent runs on this node at points of its upgrade (see
/// [`crate::model::hooks`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hooks {
    /// Before anything changes on the node (at the end of its prefetch).
    pub before_drain: Option<PathBuf>,
    /// After its verification passed.
    pub after_verify: Option<PathBuf>,
    /// Once its part ended in failure.
    pub on_failure: Option<PathBuf>,
    /// The longest one run of a hook may take: then it is killed, with what it started.
    pub timeout: Duration,
}

impl Hooks {
    /// The command at `point`, if one is configured.
    pub fn command(&self, point: crate::model::hooks::HookPoint) -> Option<&Path> {
        use crate::model::hooks::HookPoint;
        match point {
            HookPoint::BeforeDrain => self.before_drain.as_deref(),
            HookPoint::AfterVerify => self.after_verify.as_deref(),
            HookPoint::OnFailure => self.on_failure.as_deref(),
        }
    }
}

/// How the coordinator reaches agents and how agents prove who they are.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentSettings {
    /// The address the agent binds. Only an IP, not `ip:port`: the port is the same on every
    /// node (coordinators dial it), the address is each node's own.
    pub listen: std::net::IpAddr,
    /// TCP port.
    pub port: u16,
    /// The swarm's node certificates (default identity).
    pub certificates_dir: PathBuf,
    /// Operator-provided certificate, key and CA (all three or none).
    pub custom_tls: Option<CustomTls>,
    /// Plaintext gRPC (labs only; logged as a warning).
    pub insecure: bool,
    /// State that must survive agent restarts.
    pub state_dir: PathBuf,
    /// The file holding the swarm's unlock key, for an autolocked swarm (see [`unlock_key`];
    /// the environment variable [`UNLOCK_KEY_ENV`] takes precedence).
    pub unlock_key_file: Option<PathBuf>,
}

/// Operator-provided TLS material.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomTls {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, unencrypted).
    pub key: PathBuf,
    /// CA bundle (PEM).
    pub ca: PathBuf,
}

/// Validated settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    /// Target when `--to` is not given.
    pub target: TargetSetting,
    /// Packages installed at the target version.
    pub engine_packages: Vec<String>,
    /// Packages installed at the newest version each node's repository offers.
    pub companion_packages: Vec<String>,
    /// Packages upgraded with the engine on the nodes where they are installed (never added).
    pub plugin_packages: Vec<String>,
    /// Node order.
    pub order: NodeOrder,
    /// Start replacements before draining.
    pub surge: bool,
    /// How many workers go at once (managers always one at a time).
    pub parallel: Parallel,
    /// The node label whose value names a node's zone (fault domain): a batch never holds two
    /// zones, and zones go one after another. `None`: one zone.
    pub zone_label: Option<String>,
    /// Allow a one-manager swarm.
    pub allow_single_manager: bool,
    /// Allow a target below the installed version.
    pub allow_downgrade: bool,
    /// Widest allowed distance in major versions between a node and the target.
    pub max_major_skew: u32,
    /// What to do with a node that runs containers no service owns.
    pub standalone: StandalonePolicy,
    /// Archive a manager's swarm state (`<data root>/swarm`) with its engine stopped, inside
    /// the restart that starts its new engine (on by default).
    pub backup_managers: bool,
    /// How many such archives a manager's agent keeps under `agent.state_dir/swarm-backups`
    /// (the oldest go first).
    pub backup_keep: u32,
    /// How many nodes go first, each alone, before the run holds until `swarm-upgrade approve`
    /// (or its soak); 0: no canary.
    pub canary: u32,
    /// How long the hold after the canary nodes lasts before the run goes on by itself, with
    /// every service converged; `None`: only `approve` ends it.
    pub soak: Option<Duration>,
    /// Free disk a node needs, in bytes.
    pub min_free_disk: u64,
    /// Only nodes matching this are upgraded.
    pub include_label: Option<LabelMatch>,
    /// Nodes matching this are skipped.
    pub exclude_label: Option<LabelMatch>,
    /// Per-phase limits.
    pub timeouts: Timeouts,
    /// Lock lease.
    pub lease: Duration,
    /// Maintenance windows (none: always open).
    pub windows: Vec<Window>,
    /// Agent connection.
    pub agent: AgentSettings,
    /// Webhook URL.
    pub webhook: Option<String>,
    /// Where the agent serves /metrics.
    pub agent_metrics: Option<std::net::SocketAddr>,
    /// Where a running coordinator serves /metrics.
    pub coordinator_metrics: Option<std::net::SocketAddr>,
    /// The alert gate.
    pub gates: Gates,
    /// This node's hooks.
    pub hooks: Hooks,
}

impl Settings {
    /// Every package a run may install: the engine packages, the companions and the plugins (what
    /// agents describe, and the only names they obey).
    pub fn all_packages(&self) -> Vec<String> {
        let lists = [&self.engine_packages, &self.companion_packages, &self.plugin_packages];
        lists.into_iter().flatten().cloned().collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        let m = |mins: u64| Duration::from_secs(mins * 60);
        Settings {
            target: TargetSetting::Unset,
            engine_packages: vec!["docker-ce".into(), "docker-ce-cli".into()],
            companion_packages: vec!["containerd.io".into()],
            plugin_packages: vec![
                "docker-buildx-plugin".into(),
                "docker-compose-plugin".into(),
                "docker-ce-rootless-extras".into(),
            ],
            order: NodeOrder::WorkersFirst,
            surge: true,
            parallel: Parallel::default(),
            zone_label: None,
            allow_single_manager: false,
            allow_downgrade: false,
            max_major_skew: 2,
            standalone: StandalonePolicy::Allow,
            backup_managers: true,
            backup_keep: 3,
            canary: 0,
            soak: None,
            min_free_disk: 1 << 30,
            include_label: None,
            exclude_label: LabelMatch::parse("swarm-upgrade.skip=true"),
            timeouts: Timeouts {
                prefetch: m(10),
                availability: m(1),
                surge: m(5),
                warmup: Duration::from_secs(3),
                migrate: m(5),
                upgrade: m(15),
                restart: m(3),
                ready: m(5),
                verify: m(10),
                // Docker's own default for a service update's monitor (`--update-monitor`).
                monitor: Duration::from_secs(5),
                rollback: m(15),
                rejoin: m(5),
                hold: m(24 * 60),
            },
            lease: Duration::from_secs(60),
            windows: Vec::new(),
            agent: AgentSettings {
                listen: std::net::Ipv4Addr::UNSPECIFIED.into(),
                port: 7443,
                certificates_dir: PathBuf::from("/var/lib/docker/swarm/certificates"),
                custom_tls: None,
                insecure: false,
                state_dir: PathBuf::from("/var/lib/swarm-upgrade"),
                unlock_key_file: None,
            },
            webhook: None,
            // Loopback: /metrics answers anyone who reaches it, without TLS. Serving it to other
            // hosts (a Prometheus elsewhere) is the operator's choice, made in a drop-in.
            agent_metrics: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9701))),
            coordinator_metrics: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9702))),
            gates: Gates {
                prometheus_url: None,
                alert_filter: crate::model::alerts::AlertFilter::default(),
                wait: m(15),
            },
            hooks: Hooks {
                before_drain: None,
                after_verify: None,
                on_failure: None,
                timeout: m(5),
            },
        }
    }
}

/// A configuration error: which file, where, what, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}; {}", read_fix(.source))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{path}:{line}:{column}: {message}; {fix}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
        /// What to do.
        fix: &'static str,
    },
    /// A value refused while the file was read: it is named by its key and position, and the
    /// refusal quotes it and says what to write instead.
    #[error("{path}:{line}:{column}: `{key}` {refusal}")]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key, e.g. `timeouts.ready` or `windows[0].days`.
        key: String,
        /// `= "value": what is wrong`, as the typed value wrote it.
        refusal: String,
    },
    /// A value parsed but is not acceptable: it breaks a rule between keys (or files), or a limit
    /// checked after parsing.
    #[error("{path}: `{key}` = {value}: {problem}")]
    Invalid {
        /// The file that set it (or `defaults + drop-ins` for cross-key checks).
        path: String,
        /// Dotted key, e.g. `timeouts.ready`.
        key: String,
        /// The offending value as written.
        value: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// Loads settings. `explicit` is `--config`; without it the default path is used if it exists,
/// and plain defaults otherwise. Drop-ins come from `config.d/` beside the main file.
pub fn load(explicit: Option<&Path>) -> Result<Settings, ConfigError> {
    let main = explicit.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let mut settings = Settings::default();
    if explicit.is_some() || main.exists() {
        apply_file(&mut settings, &main)?;
    }
    let dropins = main.parent().map(|d| d.join("config.d")).filter(|d| d.is_dir());
    if let Some(dir) = dropins {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| ConfigError::Read { path: dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            apply_file(&mut settings, &f)?;
        }
    }
    merge::check_merged(&settings, &format!("{} and its config.d/", main.display()))?;
    Ok(settings)
}

fn apply_file(settings: &mut Settings, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let fragment = parse_fragment(&text, path)?;
    merge::apply(settings, fragment, &path.display().to_string())
}

/// Parses one file's text; errors carry the line and column, and a refused value its key.
pub(crate) fn parse_fragment(text: &str, path: &Path) -> Result<Fragment, ConfigError> {
    toml::from_str::<Fragment>(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let (line, column) = locate::line_column(text, offset);
        let path = path.to_path_buf();
        let message = e.message().to_string();
        let refused =
            if message.starts_with(values::REFUSED) { locate::key_at(text, offset) } else { None };
        match refused {
            Some(key) => ConfigError::Value { path, line, column, key, refusal: message },
            None => ConfigError::Syntax { path, line, column, fix: syntax_fix(&message), message },
        }
    })
}

/// What to do about a file that cannot be read.
fn read_fix(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        // The package installs config.toml 0640 root:root: it may hold the webhook URL.
        "only root may read it (it may hold the webhook URL): run swarm-upgrade as root"
    } else {
        "check the path given to --config"
    }
}

/// What to do about an error of TOML's or serde's own, from its wording.
fn syntax_fix(message: &str) -> &'static str {
    if message.contains("unknown field") {
        "remove the key or correct its spelling (every key is listed, commented, in the packaged config.toml)"
    } else if message.contains("invalid type") {
        "give the value the type shown in the packaged config.toml (strings in quotes, lists in [ ])"
    } else {
        "correct the TOML syntax at that place"
    }
}

mod merge;
mod unlock;

pub use unlock::{UNLOCK_KEY_ENV, UnlockKeySourceError, unlock_key};

#[cfg(test)]
mod tests;
