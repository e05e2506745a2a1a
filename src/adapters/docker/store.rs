//! The lock and run record in the swarm's own Raft store, laid out by [`crate::store_layout`]:
//! the header in one label on the swarm's spec, the run's nodes in shards, each in the labels of
//! a swarm config of its own (configs are kept by every manager, need no image, and their labels
//! can be updated with compare-and-swap). Each part is written with compare-and-swap on its own
//! object's version index, shards first and the header last: the header is the commit point,
//! and shards its header does not name (a run whose first write lost) are removed or reused.
//!
//! Why the swarm spec rather than the labels of a dedicated zero-replica service: the swarm
//! object always exists on every manager and cannot be removed by a `docker service rm` or a stack
//! deploy with `--prune`; it needs no image; and operators find it with `docker swarm inspect`.
//! The price is that its version also moves on its own (CA and key rotation, `docker swarm
//! update`): such a write makes ours fail as out of sequence, and the coordinator re-reads and
//! re-applies its change, so nothing is lost, only retried.

mod shards;

use bollard::Docker;
use bollard::query_parameters::UpdateSwarmOptions;

use super::port_error;
use crate::lock::{SchemaError, StoreDoc};
use crate::metrics;
use crate::ports::{PortError, StateStore, StoreVersion, Versioned};
use crate::store_layout::{self, WRITE_BUDGET};
pub use shards::RUN_LABEL;

/// The swarm label that holds the header (JSON).
pub const STATE_LABEL: &str = "io.swarm-upgrade.state";

/// The store on the swarm spec's labels and configs' labels.
#[derive(Clone, Debug)]
pub struct SwarmLabelStore {
    docker: Docker,
}

impl SwarmLabelStore {
    /// A store through this client (which must talk to a manager).
    pub fn new(docker: Docker) -> Self {
        SwarmLabelStore { docker }
    }

    async fn write_header(&self, text: &str, index: u64) -> Result<(), PortError> {
        super::sent("store inspect_swarm");
        let swarm =
            self.docker.inspect_swarm().await.map_err(|e| port_error("reading the swarm", e))?;
        if swarm.version.and_then(|v| v.index) != Some(index) {
            return Err(PortError::Conflict);
        }
        let mut spec = swarm.spec.unwrap_or_default();
        spec.labels.get_or_insert_with(Default::default).insert(STATE_LABEL.into(), text.into());
        // The engine checks `version` again: a write between our read and this one is refused.
        let options = UpdateSwarmOptions { version: index as i64, ..Default::default() };
        super::sent("store update_swarm");
        self.docker
            .update_swarm(spec, options)
            .await
            .map_err(|e| port_error("writing the state to the swarm", e))?;
        written("header", text);
        Ok(())
    }
}

/// Counts a part written (`swarm_upgrade_store_writes_total` and `..._written_bytes_total`).
fn written(part: &str, text: &str) {
    metrics::inc(metrics::STORE_WRITES, &[("part", part)]);
    metrics::add(metrics::STORE_WRITTEN_BYTES, &[], text.len() as u64);
}

/// Sets `swarm_upgrade_store_bytes` to a record's header and shards.
fn stored<'a>(header: &str, shards: impl Iterator<Item = &'a str>) {
    let bytes = header.len() + shards.map(str::len).sum::<usize>();
    metrics::set(metrics::STORE_BYTES, &[], i64::try_from(bytes).unwrap_or(i64::MAX));
}

fn schema_error(e: SchemaError) -> PortError {
    match e {
        SchemaError::Newer { .. } => PortError::Failed(e.to_string()),
        SchemaError::Malformed(why) => PortError::Failed(format!(
            "the swarm label {STATE_LABEL} and the configs labelled {RUN_LABEL} do not hold swarm-upgrade's state ({why}); look at them with `docker swarm inspect` and `docker config ls`, and remove the label with `docker swarm update --label-rm {STATE_LABEL}` only if no run is in progress"
        )),
    }
}

/// Refuses a part over [`WRITE_BUDGET`] (a node record grown past any expected size).
fn within_budget(what: &str, text: &str) -> Result<(), PortError> {
    if text.len() > WRITE_BUDGET {
        return Err(PortError::Failed(format!(
            "the {what} of the run record is {} bytes, over the {WRITE_BUDGET}-byte budget of a store write; this is a bug, please report it with `swarm-upgrade status --json`",
            text.len()
        )));
    }
    Ok(())
}

impl StateStore for SwarmLabelStore {
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError> {
        super::sent("store inspect_swarm");
        let swarm =
            self.docker.inspect_swarm().await.map_err(|e| port_error("reading the swarm", e))?;
        let header_text = swarm
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(STATE_LABEL))
            .cloned()
            .unwrap_or_default();
        let mut version = StoreVersion {
            header: swarm.version.and_then(|v| v.index).unwrap_or(0),
            header_text,
            ..StoreVersion::default()
        };
        if version.header_text.is_empty() {
            stored("", std::iter::empty());
            return Ok(Versioned { doc: StoreDoc::default(), version });
        }
        if let Some((run, _)) =
            store_layout::shards_of(&version.header_text).map_err(schema_error)?
        {
            version.shards = shards::read(&self.docker, &run).await?;
            version.run = Some(run);
        }
        let doc = store_layout::join(&version.header_text, |k| {
            version.shards.get(&k).map(|s| s.text.clone())
        })
        .map_err(schema_error)?;
        stored(&version.header_text, version.shards.values().map(|s| s.text.as_str()));
        Ok(Versioned { doc, version })
    }

    async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
        let layout = store_layout::split(doc);
        // A new run's shards may be left from an attempt whose header write lost: reuse them.
        let known = match &layout.run {
            Some(run) if layout.run != version.run => shards::read(&self.docker, run).await?,
            _ => version.shards.clone(),
        };
        for (k, text) in layout.shards.iter().enumerate() {
            if known.get(&k).is_some_and(|s| store_layout::same_shard(&s.text, text)) {
                continue;
            }
            within_budget(&format!("shard {k}"), text)?;
            let run = layout.run.as_deref().expect("shards belong to a run");
            shards::write(&self.docker, run, k, text, known.get(&k)).await?;
            written("shard", text);
        }
        if layout.header != version.header_text {
            within_budget("header", &layout.header)?;
            self.write_header(&layout.header, version.header).await?;
            if layout.run != version.run {
                shards::remove_others(&self.docker, layout.run.as_deref()).await;
            }
        }
        stored(&layout.header, layout.shards.iter().map(String::as_str));
        Ok(())
    }
}
