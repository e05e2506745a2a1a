//! The snapshot indexed once per decision: nodes and services by position, each service's
//! constraints parsed once, and the nodes in host-name order. Lookups by ID cost O(1) instead of
//! a scan, so a plan over thousands of nodes stays near-linear.

use std::collections::HashMap;

use crate::model::constraint::Constraint;
use crate::model::{ClusterSnapshot, NodeId, ServiceId};

/// Positions in the snapshot's `nodes` and `services`, and what is derived from them.
pub(crate) struct Index<'a> {
    /// The snapshot indexed.
    pub snap: &'a ClusterSnapshot,
    node_at: HashMap<&'a NodeId, usize>,
    service_at: HashMap<&'a ServiceId, usize>,
    /// Each service's constraints, parsed; `None` when one cannot be read (it matches no node).
    constraints: Vec<Option<Vec<Constraint>>>,
    /// Each node's rank in host-name order (ties in snapshot order).
    pub rank: Vec<usize>,
    /// The node at each rank.
    pub by_rank: Vec<usize>,
    /// Whether each service's outage is accepted (its label, or named by the operator: see
    /// [`Index::accepting`]).
    pub accepted: Vec<bool>,
}

impl<'a> Index<'a> {
    /// Indexes `snap`.
    pub(crate) fn new(snap: &'a ClusterSnapshot) -> Self {
        let mut node_at = HashMap::with_capacity(snap.nodes.len());
        for (i, n) in snap.nodes.iter().enumerate() {
            node_at.entry(&n.id).or_insert(i);
        }
        let mut service_at = HashMap::with_capacity(snap.services.len());
        for (i, s) in snap.services.iter().enumerate() {
            service_at.entry(&s.id).or_insert(i);
        }
        let constraints = snap
            .services
            .iter()
            .map(|s| s.constraints.iter().map(|c| Constraint::parse(c).ok()).collect())
            .collect();
        let mut by_rank: Vec<usize> = (0..snap.nodes.len()).collect();
        by_rank
            .sort_by(|&a, &b| snap.nodes[a].hostname.cmp(&snap.nodes[b].hostname).then(a.cmp(&b)));
        let mut rank = vec![0; by_rank.len()];
        for (r, &n) in by_rank.iter().enumerate() {
            rank[n] = r;
        }
        let accepted = snap.services.iter().map(|s| s.downtime_accepted).collect();
        Index { snap, node_at, service_at, constraints, rank, by_rank, accepted }
    }

    /// The index with the outage of the services named `names` accepted too.
    pub(crate) fn accepting(mut self, names: &[String]) -> Self {
        for (s, svc) in self.snap.services.iter().enumerate() {
            self.accepted[s] |= names.contains(&svc.name);
        }
        self
    }

    /// The position of the node with this ID.
    pub(crate) fn node(&self, id: &NodeId) -> Option<usize> {
        self.node_at.get(id).copied()
    }

    /// The position of the service with this ID.
    pub(crate) fn service(&self, id: &ServiceId) -> Option<usize> {
        self.service_at.get(id).copied()
    }

    /// Whether node `n` satisfies every constraint of service `s` (see
    /// [`crate::model::constraint::satisfies_all`]).
    pub(crate) fn satisfies(&self, s: usize, n: usize) -> bool {
        self.constraints[s]
            .as_ref()
            .is_some_and(|cs| cs.iter().all(|c| c.matches(&self.snap.nodes[n])))
    }
}
