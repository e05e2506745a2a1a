//! A run's node records, each behind a shared pointer: a copy of a run (every store read hands
//! one out) costs a reference count per node rather than a deep copy, and a store can tell the
//! records a step changed from those it did not by their allocation (see [`Nodes::same_at`]).
//! A record is copied only when it is written while shared (`Arc::make_mut`).

use std::ops::{Deref, Index, IndexMut};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::machine::NodeProgress;

/// The nodes of a run, in order. Reads see `NodeProgress`; `nodes[i]` may be written in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodes(Vec<Arc<NodeProgress>>);

impl Nodes {
    /// Nodes from records shared with others.
    pub fn from_shared(nodes: Vec<Arc<NodeProgress>>) -> Self {
        Nodes(nodes)
    }

    /// Adds a node at the end.
    pub fn push(&mut self, node: NodeProgress) {
        self.0.push(Arc::new(node));
    }

    /// Keeps the first `len` nodes.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// Every node, shared.
    pub fn as_slice(&self) -> &[Arc<NodeProgress>] {
        &self.0
    }

    /// Every node, to be written (each shared one is copied first).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut NodeProgress> {
        self.0.iter_mut().map(Arc::make_mut)
    }

    /// Whether the nodes `range` of `self` and of `other` are the very same records (no write
    /// since one was copied from the other): a cheap "unchanged" that never says so wrongly.
    pub fn same_at(&self, other: &Nodes, range: std::ops::Range<usize>) -> bool {
        match (self.0.get(range.clone()), other.0.get(range)) {
            (Some(a), Some(b)) => a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b)),
            _ => false,
        }
    }

    /// Replaces node `i` with `node` (shared with whoever holds it).
    pub fn set_shared(&mut self, i: usize, node: Arc<NodeProgress>) {
        self.0[i] = node;
    }
}

impl Deref for Nodes {
    type Target = [Arc<NodeProgress>];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Index<usize> for Nodes {
    type Output = NodeProgress;
    fn index(&self, i: usize) -> &NodeProgress {
        &self.0[i]
    }
}

impl IndexMut<usize> for Nodes {
    fn index_mut(&mut self, i: usize) -> &mut NodeProgress {
        Arc::make_mut(&mut self.0[i])
    }
}

impl FromIterator<NodeProgress> for Nodes {
    fn from_iter<I: IntoIterator<Item = NodeProgress>>(iter: I) -> Self {
        Nodes(iter.into_iter().map(Arc::new).collect())
    }
}

impl From<Vec<NodeProgress>> for Nodes {
    fn from(nodes: Vec<NodeProgress>) -> Self {
        nodes.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Nodes {
    type Item = &'a Arc<NodeProgress>;
    type IntoIter = std::slice::Iter<'a, Arc<NodeProgress>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Nodes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| &**n))
    }
}

impl<'de> Deserialize<'de> for Nodes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<NodeProgress>::deserialize(d).map(Nodes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` nodes like the first of the bundled five-node record.
    fn nodes(n: usize) -> Nodes {
        let text = include_str!("../../tests/fixtures/store/v1-interrupted.json");
        let doc: serde_json::Value = serde_json::from_str(text).expect("the fixture reads");
        let like: NodeProgress = serde_json::from_value(doc["run"]["nodes"][0].clone())
            .expect("the fixture's first node reads");
        (0..n).map(|_| like.clone()).collect()
    }

    #[test]
    fn a_copy_shares_every_record_until_one_is_written() {
        let a = nodes(4);
        let mut b = a.clone();
        assert!(b.same_at(&a, 0..4));
        b[2].hostname = "changed".into();
        assert!(b.same_at(&a, 0..2) && !b.same_at(&a, 2..3) && b.same_at(&a, 3..4));
        assert_eq!(a[2].hostname, a[1].hostname, "the original is untouched");
        assert!(!b.same_at(&a, 3..5), "a range past the end is never the same");
    }

    #[test]
    fn serializes_as_a_plain_list_of_records() {
        let a = nodes(2);
        let text = serde_json::to_string(&a).unwrap();
        let plain: Vec<NodeProgress> = serde_json::from_str(&text).unwrap();
        assert_eq!(plain.len(), 2);
        assert_eq!(serde_json::from_str::<Nodes>(&text).unwrap(), a);
    }
}
