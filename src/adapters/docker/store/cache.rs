//! What this process last read or wrote of the run record, so that a load reads only the header
//! while no one else writes: the nodes' shards are written by the lock's holder alone, and any
//! other writer (a coordinator taking the lock over, `abort`, `unlock --force`) changes the
//! header. So while the header's text is the one this process last read or wrote, every shard is
//! as this process last read or wrote it. A write that finds a part changed (compare-and-swap)
//! forgets everything, and the next load reads every shard again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::lock::StoreDoc;
use crate::machine::NodeProgress;
use crate::ports::{ShardAt, StoreVersion};
use crate::run::Nodes;
use crate::store_layout::SHARD_NODES;

/// The record as last known, and a count of writes so that a whole read that raced a write of
/// this process's own is not kept (it may hold a shard from before that write).
#[derive(Debug, Default)]
pub(super) struct Cache {
    writes: u64,
    known: Option<Known>,
}

/// A record known part by part.
#[derive(Clone, Debug)]
pub(super) struct Known {
    /// The header's text.
    pub header_text: String,
    /// The header's document: the record without its run's nodes.
    pub head: StoreDoc,
    /// The run whose shards these are, and how many nodes it has.
    pub run: Option<(String, usize)>,
    /// Every shard, by number.
    pub shards: BTreeMap<usize, ShardAt>,
}

impl Cache {
    /// The record, if the stored header is still `header_text` and every shard is known.
    pub fn hit(&self, header_text: &str, index: u64) -> Option<(StoreDoc, StoreVersion)> {
        let known = self.known.as_ref().filter(|k| k.header_text == header_text)?;
        let mut doc = known.head.clone();
        if let (Some(run), Some((id, count))) = (doc.run.as_mut(), &known.run) {
            let shards = count.div_ceil(SHARD_NODES);
            let mut nodes: Vec<Arc<NodeProgress>> = Vec::with_capacity(*count);
            for k in 0..shards {
                nodes.extend(known.shards.get(&k)?.nodes.iter().cloned());
            }
            if nodes.len() != *count || run.id != *id {
                return None;
            }
            run.nodes = Nodes::from_shared(nodes);
        }
        let version = StoreVersion {
            header: index,
            header_text: known.header_text.clone(),
            run: known.run.as_ref().map(|(id, _)| id.clone()),
            shards: known.shards.clone(),
        };
        Some((doc, version))
    }

    /// A mark to give [`Cache::read`] for a whole read starting now.
    pub fn mark(&self) -> u64 {
        self.writes
    }

    /// Keeps a whole read, started at `mark`, unless this process wrote meanwhile.
    pub fn read(&mut self, mark: u64, known: Known) {
        if mark == self.writes {
            self.known = Some(known);
        }
    }

    /// Notes a write: the header (if written, with its document), and every shard of the run as
    /// it now is (those written with their new versions).
    pub fn wrote(
        &mut self,
        header: Option<(String, StoreDoc)>,
        run: Option<(String, usize)>,
        shards: BTreeMap<usize, ShardAt>,
    ) {
        self.writes += 1;
        let Some(known) = self.known.as_mut() else { return };
        if known.run.as_ref().map(|r| &r.0) != run.as_ref().map(|r| &r.0) {
            if header.is_none() {
                // A new run's shards without its header: the header is the commit point.
                self.known = None;
                return;
            }
            known.shards = BTreeMap::new();
        }
        known.run = run;
        known.shards.extend(shards);
        if let Some((text, head)) = header {
            known.header_text = text;
            known.head = head;
        }
    }

    /// Forgets everything: the next load reads the whole record.
    pub fn forget(&mut self) {
        self.writes += 1;
        self.known = None;
    }
}
