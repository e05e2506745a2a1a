//! The seams between decisions and the world: small traits the coordinator acts through. Real
//! adapters (Docker API, agents over gRPC, the Raft-backed store) implement them; tests use
//! in-memory fakes with the same semantics.
#![allow(async_fn_in_trait)]

use std::time::Duration;

use jiff::Timestamp;

use crate::lock::StoreDoc;
use crate::model::{AgentReport, Availability, ClusterSnapshot, NodeId, PackageSet, Role, ServiceId};

/// An error at a port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A compare-and-swap write lost against a newer version: re-read and retry.
    #[error("update out of sequence: the stored version moved on")]
    Conflict,
    /// The other side cannot be reached now; worth retrying.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The operation was carried out and failed; retrying will not help.
    #[error("{0}")]
    Failed(String),
}

/// The swarm, through a manager's Docker API.
pub trait Swarm {
    /// Nodes, services and tasks as they are now (agent reports left empty).
    async fn snapshot(&self) -> Result<ClusterSnapshot, PortError>;
    /// Sets a node's availability (read-modify-write of its spec at its version).
    async fn set_availability(&self, node: &NodeId, availability: Availability) -> Result<(), PortError>;
    /// Sets a replicated service's replica count (absolute, so repeating it is harmless).
    async fn scale(&self, service: &ServiceId, replicas: u64) -> Result<(), PortError>;
    /// Replaces a node's labels.
    async fn set_labels(&self, node: &NodeId, labels: &std::collections::BTreeMap<String, String>) -> Result<(), PortError>;
    /// Removes a node entry that is down (the stale entry of a node that rejoined).
    async fn remove_node(&self, node: &NodeId) -> Result<(), PortError>;
    /// The join token for a role. Never log it.
    async fn join_token(&self, role: Role) -> Result<Secret, PortError>;
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
}

/// Orders for a node that must join the swarm again.
#[derive(Clone, Debug)]
pub struct JoinOrder {
    /// Join token for the node's role.
    pub token: Secret,
    /// Managers' addresses (`host:2377`).
    pub managers: Vec<String>,
}

/// The agents on the nodes.
pub trait Agents {
    /// Installed and available versions, repository health, disk, engine and swarm state.
    async fn describe(&self, node: &AgentTarget) -> Result<AgentReport, PortError>;
    /// Downloads the exact package set without installing it.
    async fn prefetch(&self, node: &AgentTarget, packages: &PackageSet, op: &OpKey) -> Result<(), PortError>;
    /// Installs the exact package set in one transaction (held afterwards).
    async fn upgrade(&self, node: &AgentTarget, packages: &PackageSet, op: &OpKey) -> Result<(), PortError>;
    /// Restarts docker.service and waits for the job's result.
    async fn restart_engine(&self, node: &AgentTarget, op: &OpKey) -> Result<(), PortError>;
    /// Reinstalls the previous set and restarts the engine.
    async fn rollback(&self, node: &AgentTarget, previous: &PackageSet, op: &OpKey) -> Result<(), PortError>;
    /// Leaves the swarm (forced) and joins again; returns the new node ID.
    async fn rejoin(&self, node: &AgentTarget, order: &JoinOrder, op: &OpKey) -> Result<NodeId, PortError>;
}

/// A document with the version index it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The document.
    pub doc: T,
    /// Version index for compare-and-swap.
    pub version: u64,
}

/// The compare-and-swap store in the swarm's Raft log.
pub trait StateStore {
    /// Reads the document and its version.
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError>;
    /// Writes it if the version is still `version`; [`PortError::Conflict`] otherwise.
    async fn save(&self, doc: &StoreDoc, version: u64) -> Result<(), PortError>;
}

/// Time, so tests can control it.
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;
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

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// Conflicts are expected (an `abort`, a key rotation moving the swarm's version); give up only
/// when the store keeps moving for this many attempts.
pub const CAS_ATTEMPTS: u32 = 30;

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
    for _ in 0..CAS_ATTEMPTS {
        let mut current = load_doc(store, clock).await?;
        let out = f(&mut current.doc)?;
        match store.save(&current.doc, current.version).await {
            Ok(()) => return Ok(out),
            Err(PortError::Conflict) | Err(PortError::Unavailable(_)) => {
                clock.sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PortError::Unavailable(format!("the store kept changing under {CAS_ATTEMPTS} attempts to write it")).into())
}

/// Reads the store, riding out up to two minutes of unavailability.
pub async fn load_doc<S: StateStore, C: Clock>(store: &S, clock: &C) -> Result<Versioned<StoreDoc>, PortError> {
    let mut last = String::new();
    for _ in 0..120 {
        match store.load().await {
            Ok(v) => return Ok(v),
            Err(PortError::Unavailable(e)) => {
                last = e;
                clock.sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(PortError::Unavailable(last))
}
