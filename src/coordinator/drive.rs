//! The loop: read the run from the store, decide the next step, act, observe, transition.

use std::collections::BTreeSet;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;

use super::step::ActedKey;
use super::{Coordinator, CoordinatorError, agent_target};
use crate::events::Event;
use crate::machine::Phase;
use crate::metrics;
use crate::model::scope::services_on;
use crate::model::{NodeId, ServiceId};
use crate::planner::{STOP_LABEL, Surge, guard, stop_requested};
use crate::ports::{Agents, Clock, OpKey, StateStore, Swarm};
use crate::run::{Halt, RunRecord, RunStep};

/// How many nodes fetch their packages ahead at once: a fleet's run must not have every node
/// hit its mirror at the same moment.
const PREFETCH_AHEAD: usize = 4;

/// What the scheduling loop does after reading the run.
enum Schedule {
    /// The run ends (once the nodes still followed are).
    End((Halt, String)),
    /// Nodes were started: read the run again at once.
    Started,
    /// Follow these nodes in progress.
    Follow(Vec<usize>),
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Drives the run held with `token` to its end, renewing the lease every third of it all the
    /// while (observations, actions and waits alike): losing the lock abandons the run here. The
    /// last write, which releases the lock, is made once the renewals have stopped.
    pub(crate) async fn drive(&self, token: u64) -> Result<RunRecord, CoordinatorError> {
        metrics::set(metrics::LOCK_HELD, &[], 1);
        let (halt, reason) = self.with_lease(token, self.drive_held(token)).await??;
        self.finish(token, halt, reason).await
    }

    /// The loop of [`Self::drive`], under the lease, up to how and why the run ends; the
    /// packages of the nodes further on are fetched meanwhile ([`Self::prefetch_ahead`]).
    async fn drive_held(&self, token: u64) -> Result<(Halt, String), CoordinatorError> {
        let ahead = async {
            self.prefetch_ahead(token).await;
            std::future::pending::<std::convert::Infallible>().await
        };
        // Biased, here and below: the same run takes the same steps (reproducible tests).
        tokio::select! {
            biased;
            end = self.schedule_all(token) => end,
            never = ahead => match never {},
        }
    }

    /// Starts nodes as the run allows and follows each started node on its own to the end of
    /// its part ([`Self::follow`]), so that one node's long action (an install, a rollback)
    /// never holds another's polls and windows. The next batch may start while the one before
    /// it is in its monitor window (see [`crate::run`]'s pipeline): a follower that sees it so
    /// wakes this loop. Every follower ends (its node done, or an error such as a lost lock)
    /// before the first error is reported, so that no failed node is abandoned before its
    /// hand-back.
    async fn schedule_all(&self, token: u64) -> Result<(Halt, String), CoordinatorError> {
        let wake = Notify::new();
        let mut followers = FuturesUnordered::new();
        let mut followed = BTreeSet::new();
        let mut early_refused = None;
        let mut error = None;
        loop {
            if error.is_none() {
                match self.schedule(token, &mut early_refused).await {
                    Ok(Schedule::End(end)) if followers.is_empty() => return Ok(end),
                    Ok(Schedule::End(_)) => {}
                    Ok(Schedule::Started) => continue,
                    Ok(Schedule::Follow(active)) => {
                        for i in active.into_iter().filter(|i| followed.insert(*i)) {
                            followers.push(self.follow(token, i, &wake).map(move |r| (i, r)));
                        }
                    }
                    Err(e) => error = Some(e),
                }
            }
            if followers.is_empty() {
                return Err(error.unwrap_or(CoordinatorError::NothingToResume));
            }
            tokio::select! {
                biased;
                Some((i, ended)) = followers.next() => {
                    followed.remove(&i);
                    if let Err(e) = ended {
                        error.get_or_insert(e);
                    }
                }
                () = wake.notified() => {}
            }
        }
    }

    /// Reads the run and does what it asks now: start a batch (after its guard), start the next
    /// batch early (a refusal waits for the batch before to end, then is checked again), or
    /// name the nodes in progress to follow.
    async fn schedule(
        &self,
        token: u64,
        early_refused: &mut Option<usize>,
    ) -> Result<Schedule, CoordinatorError> {
        let doc = self.load_retrying().await?.doc;
        doc.check(token, self.ports.clock.now())?;
        let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
        match run.next_step() {
            RunStep::Finish(halt, reason) => Ok(Schedule::End((halt, reason))),
            RunStep::Start(pending) => match self.guard(&run, &pending).await {
                Ok(started) => self.start(token, &run, &started).await.map(|()| Schedule::Started),
                Err(end) => Ok(Schedule::End(end)),
            },
            RunStep::Continue(active) => {
                let early = run.early_start().filter(|next| *early_refused != Some(next[0]));
                if let Some(next) = early {
                    match self.guard(&run, &next).await {
                        Ok(started) => {
                            self.start(token, &run, &started).await?;
                            return Ok(Schedule::Started);
                        }
                        Err((_, why)) => {
                            tracing::info!(run = %run.id, %why, "the next batch waits for this one to end");
                            *early_refused = Some(next[0]);
                        }
                    }
                }
                Ok(Schedule::Follow(active))
            }
        }
    }

    /// Records the nodes the guard let go as started, each with its surge and scope.
    async fn start(
        &self,
        token: u64,
        run: &RunRecord,
        started: &[(usize, Vec<Surge>, Vec<ServiceId>)],
    ) -> Result<(), CoordinatorError> {
        for (i, ..) in started {
            tracing::info!(run = %run.id, node = %run.nodes[*i].hostname, token, "node started");
            metrics::set_phase(&run.nodes[*i].hostname, &Phase::Prefetch.name());
        }
        let now = self.ports.clock.now();
        self.update_run(token, |r| {
            for (i, surge, scope) in started {
                let n = &mut r.nodes[*i];
                if n.phase == Phase::Pending {
                    n.surge = surge.clone();
                    n.scope = scope.clone();
                    n.start(now)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Fetches the packages of the nodes after the first batch to start, a few at a time, so
    /// that a slow repository costs the run once rather than once per batch. Best effort: a
    /// failure is logged, and the node's own prefetch (which finds the packages cached) decides.
    async fn prefetch_ahead(&self, token: u64) {
        let Ok(doc) = self.load_retrying().await else { return };
        let Some(run) = doc.doc.run else { return };
        let limit = self.settings.timeouts.prefetch;
        let op = OpKey { run_id: run.id.clone(), token, limit: Some(limit) };
        let nodes = run.ahead().into_iter().map(|i| run.nodes[i].clone());
        futures_util::stream::iter(nodes)
            .for_each_concurrent(PREFETCH_AHEAD, |n| {
                let op = &op;
                let packages = &run.packages;
                async move {
                    let target = agent_target(&n.hostname, &n.addr, &n.node);
                    let fetch = self.ports.agents.prefetch(&target, packages, op);
                    match self.bounded(Some(limit), fetch, &n).await {
                        Ok(()) => tracing::debug!(node = %n.hostname, "packages fetched ahead"),
                        Err(e) => tracing::info!(node = %n.hostname, error = %e, "fetching ahead failed; the node's own prefetch tries again"),
                    }
                }
            })
            .await;
    }

    /// Steps node `i` until its part is over (a terminal phase), reading the run afresh before
    /// each step (its batch-mates' phases, which its gates look at, change meanwhile); wakes
    /// the scheduling loop when the next batch may start early.
    async fn follow(&self, token: u64, i: usize, wake: &Notify) -> Result<(), CoordinatorError> {
        let mut acted: ActedKey = None;
        loop {
            let doc = self.load_retrying().await?.doc;
            doc.check(token, self.ports.clock.now())?;
            let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
            let phase = run.nodes[i].phase;
            if phase.is_terminal() || phase == Phase::Pending {
                return Ok(());
            }
            if run.early_start().is_some() {
                wake.notify_one();
            }
            self.step_node(token, &run, i, &mut acted).await?;
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
