//! How the store document is laid out so that every write stays small whatever the fleet's size:
//! a header (the lock and the run without its nodes) and the run's nodes in shards of
//! [`SHARD_NODES`]. A node's step rewrites its own shard only; the lock's renewal rewrites the
//! header only. Reasons are capped so that a node's record stays about a kilobyte or two.
//! Pure: the swarm adapter writes these texts ([`header`], [`shard_text`]) and the in-memory
//! cluster counts them; [`split`] lays out a whole document at once.

use std::sync::Arc;

use serde_json::Value;

use crate::lock::{SchemaError, StoreDoc};
use crate::machine::NodeProgress;

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

/// The longest attention (an `after_verify` hook's failure) a node's record keeps, in characters.
pub const ATTENTION_CHARS: usize = 300;

/// The longest hook command a node's record keeps, in characters.
pub const COMMAND_CHARS: usize = 120;

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

/// Splits a document into its header and shards, its reasons capped. Each shard is serialized
/// from its own nodes, so a split costs the document's size once (no copy of the whole run).
pub fn split(doc: &StoreDoc) -> Layout {
    let nodes = stored_nodes(doc);
    Layout {
        header: header(doc),
        run: doc.run.as_ref().map(|r| r.id.clone()),
        shards: nodes.chunks(SHARD_NODES).map(shard_text).collect(),
    }
}

/// The header's text: [`head`], with the number of nodes its shards hold.
pub fn header(doc: &StoreDoc) -> String {
    let mut value = serde_json::to_value(head(doc)).expect("store documents serialize");
    if let Some(r) = &doc.run {
        value[SHARDED] = r.nodes.len().into();
    }
    value.to_string()
}

/// The document without its run's nodes, the run's reason capped: what the header holds.
pub fn head(doc: &StoreDoc) -> StoreDoc {
    StoreDoc {
        schema: doc.schema,
        lock: doc.lock.clone(),
        last_token: doc.last_token,
        run: doc.run.as_ref().map(|r| {
            let mut head = r.without_nodes();
            cap(&mut head.reason, REASON_CHARS);
            head
        }),
    }
}

/// The run's nodes as they are stored: reasons and recoveries capped, each record shared with
/// `doc` where it fits (so this costs a reference count per node).
pub fn stored_nodes(doc: &StoreDoc) -> Vec<Arc<NodeProgress>> {
    let nodes = doc.run.as_ref().map_or(&[][..], |r| r.nodes.as_slice());
    nodes.iter().map(capped_node).collect()
}

/// A shard's text: its nodes as a JSON list.
pub fn shard_text(nodes: &[Arc<NodeProgress>]) -> String {
    let plain: Vec<&NodeProgress> = nodes.iter().map(|n| &**n).collect();
    serde_json::to_string(&plain).expect("node records serialize")
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

/// A node's record with its reason and attention cut to [`REASON_CHARS`] and its recovery to
/// [`RECOVERY_CHARS`] (shared as it is when all fit; its hooks' output is kept short already).
fn capped_node(n: &Arc<NodeProgress>) -> Arc<NodeProgress> {
    let long = |t: &Option<String>, chars: usize| t.as_ref().is_some_and(|t| t.len() > chars);
    let long_hook = |h: &crate::model::hooks::HookRun| {
        h.command.len() > COMMAND_CHARS || h.output.len() > crate::model::hooks::OUTPUT_KEPT + 3
    };
    if !long(&n.reason, REASON_CHARS)
        && !long(&n.recovery, RECOVERY_CHARS)
        && !long(&n.attention, ATTENTION_CHARS)
        && !n.hooks.iter().any(long_hook)
    {
        return Arc::clone(n);
    }
    let mut n = NodeProgress::clone(n);
    cap(&mut n.reason, REASON_CHARS);
    cap(&mut n.recovery, RECOVERY_CHARS);
    cap(&mut n.attention, ATTENTION_CHARS);
    for h in &mut n.hooks {
        let mut command = Some(std::mem::take(&mut h.command));
        cap(&mut command, COMMAND_CHARS);
        h.command = command.unwrap_or_default();
        h.output = crate::model::hooks::kept(&h.output);
    }
    Arc::new(n)
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
