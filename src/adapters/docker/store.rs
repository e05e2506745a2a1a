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

mod cache;
mod shards;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::query_parameters::UpdateSwarmOptions;

use super::port_error;
use crate::lock::{SchemaError, StoreDoc};
use crate::machine::NodeProgress;
use crate::metrics;
use crate::ports::{PortError, ShardAt, StateStore, StoreVersion, Versioned};
use crate::store_layout::{self, SHARD_NODES, WRITE_BUDGET};
pub use cache::FRESH_FOR;
use cache::{Cache, Known};
pub use shards::RUN_LABEL;

/// The swarm label that holds the header (JSON).
pub const STATE_LABEL: &str = "io.swarm-upgrade.state";

/// The store on the swarm spec's labels and configs' labels. Clones share what was last read
/// and written (see [`cache`]).
#[derive(Clone, Debug)]
pub struct SwarmLabelStore {
    docker: Docker,
    cache: Arc<Mutex<Cache>>,
}

impl SwarmLabelStore {
    /// A store through this client (which must talk to a manager).
    pub fn new(docker: Docker) -> Self {
        SwarmLabelStore { docker, cache: Arc::default() }
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

/// The sizes of the shards of `doc`'s run (not of shards past its nodes: leftovers).
fn shard_bytes<'a>(
    shards: &'a BTreeMap<usize, ShardAt>,
    doc: &StoreDoc,
) -> impl Iterator<Item = usize> + 'a {
    let count = doc.run.as_ref().map_or(0, |r| r.nodes.len().div_ceil(SHARD_NODES));
    shards.range(..count).map(|(_, s)| s.bytes)
}

/// Sets `swarm_upgrade_store_bytes` to a record's header and shards (their sizes).
fn stored(header: &str, shards: impl Iterator<Item = usize>) {
    let bytes = header.len() + shards.sum::<usize>();
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
        let index = swarm.version.and_then(|v| v.index).unwrap_or(0);
        let header_text = swarm
            .spec
            .and_then(|s| s.labels)
            .and_then(|mut l| l.remove(STATE_LABEL))
            .unwrap_or_default();
        if header_text.is_empty() {
            metrics::inc(metrics::STORE_LOADS, &[("read", "header")]);
            self.cache().forget();
            stored("", std::iter::empty());
            let version = StoreVersion { header: index, ..StoreVersion::default() };
            return Ok(Versioned { doc: StoreDoc::default(), version });
        }
        let hit = self.cache().hit(&header_text, index);
        if let Some((doc, version)) = hit {
            metrics::inc(metrics::STORE_LOADS, &[("read", "header")]);
            stored(&header_text, shard_bytes(&version.shards, &doc));
            return Ok(Versioned { doc, version });
        }
        self.read_whole(header_text, index).await
    }

    async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
        // Forgets what is known unless the write completes: a failed write, or one abandoned
        // half done (its future dropped when the lease is lost), leaves parts unknown.
        struct Unless<'a>(&'a SwarmLabelStore, bool);
        impl Drop for Unless<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.cache().forget();
                }
            }
        }
        let mut guard = Unless(self, false);
        let out = self.write(doc, version).await;
        guard.1 = out.is_ok();
        out
    }
}

impl SwarmLabelStore {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads every shard the header names and joins them (and keeps what was read).
    async fn read_whole(
        &self,
        header_text: String,
        index: u64,
    ) -> Result<Versioned<StoreDoc>, PortError> {
        let mark = self.cache().mark();
        let mut version = StoreVersion { header: index, header_text, ..StoreVersion::default() };
        let run = store_layout::shards_of(&version.header_text).map_err(schema_error)?;
        let read = if run.is_some() { "whole" } else { "header" };
        metrics::inc(metrics::STORE_LOADS, &[("read", read)]);
        let texts = match &run {
            Some((run, _)) => shards::read(&self.docker, run).await?,
            None => BTreeMap::new(),
        };
        let doc =
            store_layout::join(&version.header_text, |k| texts.get(&k).map(|s| s.text.clone()))
                .map_err(schema_error)?;
        let nodes = doc.run.as_ref().map_or(&[][..], |r| r.nodes.as_slice());
        version.shards = shard_map(texts, nodes);
        stored(&version.header_text, shard_bytes(&version.shards, &doc));
        if let Some((id, _)) = &run {
            version.run = Some(id.clone());
            let known = Known {
                header_text: version.header_text.clone(),
                head: store_layout::head(&doc),
                run: Some((id.clone(), nodes.len())),
                shards: version.shards.clone(),
            };
            self.cache().read(mark, known);
        }
        Ok(Versioned { doc, version })
    }

    /// Writes the parts of `doc` that differ from what `version` read: changed shards first, the
    /// header last (the commit point).
    async fn write(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
        let header = store_layout::header(doc);
        let nodes = store_layout::stored_nodes(doc);
        let run = doc.run.as_ref().map(|r| r.id.clone());
        let new_run = run != version.run;
        // A new run's shards may be left from an attempt whose header write lost: reuse them.
        let known = match &run {
            Some(id) if new_run => leftovers(shards::read(&self.docker, id).await?),
            _ => version.shards.clone(),
        };
        let mut now = BTreeMap::new();
        for (k, chunk) in nodes.chunks(SHARD_NODES).enumerate() {
            let at = known.get(&k);
            if at.is_some_and(|s| s.nodes == chunk) {
                if new_run {
                    now.insert(k, at.expect("checked").clone());
                }
                continue;
            }
            let text = store_layout::shard_text(chunk);
            within_budget(&format!("shard {k}"), &text)?;
            let id = run.as_deref().expect("shards belong to a run");
            let at = at.map(|s| (s.id.as_str(), s.index));
            let (id, index) = shards::write(&self.docker, id, k, &text, at).await?;
            written("shard", &text);
            now.insert(k, ShardAt { id, index, bytes: text.len(), nodes: chunk.to_vec() });
        }
        let header_written = header != version.header_text;
        if header_written {
            within_budget("header", &header)?;
            self.write_header(&header, version.header).await?;
            if new_run {
                shards::remove_others(&self.docker, run.as_deref()).await;
            }
        }
        let count = nodes.len().div_ceil(SHARD_NODES);
        stored(&header, (0..count).filter_map(|k| now.get(&k).or(known.get(&k)).map(|s| s.bytes)));
        let head = header_written.then(|| (header, store_layout::head(doc)));
        self.cache().wrote(head, run.map(|id| (id, nodes.len())), now);
        Ok(())
    }
}

/// Shards as read, each with its share of `nodes` (the document joined from them).
fn shard_map(
    texts: BTreeMap<usize, shards::Stored>,
    nodes: &[Arc<NodeProgress>],
) -> BTreeMap<usize, ShardAt> {
    texts
        .into_iter()
        .map(|(k, s)| {
            let part = |i: usize| (i * SHARD_NODES).min(nodes.len());
            let nodes = nodes[part(k)..part(k + 1)].to_vec();
            (k, ShardAt { id: s.id, index: s.index, bytes: s.text.len(), nodes })
        })
        .collect()
}

/// Shards left by an attempt at a run whose header write lost, each with the nodes it holds
/// (none if they do not read: such a shard is written over).
fn leftovers(texts: BTreeMap<usize, shards::Stored>) -> BTreeMap<usize, ShardAt> {
    texts
        .into_iter()
        .map(|(k, s)| {
            let nodes: Vec<NodeProgress> = serde_json::from_str(&s.text).unwrap_or_default();
            let nodes = nodes.into_iter().map(Arc::new).collect();
            (k, ShardAt { id: s.id, index: s.index, bytes: s.text.len(), nodes })
        })
        .collect()
}
