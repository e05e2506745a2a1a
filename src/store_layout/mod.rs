//! How the store document is laid out so that every write stays small whatever the fleet's size:
//! a header (the lock and the run without its nodes) and the run's nodes in shards of
//! [`SHARD_NODES`]. A node's step rewrites its own shard only; the lock's renewal rewrites the
//! header only. Reasons are capped so that a node's record stays about a kilobyte or two.
//! Pure: the swarm adapter and the in-memory cluster store the same texts.

use serde_json::Value;

use crate::lock::{SchemaError, StoreDoc};

/// Nodes per shard.
pub const SHARD_NODES: usize = 16;

/// The most a single write may carry (a header or a shard). swarmkit refuses any Raft proposal
/// over 1.5 MiB, the swarm object's own fields included; this leaves it far behind. A node's
/// record is about 1 KiB (see the tests), up to 6 KiB for a node left failed with the longest
/// reason and recovery: a shard stays within the budget unless most of its nodes were left failed
/// (a run stops at its first).
pub const WRITE_BUDGET: usize = 64 * 1024;

/// The longest reason kept (longer ones are cut, marked with `…`).
pub const REASON_CHARS: usize = 1024;

/// The longest recovery kept: the exact steps for a node left failed, which an operator needs whole.
pub const RECOVERY_CHARS: usize = 4096;

/// The header's key naming how many nodes the shards hold.
const SHARDED: &str = "sharded_nodes";

/// The document as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The header: the document with the run's nodes left out.
    pub header: String,
    /// The run whose nodes the shards hold.
    pub run: Option<String>,
    /// The run's nodes, [`SHARD_NODES`] per shard, in order.
    pub shards: Vec<String>,
}

/// Splits a document into its header and shards, its reasons capped.
pub fn split(doc: &StoreDoc) -> Layout {
    let mut value = serde_json::to_value(capped(doc)).expect("store documents serialize");
    let nodes = value.get_mut("run").filter(|r| r.is_object()).map(|run| run["nodes"].take());
    let shards: Vec<String> = match &nodes {
        Some(Value::Array(nodes)) => {
            value["run"]["nodes"] = Value::Array(Vec::new());
            value[SHARDED] = nodes.len().into();
            nodes.chunks(SHARD_NODES).map(|c| Value::from(c.to_vec()).to_string()).collect()
        }
        _ => Vec::new(),
    };
    Layout { header: value.to_string(), run: doc.run.as_ref().map(|r| r.id.clone()), shards }
}

/// What a header says about its shards: the run they belong to and how many there are (`None`
/// for a header without shards: no run, or a document written whole by an older build).
pub fn shards_of(header: &str) -> Result<Option<(String, usize)>, SchemaError> {
    let value: Value =
        serde_json::from_str(header).map_err(|e| SchemaError::Malformed(e.to_string()))?;
    let Some(nodes) = value.get(SHARDED).and_then(Value::as_u64) else { return Ok(None) };
    let run = value["run"]["id"]
        .as_str()
        .ok_or_else(|| SchemaError::Malformed("sharded nodes without a run".into()))?;
    Ok(Some((run.to_string(), (nodes as usize).div_ceil(SHARD_NODES))))
}

/// Joins a header and its shards (`shard(k)` gives shard `k`'s text) into the document.
pub fn join(
    header: &str,
    mut shard: impl FnMut(usize) -> Option<String>,
) -> Result<StoreDoc, SchemaError> {
    let mut value: Value =
        serde_json::from_str(header).map_err(|e| SchemaError::Malformed(e.to_string()))?;
    if let Some((run, count)) = shards_of(header)? {
        let mut nodes = Vec::new();
        for k in 0..count {
            let text = shard(k).ok_or_else(|| {
                SchemaError::Malformed(format!("shard {k} of run {run}'s record is missing"))
            })?;
            match serde_json::from_str(&text) {
                Ok(Value::Array(part)) => nodes.extend(part),
                _ => {
                    return Err(SchemaError::Malformed(format!(
                        "shard {k} of run {run}'s record is not a list of nodes"
                    )));
                }
            }
        }
        value["run"]["nodes"] = Value::Array(nodes);
        value.as_object_mut().expect("a header is an object").remove(SHARDED);
    }
    StoreDoc::from_json(&value.to_string())
}

/// The document with every reason cut to [`REASON_CHARS`].
fn capped(doc: &StoreDoc) -> StoreDoc {
    let mut doc = doc.clone();
    if let Some(run) = doc.run.as_mut() {
        cap(&mut run.reason, REASON_CHARS);
        for n in &mut run.nodes {
            cap(&mut n.reason, REASON_CHARS);
            cap(&mut n.recovery, RECOVERY_CHARS);
        }
    }
    doc
}

fn cap(text: &mut Option<String>, chars: usize) {
    if let Some(t) = text.as_mut()
        && t.chars().count() > chars
    {
        *t = t.chars().take(chars - 1).chain(['…']).collect();
    }
}

#[cfg(test)]
mod tests;
