//! The hold after the canary ([`crate::run::hold`]) carried out: its start marked once (an
//! event, the gauge), its limit applied, its soak judged against the cluster; `approve` and
//! `abort` are flags an operator writes, which the run's next step reads.

use std::time::Duration;

use super::{Coordinator, CoordinatorError};
use crate::events::Event;
use crate::metrics;
use crate::ports::{Agents, Clock, StateStore, Swarm};
use crate::run::hold::Soak;
use crate::run::{Halt, Released, RunRecord};

/// How often a holding run reads the store (for `approve` and `abort`) and judges its soak (a
/// whole snapshot: not every second for hours on a big swarm).
pub(super) const HOLD_POLL: Duration = Duration::from_secs(10);

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// One look at the hold of `run`, which holds now: marks its start, ends the run past its
    /// limit, lets it go once its soak has passed with every service converged, or rests.
    /// Returns how the run ends, if it does.
    pub(super) async fn hold(
        &self,
        token: u64,
        run: &RunRecord,
    ) -> Result<Option<(Halt, String)>, CoordinatorError> {
        let Some(hold) = &run.hold else { return Ok(None) };
        let now = self.ports.clock.now();
        if hold.since.is_none() {
            let waiting = self
                .update_run(token, |r| {
                    let h = r.hold.as_mut().expect("a holding run has a hold");
                    h.since.get_or_insert(now);
                    Ok(h.waiting_for())
                })
                .await?;
            let canary: Vec<String> = run.canary().iter().map(ToString::to_string).collect();
            tracing::info!(run = %run.id, canary = %canary.join(", "), waiting_for = %waiting, "holding after the canary");
            metrics::set(metrics::RUN_HELD, &[], 1);
            self.emit(Event::RunHeld { run: run.id.clone(), canary, waiting_for: waiting });
            return Ok(None);
        }
        if hold.expires_at().is_some_and(|t| now >= t) {
            metrics::set(metrics::RUN_HELD, &[], 0);
            return Ok(Some((
                Halt::HoldExpired,
                format!(
                    "nothing let the hold after the canary ({}) go within {} s: the canary stays at {}; `swarm-upgrade run` again to go on",
                    run.canary().join(", "),
                    hold.limit_s,
                    run.target
                ),
            )));
        }
        // (A coordinator that took over during the hold says so too.)
        metrics::set(metrics::RUN_HELD, &[], 1);
        if hold.soak_s.is_some() {
            self.soak(token, run, now).await?;
        }
        self.ports.clock.sleep(HOLD_POLL).await;
        Ok(None)
    }

    /// The soak, judged on every poll: it counts from when every service is converged, every
    /// canary node is Ready at its availability and the alert gate is open, starting again whenever that stops; the hold is
    /// let go once it has lasted the whole soak.
    async fn soak(
        &self,
        token: u64,
        run: &RunRecord,
        now: jiff::Timestamp,
    ) -> Result<(), CoordinatorError> {
        let Some(hold) = &run.hold else { return Ok(()) };
        let snap = self.ports.swarm.snapshot().await?;
        let unsettled = match run.unsettled(&snap) {
            // (The soak also needs no alert that counts firing.)
            None => match self.gate_answer().await {
                None | Some(Ok(crate::model::alerts::GateAnswer::Open { .. })) => None,
                Some(closed) => Some(super::gate::closed_why(&closed)),
            },
            unsettled => unsettled,
        };
        match hold.soak_step(unsettled.is_none(), now) {
            Soak::Release => self.release(token, run, "soak").await,
            Soak::Nothing => Ok(()),
            Soak::Mark(mark) => {
                if let Some(why) = unsettled {
                    tracing::info!(run = %run.id, %why, "the soak starts again");
                }
                self.update_run(token, |r| {
                    if let Some(h) = r.hold.as_mut() {
                        h.converged_since = mark;
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// Before the first node after the canary starts: an `approve` that let the hold go is
    /// announced (the soak's own release announced itself).
    pub(super) fn approved(&self, run: &RunRecord, pending: &[usize]) {
        let Some(h) = &run.hold else { return };
        let Some(r) = h.released.as_ref().filter(|r| r.by != "soak") else { return };
        if pending.first() == Some(&h.after) && h.since.is_some() {
            metrics::set(metrics::RUN_HELD, &[], 0);
            tracing::info!(run = %run.id, by = %r.by, "the hold after the canary is let go");
            self.emit(Event::RunReleased { run: run.id.clone(), by: r.by.clone() });
        }
    }

    /// Lets the hold go (`by` what), unless something let it go meanwhile (an `approve`, which
    /// then is the one announced, when the next node starts).
    async fn release(&self, token: u64, run: &RunRecord, by: &str) -> Result<(), CoordinatorError> {
        let now = self.ports.clock.now();
        let ours = self
            .update_run(token, |r| {
                let h = r.hold.as_mut().expect("a holding run has a hold");
                let ours = h.released.is_none();
                h.released.get_or_insert(Released { by: by.to_string(), at: now });
                Ok(ours)
            })
            .await?;
        if ours {
            metrics::set(metrics::RUN_HELD, &[], 0);
            tracing::info!(run = %run.id, by, "the hold after the canary is let go");
            self.emit(Event::RunReleased { run: run.id.clone(), by: by.to_string() });
        }
        Ok(())
    }
}
