//! The seams between decisions and the world: small traits the coordinator acts through. Real
//! adapters (Docker API, agents over gRPC, the Raft-backed store) implement them; tests use
//! in-memory fakes with the same semantics.
#![allow(async_fn_in_trait)]

use std::time::Duration;

use jiff::Timestamp;

use crate::lock::StoreDoc;
use crate::model::alerts::Alert;
use crate::model::hooks::{HookPoint, HookRun};
use crate::model::{
    AgentReport, Availability, ClusterSnapshot, NodeId, PackageSet, Role, ServiceId,
};

/// An error at a port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A compare-and-swap write lost against a newer version: re-read and retry.
    #[error("update out of sequence: the stored version moved on")]
    Conflict,
    /// The other side cannot be reached now; worth retrying.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The other side is busy (a node's apt lock held by another apt): nothing was changed; the
    /// same call is worth repeating later.
    #[error("{0}")]
    Busy(String),
    /// The other side refused an order fenced with a token older than the newest it has seen:
    /// this coordinator lost the lock and must stop.
    #[error("{0}")]
    Stale(String),
    /// The call itself was wrong (bad input, or a bug); nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// The operation was carried out and failed; retrying will not help.
    #[error("{0}")]
    Failed(String),
}

impl PortError {
    /// The kind as a short name (a metric label, a log field).
    pub fn kind(&self) -> &'static str {
        match self {
            PortError::Conflict => "conflict",
            PortError::Unavailable(_) => "unavailable",
            PortError::Busy(_) => "busy",
            PortError::Stale(_) => "stale",
            PortError::Invalid(_) => "invalid",
            PortError::Failed(_) => "failed",
        }
    }

    /// Whether the same call may succeed later: nothing was changed, and waiting (or, for a
    /// fenced write that lost, reading again and deciding again) may help.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, PortError::Unavailable(_) | PortError::Busy(_) | PortError::Conflict)
    }
}

/// The monitoring system the alert gate asks (see [`crate::model::alerts`]). A boxed future, so
/// that a coordinator holds one as a trait object only when a gate is configured.
pub trait Alerts: Send + Sync {
    /// Where it is, for people (the configured URL).
    fn source(&self) -> &str;
    /// The alerts firing now (not those still pending); [`PortError::Unavailable`] when it
    /// cannot be asked or its answer cannot be read.
    fn firing(&self) -> futures_util::future::BoxFuture<'_, Result<Vec<Alert>, PortError>>;
}

/// What a hook is run with, besides the node it runs on and the order's fence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookOrder {
    /// Where it runs.
    pub point: HookPoint,
    /// The run's target, as the hook is told it.
    pub target: String,
    /// Why the node failed (`on-failure` only; empty otherwise).
    pub reason: String,
}

/// The swarm, through a manager's Docker API.
///
/// Writes are fenced: each carries `at`, the version index of the object in the snapshot the
/// write was decided on ([`crate::model::Node::version`], [`crate::model::Service::version`]),
/// and is refused with [`PortError::Conflict`], changing nothing, if the object moved on since;
/// the caller then reads again and decides again.
pub trait Swarm {
    /// Nodes, services and tasks as they are now (agent reports left empty).
    async fn snapshot(&self) -> Result<ClusterSnapshot, PortError>;
    /// The part of the cluster `node`'s upgrade can change, as [`ClusterSnapshot::scoped`]
    /// describes it, read with filters: a poll costs the node's services, not the cluster.
    async fn scoped(
        &self,
        node: &NodeId,
        services: &[ServiceId],
    ) -> Result<ClusterSnapshot, PortError>;
    /// Sets a node's availability.
    async fn set_availability(
        &self,
        node: &NodeId,
        at: u64,
        availability: Availability,
    ) -> Result<(), PortError>;
    /// Sets a replicated service's replica count (absolute, so repeating it is harmless).
    async fn scale(&self, service: &ServiceId, at: u64, replicas: u64) -> Result<(), PortError>;
    /// Sets one label of a node (`None`: removes it), leaving its other labels as they were at `at`.
    async fn set_label(
        &self,
        node: &NodeId,
        at: u64,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), PortError>;
    /// Replaces a node's labels.
    async fn set_labels(
        &self,
        node: &NodeId,
        at: u64,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), PortError>;
    /// Removes a node entry that is down (the stale entry of a node that rejoined).
    async fn remove_node(&self, node: &NodeId) -> Result<(), PortError>;
    /// The join token for a role. Never log it.
    async fn join_token(&self, role: Role) -> Result<Secret, PortError>;
    /// The swarm's current unlock key (`None`: the swarm is not autolocked). Never log it.
    async fn unlock_key(&self) -> Result<Option<crate::model::UnlockKey>, PortError>;
}

/// A secret string that does not print itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Which agent to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTarget {
    /// The node's host name (for messages).
    pub hostname: String,
    /// The node's address.
    pub addr: String,
    /// The node's ID: its agent's certificate names it (TLS server name).
    pub node_id: String,
}

/// What makes an agent operation idempotent and fenced: a stale token is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpKey {
    /// Run ID.
    pub run_id: String,
    /// The coordinator's fencing token.
    pub token: u64,
    /// How long the order may take: the rest of its phase's time limit. The agent bounds its own
    /// work by it (a transient unit's runtime, a systemd job's wait), so nothing it starts
    /// outlives the coordinator's patience. `None`: no limit from the caller.
    pub limit: Option<Duration>,
}

/// Orders for a node that must join the swarm again.
#[derive(Clone, Debug)]
pub struct JoinOrder {
    /// Join token for the node's role.
    pub token: Secret,
    /// Managers' addresses (`host:2377`).
    pub managers: Vec<String>,
}

/// Whether a describe first refreshes the node's package lists (`apt-get update`, which a dead
/// mirror among the node's sources can make last minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lists {
    /// Refresh them: preflight does, once per node per run.
    Refresh,
    /// Read them as the last refresh left them: every later look (guards, polls).
    AsTheyAre,
}

/// How long an agent may take to describe its node (a refresh behind a dead mirror takes minutes
/// at worst): the coordinator gives up on it then, and the agent client bounds its call by it.
pub const DESCRIBE_LIMIT: Duration = Duration::from_secs(150);

/// The agents on the nodes.
pub trait Agents {
    /// Installed and available versions, repository health, disk, engine and swarm state.
    async fn describe(&self, node: &AgentTarget, lists: Lists) -> Result<AgentReport, PortError>;
    /// Downloads the exact package set without installing it.
    async fn prefetch(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError>;
    /// Installs the exact package set in one transaction (held afterwards); with `backup`
    /// (a manager), the engine's next start (its restart by the install, or the Restart
    /// phase's) first archives its swarm state.
    async fn upgrade(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
        backup: bool,
    ) -> Result<(), PortError>;
    /// Restarts docker.service and waits for the job's result.
    async fn restart_engine(&self, node: &AgentTarget, op: &OpKey) -> Result<(), PortError>;
    /// Restarts docker.service once more under the same fence (a node that stays Down after its
    /// restart): not answered from the memory of [`Agents::restart_engine`]'s order.
    async fn restart_engine_again(&self, node: &AgentTarget, op: &OpKey) -> Result<(), PortError> {
        self.restart_engine(node, op).await
    }
    /// Runs the node's own hook at `hook.point` (see [`crate::model::hooks`]) and returns how it
    /// went; `None` when the node configures none there. A failed hook is a result, not an error.
    async fn run_hook(
        &self,
        node: &AgentTarget,
        hook: &HookOrder,
        op: &OpKey,
    ) -> Result<Option<HookRun>, PortError>;
    /// Reinstalls the previous set and restarts the engine.
    async fn rollback(
        &self,
        node: &AgentTarget,
        previous: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError>;
    /// Leaves the swarm (forced) and joins again; returns the new node ID.
    async fn rejoin(
        &self,
        node: &AgentTarget,
        order: &JoinOrder,
        op: &OpKey,
    ) -> Result<NodeId, PortError>;
}

/// Where a stored document was read, part by part (see [`crate::store_layout`]): a write
/// rewrites only the parts it changed, each only if it is still as it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreVersion {
    /// The version index of the object holding the header (a store kept whole: the document's).
    pub header: u64,
    /// The header's text as read.
    pub header_text: String,
    /// The run whose shards were read.
    pub run: Option<String>,
    /// Each shard as read, by number.
    pub shards: std::collections::BTreeMap<usize, ShardAt>,
}

impl StoreVersion {
    /// The version of a store kept whole, at version index `index`.
    pub fn whole(index: u64) -> Self {
        StoreVersion { header: index, ..StoreVersion::default() }
    }
}

/// One shard as read (or as last written by this process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardAt {
    /// The ID of the object holding it.
    pub id: String,
    /// Its version index.
    pub index: u64,
    /// The size of its text in bytes.
    pub bytes: usize,
    /// The nodes it holds, shared with the document read: a write of that document leaves the
    /// shard alone when they are still the same records.
    pub nodes: Vec<std::sync::Arc<crate::machine::NodeProgress>>,
}

/// A document with where it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The document.
    pub doc: T,
    /// What a write of it must find unchanged (compare-and-swap).
    pub version: StoreVersion,
}

/// The compare-and-swap store in the swarm's Raft log.
pub trait StateStore {
    /// Reads the document and its version.
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError>;
    /// Writes it if the version is still `version`; [`PortError::Conflict`] otherwise.
    async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError>;
}

/// Time, so tests can control it.
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;
    /// Time since some fixed start of this process, never going back: what a lease takeover is
    /// judged on (wall clocks of managers differ, and jump).
    fn mono(&self) -> Duration;
    /// Waits.
    async fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn mono(&self) -> Duration {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// Conflicts are expected (an `abort`, a key rotation moving the swarm's version); give up only
/// when the store keeps moving for this many attempts.
pub(crate) const CAS_ATTEMPTS: u32 = 30;

/// Read-modify-write of the store with compare-and-swap: `f` is applied to the freshest document
/// and written back at the version it was read at; on a conflict the document is read again and
/// `f` applied again, so no concurrent write is ever lost. A short unavailability of the store
/// (the local engine restarting) is ridden out.
pub async fn update_doc<S: StateStore, C: Clock, T, E: From<PortError>>(
    store: &S,
    clock: &C,
    mut f: impl FnMut(&mut StoreDoc) -> Result<T, E>,
) -> Result<T, E> {
    let mut delay = Duration::from_millis(20);
    let (mut conflicts, mut unavailable) = (0, Duration::ZERO);
    loop {
        let mut current = load_doc(store, clock).await?;
        let out = f(&mut current.doc)?;
        match store.save(&current.doc, &current.version).await {
            Ok(()) => return Ok(out),
            Err(PortError::Conflict) if conflicts < CAS_ATTEMPTS => {
                conflicts += 1;
                clock.sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(PortError::Conflict) => {
                return Err(PortError::Unavailable(format!(
                    "the store kept changing under {CAS_ATTEMPTS} attempts to write it"
                ))
                .into());
            }
            Err(PortError::Unavailable(e)) if unavailable < STORE_PATIENCE => {
                if unavailable.is_zero() {
                    tracing::warn!(error = %e, "writing the store: waiting for the swarm");
                }
                clock.sleep(Duration::from_secs(1)).await;
                unavailable += Duration::from_secs(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long the store may be unavailable (a manager's engine restarting, a leader election)
/// before a read or write gives up.
pub(crate) const STORE_PATIENCE: Duration = Duration::from_secs(120);

/// Reads the store, riding out up to [`STORE_PATIENCE`] of unavailability.
pub(crate) async fn load_doc<S: StateStore, C: Clock>(
    store: &S,
    clock: &C,
) -> Result<Versioned<StoreDoc>, PortError> {
    let mut waited = Duration::ZERO;
    loop {
        match store.load().await {
            Ok(v) => return Ok(v),
            Err(PortError::Unavailable(e)) if waited >= STORE_PATIENCE => {
                return Err(PortError::Unavailable(format!("{e} (for {}s)", waited.as_secs())));
            }
            Err(PortError::Unavailable(e)) => {
                if waited.is_zero() {
                    tracing::warn!(error = %e, "reading the store: waiting for the swarm");
                }
                clock.sleep(Duration::from_secs(1)).await;
                waited += Duration::from_secs(1);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store that is unavailable for its first `down` writes, then loses `races` writes to
    /// another writer (who adds 100 to `last_token` each time).
    struct Flaky {
        state: Mutex<(StoreDoc, u64, u32, u32)>,
    }

    impl Flaky {
        fn new(down: u32, races: u32) -> Self {
            Flaky { state: Mutex::new((StoreDoc::default(), 1, down, races)) }
        }
    }

    impl StateStore for Flaky {
        async fn load(&self) -> Result<Versioned<StoreDoc>, PortError> {
            let s = self.state.lock().unwrap();
            Ok(Versioned { doc: s.0.clone(), version: StoreVersion::whole(s.1) })
        }

        async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
            let mut s = self.state.lock().unwrap();
            if s.2 > 0 {
                s.2 -= 1;
                return Err(PortError::Unavailable("engine restarting".into()));
            }
            if s.3 > 0 {
                s.3 -= 1;
                s.0.last_token += 100;
                s.1 += 1;
            }
            if version.header != s.1 {
                return Err(PortError::Conflict);
            }
            s.0 = doc.clone();
            s.1 += 1;
            Ok(())
        }
    }

    async fn bump(store: &Flaky) -> Result<u64, PortError> {
        update_doc(store, &SystemClock, |d| {
            d.last_token += 1;
            Ok::<_, PortError>(d.last_token)
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writes_are_kept_and_ours_reapplied() {
        let store = Flaky::new(0, 5);
        assert_eq!(bump(&store).await, Ok(501));
        assert_eq!(store.state.lock().unwrap().0.last_token, 501);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarting_engine_is_waited_for_then_given_up_on() {
        let store = Flaky::new(90, 0);
        assert_eq!(bump(&store).await, Ok(1), "90 s of unavailability is ridden out");
        let store = Flaky::new(500, 0);
        let t0 = tokio::time::Instant::now();
        assert!(matches!(bump(&store).await, Err(PortError::Unavailable(_))));
        assert_eq!(
            t0.elapsed().as_secs(),
            STORE_PATIENCE.as_secs(),
            "gives up after the patience, not before"
        );
    }
}
