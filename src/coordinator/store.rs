//! Read-modify-write of the store document with compare-and-swap, and fenced run updates.

use super::{Coordinator, CoordinatorError};
use crate::lock::StoreDoc;
use crate::machine::{NodeProgress, Phase};
use crate::ports::{Agents, Clock, StateStore, Swarm, load_doc, update_doc};
use crate::run::RunRecord;

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Compare-and-swap update of the store document (see [`crate::ports::update_doc`]).
    pub(crate) async fn update<T>(
        &self,
        f: impl FnMut(&mut StoreDoc) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let _one_at_a_time = self.writes.lock().await;
        update_doc(self.ports.store, self.ports.clock, f).await
    }

    /// Reads the store, riding out a short unavailability (the local engine restarting).
    pub(crate) async fn load_retrying(
        &self,
    ) -> Result<crate::ports::Versioned<StoreDoc>, CoordinatorError> {
        Ok(load_doc(self.ports.store, self.ports.clock).await?)
    }

    /// Applies `f` to the run record, only while `token` holds the lock.
    pub(crate) async fn update_run<T>(
        &self,
        token: u64,
        mut f: impl FnMut(&mut RunRecord) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        // The time is read inside: a write may wait for another to finish first.
        self.update(|doc| {
            doc.check(token, self.ports.clock.now())?;
            let run = doc.run.as_mut().ok_or(CoordinatorError::NothingToResume)?;
            f(run)
        })
        .await
    }

    /// Applies `f` to node `i` only while it is still in `phase` (and `token` holds the lock), and
    /// says which phase the node is in after the write. A write whose answer was lost in a leader
    /// election may have landed: its retry re-reads, finds the node already moved on, and leaves
    /// it, so no step is applied twice.
    pub(crate) async fn update_node(
        &self,
        token: u64,
        i: usize,
        phase: Phase,
        mut f: impl FnMut(&mut NodeProgress) -> Result<(), CoordinatorError>,
    ) -> Result<Phase, CoordinatorError> {
        self.update_run(token, |r| {
            // Only a node still in `phase` is written (and so copied: see `run::Nodes`).
            if r.nodes[i].phase == phase {
                f(&mut r.nodes[i])?;
            }
            Ok(r.nodes[i].phase)
        })
        .await
    }

    /// Extends the lease.
    pub(crate) async fn renew(&self, token: u64) -> Result<(), CoordinatorError> {
        let lease = self.settings.lease;
        // The time is read inside: the renewal may wait for a step's write to finish first.
        self.update(|doc| doc.renew(token, lease, self.ports.clock.now()).map_err(Into::into)).await
    }

    /// Runs `fut` while renewing the lease every third of it; losing the lock abandons `fut`.
    pub(crate) async fn with_lease<T>(
        &self,
        token: u64,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, CoordinatorError> {
        let keep = async {
            loop {
                self.ports.clock.sleep(self.settings.lease / 3).await;
                if let Err(e) = self.renew(token).await {
                    return e;
                }
            }
        };
        tokio::select! {
            out = fut => Ok(out),
            err = keep => Err(err),
        }
    }
}
