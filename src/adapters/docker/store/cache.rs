//! What this process last read or wrote of the run record, so that a load need not read every
//! shard: a coordinator writes the nodes' shards only while it holds the lock, and whoever else
//! writes (a coordinator taking the lock over, `abort`, `unlock --force`) changes the header. So
//! while the header's text is the one this process last read or wrote, the shards are as this
//! process last read or wrote them, with one exception: a coordinator that lost the lock without
//! noticing may still land a shard write (shard writes are checked against their own version,
//! not the lock's token). Such a write is seen when this process next writes that shard (its
//! write is refused as out of sequence, everything is forgotten and read again), and at the
//! latest after [`FRESH_FOR`], when a load reads every shard again whatever the header says.

use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::lock::StoreDoc;
use crate::machine::NodeProgress;
use crate::ports::{ShardAt, StoreVersion};
use crate::run::Nodes;
use crate::store_layout::SHARD_NODES;

/// How long what a whole read found is trusted: at least this often, a load reads every shard.
pub const FRESH_FOR: Duration = Duration::from_secs(20);

/// The record as last known (and when it was last read whole), and a count of writes so that a
/// whole read that raced a write of this process's own is not kept (it may hold a shard from
/// before that write).
#[derive(Debug, Default)]
pub(super) struct Cache {
    writes: u64,
    known: Option<(Known, tokio::time::Instant)>,
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
        let (known, read_at) = self.known.as_ref()?;
        if known.header_text != header_text || read_at.elapsed() >= FRESH_FOR {
            return None;
        }
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
            self.known = Some((known, tokio::time::Instant::now()));
        }
    }

    /// Notes a write: the header (if written, with its document), the run, and the shards
    /// written with their new versions (every shard of a new run).
    pub fn wrote(
        &mut self,
        header: Option<(String, StoreDoc)>,
        run: Option<(String, usize)>,
        shards: BTreeMap<usize, ShardAt>,
    ) {
        self.writes += 1;
        let Some((known, _)) = self.known.as_mut() else {
            // Nothing known before: a new run written whole (its header included) is known now.
            if let Some((header_text, head)) = header {
                let known = Known { header_text, head, run, shards };
                self.known = Some((known, tokio::time::Instant::now()));
            }
            return;
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of 20 nodes (two shards) like the bundled one's, as known after a whole read.
    fn known(header_text: &str) -> (Known, StoreDoc) {
        let mut doc = StoreDoc::from_json(include_str!(
            "../../../../tests/fixtures/store/v1-interrupted.json"
        ))
        .expect("the fixture reads");
        let run = doc.run.as_mut().expect("a run");
        let like = run.nodes[0].clone();
        run.nodes = (0..20).map(|_| NodeProgress::clone(&like)).collect();
        let shard = |k: usize| {
            let nodes =
                run.nodes.as_slice()[k * SHARD_NODES..((k + 1) * SHARD_NODES).min(20)].to_vec();
            ShardAt { id: format!("config{k}"), index: 10 + k as u64, bytes: 100, nodes }
        };
        let shards = BTreeMap::from([(0, shard(0)), (1, shard(1))]);
        let head = crate::store_layout::head(&doc);
        let id = doc.run.as_ref().unwrap().id.clone();
        (Known { header_text: header_text.into(), head, run: Some((id, 20)), shards }, doc)
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_header_gives_the_record_until_it_changes_or_goes_stale() {
        let mut cache = Cache::default();
        let (k, doc) = known("h1");
        cache.read(cache.mark(), k);
        let (got, version) = cache.hit("h1", 7).expect("the same header");
        assert_eq!(got, doc);
        assert_eq!((version.header, version.shards[&1].index), (7, 11));
        assert!(cache.hit("h2", 8).is_none(), "a header someone else wrote");
        tokio::time::advance(FRESH_FOR).await;
        assert!(cache.hit("h1", 7).is_none(), "read whole again after FRESH_FOR");
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_read_that_raced_a_write_is_not_kept() {
        let mut cache = Cache::default();
        let mark = cache.mark();
        cache.forget();
        cache.read(mark, known("h1").0);
        assert!(cache.hit("h1", 7).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn writes_update_the_parts_they_wrote_and_a_new_run_without_its_header_forgets_all() {
        let mut cache = Cache::default();
        let (k, doc) = known("h1");
        let run = k.run.clone();
        cache.read(cache.mark(), k);
        // A step writes shard 1's new version; the renewer writes the header: both are kept.
        let mut changed = doc.clone();
        changed.run.as_mut().unwrap().nodes[17].hostname = "renamed".into();
        let nodes = changed.run.as_ref().unwrap().nodes.as_slice()[16..].to_vec();
        let shard = ShardAt { id: "config1".into(), index: 30, bytes: 100, nodes };
        cache.wrote(None, run.clone(), BTreeMap::from([(1, shard)]));
        let mut renewed = doc.clone();
        renewed.last_token += 1;
        cache.wrote(Some(("h2".into(), crate::store_layout::head(&renewed))), run, BTreeMap::new());
        let (got, version) = cache.hit("h2", 9).expect("the header this process wrote");
        assert_eq!(got.run.as_ref().unwrap().nodes[17].hostname, "renamed");
        assert_eq!(got.last_token, doc.last_token + 1);
        assert_eq!((version.shards[&0].index, version.shards[&1].index), (10, 30));
        // A new run's shards without its header (the commit point): nothing is known.
        cache.wrote(None, Some(("another".into(), 3)), BTreeMap::new());
        assert!(cache.hit("h2", 9).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_run_written_whole_is_known_and_a_missing_shard_is_read() {
        let mut cache = Cache::default();
        let (k, _) = known("h1");
        cache.wrote(Some(("h1".into(), k.head.clone())), k.run.clone(), k.shards.clone());
        assert!(cache.hit("h1", 3).is_some(), "every shard written: known");
        let mut cache = Cache::default();
        let one = BTreeMap::from([(0, k.shards[&0].clone())]);
        cache.wrote(Some(("h1".into(), k.head.clone())), k.run.clone(), one);
        assert!(cache.hit("h1", 3).is_none(), "shard 1 unknown: read whole");
    }
}
