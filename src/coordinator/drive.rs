//! The loop: read the run from the store, decide the next step, act, observe, transition.

use super::step::ActedKey;
use super::{Coordinator, CoordinatorError};
use crate::events::Event;
use crate::machine::Phase;
use crate::metrics;
use crate::model::scope::services_on;
use crate::model::{NodeId, ServiceId};
use crate::planner::{STOP_LABEL, Surge, guard, stop_requested};
use crate::ports::{Agents, Clock, StateStore, Swarm};
use crate::run::{Halt, RunRecord, RunStep};

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Drives the run held with `token` to its end, renewing the lease every third of it all the
    /// while (observations, actions and waits alike): losing the lock abandons the run here. The
    /// last write, which releases the lock, is made once the renewals have stopped.
    pub(crate) async fn drive(&self, token: u64) -> Result<RunRecord, CoordinatorError> {
        metrics::set(metrics::LOCK_HELD, &[], 1);
        let (halt, reason) = self.with_lease(token, self.drive_held(token)).await??;
        self.finish(token, halt, reason).await
    }

    /// The loop of [`Self::drive`], under the lease, up to how and why the run ends. The nodes
    /// of a batch are followed side by side (see [`Self::follow`]): each step acts, observes and
    /// judges one node.
    async fn drive_held(&self, token: u64) -> Result<(Halt, String), CoordinatorError> {
        let mut acted: Vec<ActedKey> = Vec::new();
        loop {
            let now = self.ports.clock.now();
            let doc = self.load_retrying().await?.doc;
            doc.check(token, now)?;
            let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
            acted.resize(run.nodes.len(), None);
            match run.next_step() {
                RunStep::Finish(halt, reason) => return Ok((halt, reason)),
                RunStep::Start(pending) => {
                    let started = match self.guard(&run, &pending).await {
                        Ok(guarded) => guarded,
                        Err(end) => return Ok(end),
                    };
                    for (i, ..) in &started {
                        tracing::info!(run = %run.id, node = %run.nodes[*i].hostname, token, "node started");
                        metrics::set_phase(&run.nodes[*i].hostname, &Phase::Prefetch.name());
                    }
                    self.update_run(token, |r| {
                        for (i, surge, scope) in &started {
                            let n = &mut r.nodes[*i];
                            if n.phase == Phase::Pending {
                                n.surge = surge.clone();
                                n.scope = scope.clone();
                                n.start(now)?;
                            }
                        }
                        Ok(())
                    })
                    .await?;
                }
                RunStep::Continue(active) => {
                    // Each node of the batch is followed on its own to the end of its part, so
                    // that one node's long action (an install, a rollback) never holds its
                    // batch-mates' polls and windows. Every follower ends (its node done, or an
                    // error such as a lost lock) before the first error is reported, so that no
                    // failed node is abandoned before its hand-back. (A batch's nodes are
                    // consecutive: only its stretch of the run is looked at.)
                    let (first, last) = (active[0], active[active.len() - 1]);
                    let followers = acted
                        .iter_mut()
                        .enumerate()
                        .skip(first)
                        .take(last + 1 - first)
                        .filter(|(i, _)| active.contains(i))
                        .map(|(i, acted)| self.follow(token, i, acted));
                    let ends = futures_util::future::join_all(followers).await;
                    ends.into_iter().collect::<Result<Vec<()>, _>>()?;
                }
            }
        }
    }

    /// Steps node `i` until its part is over (a terminal phase), reading the run afresh before
    /// each step (its batch-mates' phases, which its gates look at, change meanwhile).
    async fn follow(
        &self,
        token: u64,
        i: usize,
        acted: &mut ActedKey,
    ) -> Result<(), CoordinatorError> {
        loop {
            let doc = self.load_retrying().await?.doc;
            doc.check(token, self.ports.clock.now())?;
            let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
            let phase = run.nodes[i].phase;
            if phase.is_terminal() || phase == Phase::Pending {
                return Ok(());
            }
            self.step_node(token, &run, i, acted).await?;
        }
    }

    /// Re-checks the guards against the cluster as it is now, before the nodes `pending` (the
    /// rest of a batch) start; returns those that go now (the longest front that can be drained
    /// together, at least the first), each with its surge and scope (the services its polls
    /// judge), or how and why the run must stop.
    async fn guard(
        &self,
        run: &RunRecord,
        pending: &[usize],
    ) -> Result<Vec<(usize, Vec<Surge>, Vec<ServiceId>)>, (Halt, String)> {
        let host = &run.nodes[pending[0]].hostname;
        let ids: Vec<NodeId> = pending.iter().map(|&i| run.nodes[i].node.clone()).collect();
        let snap = self.observe_some(&ids).await.map_err(|e| {
            (Halt::Unobservable, format!("cannot observe the cluster before node {host}: {e}"))
        })?;
        if let Some(marked) = stop_requested(&snap) {
            return Err((
                Halt::StopLabel,
                format!(
                    "stopped before node {host} by the label {STOP_LABEL} on node {marked}: remove it (`docker node update --label-rm {STOP_LABEL} {marked}`), then `swarm-upgrade run` again"
                ),
            ));
        }
        let surges =
            guard(&snap, self.settings, &run.flags, &ids, &run.packages).map_err(|refusals| {
                let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
                (Halt::Guard, format!("stopped before node {host}: {}", reasons.join("; ")))
            })?;
        Ok(pending
            .iter()
            .zip(surges)
            .map(|(&i, surge)| {
                let surged: Vec<ServiceId> = surge.iter().map(|s| s.service.clone()).collect();
                let scope = services_on(&snap, &run.nodes[i].node, &surged);
                (i, surge, scope)
            })
            .collect())
    }

    async fn finish(
        &self,
        token: u64,
        halt: Halt,
        reason: String,
    ) -> Result<RunRecord, CoordinatorError> {
        let outcome = halt.outcome();
        let now = self.ports.clock.now();
        let record = self
            .update(|doc| {
                if let Some(run) = doc
                    .run
                    .as_ref()
                    .filter(|r| r.finished() && doc.lock.is_none() && doc.last_token == token)
                {
                    // A retry of this very write: it landed (no one has taken the lock since).
                    return Ok(run.clone());
                }
                doc.check(token, now)?;
                let run = doc.run.as_mut().ok_or(CoordinatorError::NothingToResume)?;
                run.finish(halt, reason.clone(), now);
                let record = run.clone();
                doc.release(token);
                Ok(record)
            })
            .await?;
        tracing::info!(run = %record.id, outcome = ?outcome, %reason, "run finished");
        metrics::set(metrics::LOCK_HELD, &[], 0);
        let outcome_name = outcome.name().to_string();
        metrics::inc(metrics::RUNS, &[("outcome", &outcome_name)]);
        self.emit(Event::RunFinished {
            run: record.id.clone(),
            outcome: outcome_name,
            reason: record.reason.clone().unwrap_or_default(),
        });
        Ok(record)
    }
}
