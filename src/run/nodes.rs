//! A run's node records, each behind a shared pointer: a copy of a run (every store read hands
//! one out) costs a reference count per node rather than a deep copy, and a store compares the
//! records a step left alone at the cost of a pointer (`Arc`'s equality looks at the pointer
//! first). A shared record is copied when it is borrowed to be written (`nodes[i]` as a place
//! written to, [`Nodes::iter_mut`]), so a caller borrows mutably only the nodes it changes.

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
        let shared = |a: &Nodes, b: &Nodes| -> Vec<bool> {
            a.iter().zip(b.iter()).map(|(x, y)| Arc::ptr_eq(x, y)).collect()
        };
        assert_eq!(shared(&a, &b), [true; 4]);
        b[2].hostname = "changed".into();
        assert_eq!(shared(&a, &b), [true, true, false, true]);
        assert_eq!(a[2].hostname, a[1].hostname, "the original is untouched");
        assert_ne!(a, b);
        let _ = &b[3].hostname;
        assert!(shared(&a, &b)[3], "a read copies nothing");
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
