//! The lock and run record in the swarm's own Raft store: one label on the swarm's spec, written
//! with compare-and-swap on the swarm object's version index.
//!
//! Why the swarm spec rather than the labels of a dedicated zero-replica service: the swarm
//! object always exists on every manager and cannot be removed by a `docker service rm` or a stack
//! deploy with `--prune`; it needs no image; and operators find it with `docker swarm inspect`.
//! The price is that its version also moves on its own (CA and key rotation, `docker swarm
//! update`): such a write makes ours fail as out of sequence, and the coordinator re-reads and
//! re-applies its change, so nothing is lost, only retried.

use bollard::Docker;
use bollard::query_parameters::UpdateSwarmOptions;

use super::port_error;
use crate::lock::{SchemaError, StoreDoc};
use crate::ports::{PortError, StateStore, Versioned};

/// The swarm label that holds the document (JSON).
pub const STATE_LABEL: &str = "io.swarm-upgrade.state";

/// The store on the swarm spec's labels.
#[derive(Clone, Debug)]
pub struct SwarmLabelStore {
    docker: Docker,
}

impl SwarmLabelStore {
    /// A store through this client (which must talk to a manager).
    pub fn new(docker: Docker) -> Self {
        SwarmLabelStore { docker }
    }
}

fn parse(text: Option<&String>) -> Result<StoreDoc, PortError> {
    match text {
        None => Ok(StoreDoc::default()),
        Some(t) if t.is_empty() => Ok(StoreDoc::default()),
        Some(t) => StoreDoc::from_json(t).map_err(|e| match e {
            SchemaError::Newer { .. } => PortError::Failed(e.to_string()),
            SchemaError::Malformed(why) => PortError::Failed(format!(
                "the swarm label {STATE_LABEL} does not hold swarm-upgrade's state ({why}); look at it with `docker swarm inspect`, and remove it with `docker swarm update --label-rm {STATE_LABEL}` only if no run is in progress"
            )),
        }),
    }
}

impl StateStore for SwarmLabelStore {
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError> {
        let swarm =
            self.docker.inspect_swarm().await.map_err(|e| port_error("reading the swarm", e))?;
        let version = swarm.version.and_then(|v| v.index).unwrap_or(0);
        let doc = parse(
            swarm.spec.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.get(STATE_LABEL)),
        )?;
        Ok(Versioned { doc, version })
    }

    async fn save(&self, doc: &StoreDoc, version: u64) -> Result<(), PortError> {
        let swarm =
            self.docker.inspect_swarm().await.map_err(|e| port_error("reading the swarm", e))?;
        if swarm.version.and_then(|v| v.index) != Some(version) {
            return Err(PortError::Conflict);
        }
        let mut spec = swarm.spec.unwrap_or_default();
        let text = serde_json::to_string(doc)
            .map_err(|e| PortError::Failed(format!("encoding the state: {e}")))?;
        spec.labels.get_or_insert_with(Default::default).insert(STATE_LABEL.to_string(), text);
        // The engine checks `version` again: a write between our read and this one is refused.
        let options = UpdateSwarmOptions { version: version as i64, ..Default::default() };
        self.docker
            .update_swarm(spec, options)
            .await
            .map_err(|e| port_error("writing the state to the swarm", e))
    }
}
