//! Fetch-ahead: when a run starts (or is taken over), every node not yet started has its
//! packages downloaded into apt's cache, as many nodes at a time as the run's largest batch (at
//! least [`AT_LEAST`]), while the first nodes go
//! through their phases. A node's own prefetch phase then finds its download done (the agent
//! answers the same order from memory), so the next node is ready to drain sooner.
//!
//! Why it is safe: a download changes nothing any service sees (nothing installed, no engine
//! touched, no availability changed), and it is the very order the node's own prefetch gives,
//! under the same fence. A failure ahead is only logged: the agent keeps no failed download, so
//! the node's own prefetch asks the repository again and judges it there, within its phase's
//! limit. A node's own prefetch waits for its fetch-ahead still in flight rather than giving the
//! order a second time beside it, and no fetch-ahead of a node begins once it is started. A run
//! that is halting or aborted fetches nothing ahead; once a node fails meanwhile, the downloads
//! in flight end (they are harmless) and no more begin.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;

use super::{Coordinator, agent_target};
use crate::machine::{NodeProgress, Phase};
use crate::model::{NodeId, PackageSet};
use crate::ports::{Agents, Clock, OpKey, PortError, StateStore, Swarm};

/// How many nodes download ahead at once, at least: the largest batch when it is larger (its own
/// prefetches ask the repository as much anyway), so that the downloads keep ahead of the batches
/// without asking a mirror for the whole fleet's packages at one time.
pub(crate) const AT_LEAST: usize = 4;

/// Whose order a node's download is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    /// The fetch-ahead's, in flight.
    Ahead,
    /// The node's own prefetch phase's: no fetch-ahead is given any more.
    Own,
}

/// The nodes' downloads in flight or taken over by their own phase.
#[derive(Debug)]
pub(crate) struct Ahead {
    fetches: Mutex<BTreeMap<NodeId, Fetch>>,
    /// A node failed: the run halts, so no more downloads begin.
    halted: AtomicBool,
    /// Bumped whenever a fetch-ahead ends.
    ended: watch::Sender<u64>,
}

impl Default for Ahead {
    fn default() -> Self {
        Ahead {
            fetches: Mutex::default(),
            halted: AtomicBool::new(false),
            ended: watch::Sender::new(0),
        }
    }
}

impl Ahead {
    /// A node failed: no more downloads begin.
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::Relaxed);
    }

    /// Marks `node`'s download as the fetch-ahead's, unless its own phase has taken it or the
    /// run halts.
    fn begin(&self, node: &NodeId) -> bool {
        if self.halted.load(Ordering::Relaxed) {
            return false;
        }
        let mut fetches = self.fetches.lock().expect("fetches lock");
        if fetches.contains_key(node) {
            return false;
        }
        fetches.insert(node.clone(), Fetch::Ahead);
        true
    }

    /// `node`'s fetch-ahead ended (or was cut short): its own phase may give the order.
    fn end(&self, node: &NodeId) {
        self.fetches.lock().expect("fetches lock").remove(node);
        self.ended.send_modify(|n| *n += 1);
    }

    /// `node` is being started: no fetch-ahead of it begins from now on (one in flight goes on,
    /// and its own prefetch waits for it), so its own prefetch never waits for a download begun
    /// after its phase.
    pub(crate) fn started(&self, node: &NodeId) {
        self.fetches.lock().expect("fetches lock").entry(node.clone()).or_insert(Fetch::Own);
    }

    /// Takes `node`'s download for its own prefetch phase, once no fetch-ahead of it is in
    /// flight (none is given after this).
    pub(crate) async fn own(&self, node: &NodeId) {
        let mut ended = self.ended.subscribe();
        loop {
            {
                let mut fetches = self.fetches.lock().expect("fetches lock");
                if fetches.get(node) != Some(&Fetch::Ahead) {
                    fetches.insert(node.clone(), Fetch::Own);
                    return;
                }
            }
            // (The sender lives as long as `self`: an error cannot happen while we wait on it.)
            if ended.changed().await.is_err() {
                return;
            }
        }
    }
}

/// How many nodes the largest batch holds, from the nodes' batches (a node outside any batch goes
/// alone).
fn largest_batch(batches: impl IntoIterator<Item = Option<u32>>) -> usize {
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for batch in batches.into_iter().flatten() {
        *sizes.entry(batch).or_default() += 1;
    }
    sizes.into_values().max().unwrap_or(1)
}

/// Ends a node's fetch-ahead however its future ends (done, or dropped with the run).
struct Ending<'a> {
    ahead: &'a Ahead,
    node: &'a NodeId,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.ahead.end(self.node);
    }
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Downloads the packages of every node the run has not started yet, in the run's order, as
    /// many at a time as its largest batch (at least [`AT_LEAST`]); ends when all are done.
    /// Nothing here fails the run.
    pub(crate) async fn fetch_ahead(&self, token: u64) {
        let run = match self.load_retrying().await {
            Ok(loaded) => loaded.doc.run,
            Err(e) => {
                tracing::info!(error = %e, "no fetch-ahead: the run could not be read");
                return;
            }
        };
        let Some(run) = run else { return };
        let halting = run
            .nodes
            .iter()
            .any(|n| matches!(n.phase, Phase::RolledBack | Phase::Restored | Phase::Failed));
        if run.abort_requested || halting {
            return; // No node is started after the ones going now.
        }
        let pending: Vec<&NodeProgress> =
            run.nodes.iter().map(AsRef::as_ref).filter(|n| n.phase == Phase::Pending).collect();
        if pending.is_empty() {
            return;
        }
        let at_once = largest_batch(run.nodes.iter().map(|n| n.batch)).max(AT_LEAST);
        tracing::info!(run = %run.id, nodes = pending.len(), at_once, "fetching the packages of the nodes not started yet");
        let op =
            OpKey { run_id: run.id.clone(), token, limit: Some(self.settings.timeouts.prefetch) };
        stream::iter(pending)
            .for_each_concurrent(at_once, |p| self.fetch_one(p, run.packages_of(p), &op))
            .await;
    }

    /// One node's fetch-ahead, given up after the prefetch phase's own limit.
    async fn fetch_one(&self, p: &NodeProgress, packages: &PackageSet, op: &OpKey) {
        if !self.ahead.begin(&p.node) {
            return;
        }
        let _ending = Ending { ahead: &self.ahead, node: &p.node };
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        let limit = op.limit.unwrap_or_default() + Duration::from_secs(1);
        let result = tokio::select! {
            r = self.ports.agents.prefetch(&target, packages, op) => r,
            () = self.ports.clock.sleep(limit) => Err(PortError::Unavailable(format!(
                "no answer within {} s", limit.as_secs()
            ))),
        };
        match result {
            Ok(()) => tracing::debug!(node = %p.hostname, "packages fetched ahead"),
            Err(e) => tracing::info!(
                node = %p.hostname,
                error = %e,
                "fetch-ahead failed: the node's own prefetch phase orders the download again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeId {
        NodeId(n.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn a_nodes_own_prefetch_waits_for_its_fetch_ahead_and_then_takes_it_over() {
        let ahead = Ahead::default();
        assert!(ahead.begin(&node("a")));
        assert!(!ahead.begin(&node("a")), "one fetch-ahead per node at a time");
        let a = node("a");
        let own = ahead.own(&a);
        tokio::pin!(own);
        tokio::select! {
            biased;
            () = &mut own => panic!("its own prefetch went beside the fetch-ahead"),
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        ahead.end(&node("a"));
        own.await;
        assert!(!ahead.begin(&node("a")), "no fetch-ahead once its own phase took over");
        // Another node is not held by it.
        ahead.own(&node("b")).await;
        // A node started is not fetched ahead any more; nor is any node once one failed.
        ahead.started(&node("c"));
        assert!(!ahead.begin(&node("c")));
        ahead.halt();
        assert!(!ahead.begin(&node("d")));
    }

    #[tokio::test]
    async fn a_fetch_ahead_cut_short_lets_the_node_go_on() {
        let ahead = Ahead::default();
        assert!(ahead.begin(&node("a")));
        drop(Ending { ahead: &ahead, node: &node("a") });
        ahead.own(&node("a")).await;
    }

    #[test]
    fn downloads_go_as_many_at_a_time_as_the_largest_batch() {
        let at = |batches: &[Option<u32>]| largest_batch(batches.iter().copied());
        assert_eq!(at(&[]), 1);
        assert_eq!(at(&[None, None]), 1);
        assert_eq!(at(&[Some(0), Some(0), Some(0), Some(1), None]), 3);
    }
}
