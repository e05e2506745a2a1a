//! Read-modify-write of the store document with compare-and-swap, and fenced run updates.

use std::time::Duration;

use super::{Coordinator, CoordinatorError};
use crate::lock::StoreDoc;
use crate::ports::{Agents, Clock, PortError, StateStore, Swarm};
use crate::run::RunRecord;

/// Conflicts are expected (an `abort`, a key rotation moving the swarm's version); give up only
/// when the store keeps moving for this many attempts.
const CAS_ATTEMPTS: u32 = 30;

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Applies `f` to the freshest document and writes it back at the version it was read at,
    /// re-reading and re-applying on conflict, so no concurrent write is ever lost.
    pub(crate) async fn update<T>(&self, mut f: impl FnMut(&mut StoreDoc) -> Result<T, CoordinatorError>) -> Result<T, CoordinatorError> {
        let mut delay = Duration::from_millis(20);
        for _ in 0..CAS_ATTEMPTS {
            let mut current = self.load_retrying().await?;
            let out = f(&mut current.doc)?;
            match self.ports.store.save(&current.doc, current.version).await {
                Ok(()) => return Ok(out),
                Err(PortError::Conflict) | Err(PortError::Unavailable(_)) => {
                    self.ports.clock.sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(PortError::Unavailable(format!("the store kept changing under {CAS_ATTEMPTS} attempts to write it")).into())
    }

    /// Reads the store, riding out a short unavailability (the local engine restarting).
    pub(crate) async fn load_retrying(&self) -> Result<crate::ports::Versioned<StoreDoc>, CoordinatorError> {
        let mut last = None;
        for _ in 0..120 {
            match self.ports.store.load().await {
                Ok(v) => return Ok(v),
                Err(PortError::Unavailable(e)) => {
                    last = Some(e);
                    self.ports.clock.sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(PortError::Unavailable(last.unwrap_or_default()).into())
    }

    /// Applies `f` to the run record, only while `token` holds the lock.
    pub(crate) async fn update_run<T>(
        &self,
        token: u64,
        mut f: impl FnMut(&mut RunRecord) -> Result<T, CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        let now = self.ports.clock.now();
        self.update(|doc| {
            doc.check(token, now)?;
            let run = doc.run.as_mut().ok_or(CoordinatorError::NothingToResume)?;
            f(run)
        })
        .await
    }

    /// Extends the lease.
    pub(crate) async fn renew(&self, token: u64) -> Result<(), CoordinatorError> {
        let now = self.ports.clock.now();
        let lease = self.settings.lease;
        self.update(|doc| doc.renew(token, lease, now).map_err(Into::into)).await
    }

    /// Runs `fut` while renewing the lease every third of it; losing the lock abandons `fut`.
    pub(crate) async fn with_lease<T>(&self, token: u64, fut: impl std::future::Future<Output = T>) -> Result<T, CoordinatorError> {
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
