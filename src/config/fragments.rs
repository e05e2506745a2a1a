//! One configuration file as written: every key optional, unknown keys refused, and every value
//! typed so that serde refuses a bad one where it is written (see [`super::values`]).

use serde::Deserialize;

use super::NodeOrder;
use super::values::*;

/// A whole file (`config.toml` or a `config.d/*.toml` drop-in).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    /// `[target]`
    pub target: Option<TargetFragment>,
    /// `[packages]`
    pub packages: Option<PackagesFragment>,
    /// `[upgrade]`
    pub upgrade: Option<UpgradeFragment>,
    /// `[nodes]`
    pub nodes: Option<NodesFragment>,
    /// `[timeouts]`
    pub timeouts: Option<TimeoutsFragment>,
    /// `[lock]`
    pub lock: Option<LockFragment>,
    /// `[[windows]]`: a drop-in that sets it replaces the whole list.
    pub windows: Option<Vec<WindowFragment>>,
    /// `[agent]`
    pub agent: Option<AgentFragment>,
    /// `[notify]`
    pub notify: Option<NotifyFragment>,
    /// `[metrics]`
    pub metrics: Option<MetricsFragment>,
    /// `[gates]`
    pub gates: Option<GatesFragment>,
    /// `[hooks]`
    pub hooks: Option<HooksFragment>,
}

/// `[target]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFragment {
    /// An exact package version.
    pub version: Option<Written<TargetVersion>>,
    /// `latest` or `latest-patch`.
    pub policy: Option<TargetPolicy>,
}

/// `[packages]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesFragment {
    /// Packages installed at the target version.
    pub engine: Option<EnginePackages>,
    /// Packages installed at the newest version each node's repository offers.
    pub companions: Option<Vec<PackageName>>,
    /// Packages upgraded with the engine where they are installed.
    pub plugins: Option<Vec<PackageName>>,
}

/// `[upgrade]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeFragment {
    /// `workers-first` or `managers-first`.
    pub order: Option<NodeOrder>,
    /// Start replacement replicas elsewhere before draining.
    pub surge: Option<bool>,
    /// Workers at once: a number (`4`) or a percentage of the workers (`"10%"`).
    pub parallel: Option<super::Parallel>,
    /// The node label naming each node's zone (`zone` or `node.labels.zone`); empty means none.
    pub zone_label: Option<ZoneLabel>,
    /// Allow upgrading a swarm that has one manager.
    pub allow_single_manager: Option<bool>,
    /// Allow a target below the installed version.
    pub allow_downgrade: Option<bool>,
    /// Widest allowed distance in major versions between any node and the target.
    pub max_major_skew: Option<u32>,
    /// Free disk space a node needs for the packages, e.g. `2GiB`.
    pub min_free_disk: Option<Size>,
    /// `allow` or `refuse` a node running containers no service owns.
    pub standalone: Option<super::StandalonePolicy>,
    /// Archive each manager's swarm state while its engine is stopped for the upgrade.
    pub backup_managers: Option<bool>,
    /// How many of those archives each manager's agent keeps (at least 1).
    pub backup_keep: Option<u32>,
    /// How many nodes go first, one at a time, before the run holds for approval.
    pub canary: Option<u32>,
    /// How long the hold after the canary lasts before the run goes on by itself ("0s": until
    /// approved).
    pub soak: Option<NonNegativeDuration>,
}

/// `[nodes]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesFragment {
    /// Only nodes with this label (`key=value` or `key`) are upgraded; empty means all.
    pub include_label: Option<Label>,
    /// Nodes with this label are skipped; empty means none.
    pub exclude_label: Option<Label>,
}

/// `[timeouts]`: durations such as `90s`, `10m`, `1h 30m`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TimeoutsFragment {
    pub prefetch: Option<PositiveDuration>,
    pub availability: Option<PositiveDuration>,
    pub surge: Option<PositiveDuration>,
    pub warmup: Option<NonNegativeDuration>,
    pub migrate: Option<PositiveDuration>,
    pub upgrade: Option<PositiveDuration>,
    pub restart: Option<PositiveDuration>,
    pub ready: Option<PositiveDuration>,
    pub verify: Option<PositiveDuration>,
    pub monitor: Option<PositiveDuration>,
    pub rollback: Option<PositiveDuration>,
    pub rejoin: Option<PositiveDuration>,
    pub hold: Option<PositiveDuration>,
}

/// `[lock]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFragment {
    /// How long the lock stays valid without renewal.
    pub lease: Option<Written<PositiveDuration>>,
}

/// One `[[windows]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFragment {
    /// Week days (`mon` .. `sun`); empty or absent means every day.
    pub days: Option<Vec<Day>>,
    /// Opening time `HH:MM`.
    pub start: Option<LocalTime>,
    /// Closing time `HH:MM`; before `start` means the window ends the next day.
    pub end: Option<LocalTime>,
    /// IANA time zone; `UTC` when absent.
    pub timezone: Option<TimeZoneName>,
}

/// `[agent]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFragment {
    /// IP address the agent listens on (`0.0.0.0`: every address).
    pub listen: Option<ListenIp>,
    /// TCP port the agent listens on.
    pub port: Option<Port>,
    /// Directory of the swarm's node certificates (the default identity).
    pub certificates_dir: Option<String>,
    /// Operator-provided certificate (instead of the swarm's).
    pub cert: Option<String>,
    /// Operator-provided private key.
    pub key: Option<String>,
    /// Operator-provided CA bundle.
    pub ca: Option<String>,
    /// Plaintext gRPC, for labs only.
    pub insecure: Option<bool>,
    /// Where the agent keeps state that must survive its restarts (the fencing token).
    pub state_dir: Option<String>,
    /// A file holding the swarm's unlock key (an autolocked swarm); empty means none.
    pub unlock_key_file: Option<String>,
}

/// `[notify]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFragment {
    /// Slack-compatible webhook URL; empty means none.
    pub webhook: Option<HttpUrl>,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFragment {
    /// Where the agent serves /metrics (`ip:port`); empty means not at all.
    pub agent: Option<ListenAddr>,
    /// Where a running coordinator serves /metrics; empty means not at all.
    pub coordinator: Option<ListenAddr>,
}

/// `[gates]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesFragment {
    /// Prometheus' base URL (`http://prometheus:9090`); empty means no alert gate.
    pub prometheus_url: Option<HttpUrl>,
    /// A regular expression on alert names; empty means none.
    pub alert_filter: Option<AlertPattern>,
    /// `exclude` (matching alerts are ignored) or `include` (only they count).
    pub alert_filter_mode: Option<FilterModeName>,
    /// How long to wait for firing alerts to clear before a node, then give up.
    pub wait: Option<PositiveDuration>,
}

/// `[hooks]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksFragment {
    /// The command run before the node is drained (an absolute path); empty means none.
    pub before_drain: Option<HookCommand>,
    /// The command run after the node's verification; empty means none.
    pub after_verify: Option<HookCommand>,
    /// The command run once the node's part ended in failure; empty means none.
    pub on_failure: Option<HookCommand>,
    /// The longest one run of a hook may take.
    pub timeout: Option<PositiveDuration>,
}
