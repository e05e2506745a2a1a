//! The loop: read the run from the store, decide the next step, act, observe, transition.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use jiff::Timestamp;
use tokio::sync::{Notify, watch};

use super::gate::GateEnd;
use super::step::{ActedKey, Rest};
use super::{Coordinator, CoordinatorError};
use crate::events::Event;
use crate::machine::{Phase, elapsed};
use crate::metrics;
use crate::model::scope::services_on;
use crate::model::{NodeId, PackageSet, ServiceId};
use crate::planner::{Drain, STOP_LABEL, guard_settling, stop_requested};
use crate::ports::{Agents, Clock, StateStore, Swarm};
use crate::run::{Halt, RunRecord, RunStep};

/// How followers wake the scheduling loop (when the next batch may start early, unless its
/// early start was refused: its guard is checked again once the batch before has opened its
/// monitor window, and once it has ended) and
/// each other (a batch ended: the nodes held for it drain without waiting for their next poll).
struct Wake {
    notify: Notify,
    /// The early start the guard refused last ([`early_key`]; 0: none). Keys only grow: a
    /// refusal is never tried again at a key it has passed.
    refused: AtomicUsize,
    /// How many batches have ended.
    batches_ended: watch::Sender<usize>,
}

impl Wake {
    fn new() -> Self {
        Wake {
            notify: Notify::new(),
            refused: AtomicUsize::new(0),
            batches_ended: watch::Sender::new(0),
        }
    }
}

/// The next batch's early start, if it may start now, keyed by its first node and whether the
/// batch before has opened its monitor window: a start refused while that batch's services
/// settled is tried once more when they have (and not again should the window close and open).
fn early_key(run: &RunRecord) -> Option<(Vec<usize>, usize)> {
    let next = run.early_start()?;
    let key = next[0] * 2 + usize::from(run.window_open_before(next[0]));
    Some((next, key))
}

/// Why nodes `ids` may not start while the batch before verifies (`settling` not empty): one of
/// them has a `before_drain` hook, which may take it out of service (a balancer) as soon as its
/// prefetch is done; two batches would then be out of service together.
fn hooked_early(
    snap: &crate::model::ClusterSnapshot,
    ids: &[NodeId],
    settling: &[NodeId],
) -> Option<String> {
    if settling.is_empty() {
        return None;
    }
    let hooked = ids.iter().find(|id| {
        snap.agent_report(id).is_some_and(|r| {
            r.hooks.iter().any(|h| h.point == crate::model::hooks::HookPoint::BeforeDrain)
        })
    })?;
    let host = snap.node(hooked).map_or(hooked.0.as_str(), |n| n.hostname.as_str());
    Some(format!(
        "{host} has a before_drain hook: its batch starts once the batch before is verified, so that two batches are never out of service together"
    ))
}

/// The shortest rest between two polls of a node: a poll slower than the poll interval is
/// followed by this much rather than none.
const MIN_REST: std::time::Duration = std::time::Duration::from_millis(200);

/// Node `i`'s follower ended: it is no longer followed, and its error, the first, is kept.
fn ended(
    (i, end): (usize, Result<(), CoordinatorError>),
    followed: &mut BTreeSet<usize>,
    error: &mut Option<CoordinatorError>,
) {
    followed.remove(&i);
    if let Err(e) = end {
        error.get_or_insert(e);
    }
}

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
    /// nodes not started yet have their packages fetched meanwhile ([`super::ahead`]). The
    /// last write, which releases the lock, is made once the renewals have stopped.
    pub(crate) async fn drive(&self, token: u64) -> Result<RunRecord, CoordinatorError> {
        metrics::set(metrics::LOCK_HELD, &[], 1);
        let ahead = self.fetch_ahead(token).then(|()| std::future::pending());
        let nodes = async {
            tokio::select! {
                biased;
                end = self.schedule_all(token) => end,
                never = ahead => never,
            }
        };
        let (halt, reason) = self.with_lease(token, nodes).await??;
        self.finish(token, halt, reason).await
    }

    /// Starts nodes as the run allows and follows each started node on its own to the end of
    /// its part ([`Self::follow`]), so that one node's long action (an install, a rollback)
    /// never holds another's polls and windows. The next batch may start while the one before
    /// it verifies, once that one has scaled its surges back (see [`crate::run`]'s pipeline): a
    /// follower that sees it so wakes this loop. Every follower ends (its node done, or an error such as a lost lock)
    /// before the first error is reported, so that no failed node is abandoned before its
    /// hand-back.
    async fn schedule_all(&self, token: u64) -> Result<(Halt, String), CoordinatorError> {
        let wake = Wake::new();
        let mut followers = FuturesUnordered::new();
        let mut followed = BTreeSet::new();
        let mut error = None;
        loop {
            if error.is_none() {
                // The followers go on while the run is read, and a batch guarded and started.
                let scheduled = {
                    let schedule = self.schedule(token, &wake.refused);
                    tokio::pin!(schedule);
                    loop {
                        tokio::select! {
                            biased;
                            scheduled = &mut schedule => break scheduled,
                            Some(end) = followers.next() => {
                                ended(end, &mut followed, &mut error);
                            }
                        }
                    }
                };
                match scheduled {
                    Ok(Schedule::End(end)) if followers.is_empty() => {
                        // (A node that failed under another coordinator, before it took over.)
                        self.on_failures(token).await?;
                        return Ok(end);
                    }
                    Ok(Schedule::End(_)) => {}
                    Ok(Schedule::Started) => continue,
                    Ok(Schedule::Follow(active)) => {
                        for i in active.into_iter().filter(|i| followed.insert(*i)) {
                            followers.push(self.follow(token, i, &wake).map(move |r| (i, r)));
                        }
                    }
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            if followers.is_empty() {
                return Err(error.unwrap_or(CoordinatorError::NothingToResume));
            }
            tokio::select! {
                biased;
                Some(end) = followers.next() => ended(end, &mut followed, &mut error),
                () = wake.notify.notified() => {}
            }
        }
    }

    /// Reads the run and does what it asks now: start a batch (after the alert gate and its
    /// guard), start the next batch early (only with the gate open; a refusal is checked again
    /// once the batch before opens its monitor window, then once it has ended), or name the
    /// nodes in progress to follow.
    async fn schedule(
        &self,
        token: u64,
        early_refused: &AtomicUsize,
    ) -> Result<Schedule, CoordinatorError> {
        let doc = self.load_retrying().await?.doc;
        doc.check(token, self.ports.clock.now())?;
        let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
        match run.next_step() {
            RunStep::Finish(halt, reason) => Ok(Schedule::End((halt, reason))),
            RunStep::Hold => match self.hold(token, &run).await? {
                Some(end) => Ok(Schedule::End(end)),
                None => Ok(Schedule::Started),
            },
            RunStep::Start(pending) => {
                self.approved(&run, &pending);
                let host = &run.nodes[pending[0]].hostname;
                match self.gate_wait(token, &run, host).await? {
                    GateEnd::Open => {}
                    // (The run read again finishes it as aborted.)
                    GateEnd::Aborted => return Ok(Schedule::Started),
                    GateEnd::GaveUp(halt, why) => return Ok(Schedule::End((halt, why))),
                }
                match self.guard(&run, &pending).await {
                    Ok(started) => {
                        self.start(token, &run, &started).await.map(|()| Schedule::Started)
                    }
                    Err(end) => Ok(Schedule::End(end)),
                }
            }
            RunStep::Continue(active) => {
                let refused = early_refused.load(Ordering::Relaxed);
                let early = early_key(&run).filter(|(_, key)| *key > refused);
                if let Some((next, key)) = early {
                    if !self.gate_open_now(&run).await {
                        early_refused.store(key, Ordering::Relaxed);
                        return Ok(Schedule::Follow(active));
                    }
                    match self.guard(&run, &next).await {
                        Ok(started) => {
                            self.start(token, &run, &started).await?;
                            return Ok(Schedule::Started);
                        }
                        Err((_, why)) => {
                            tracing::info!(run = %run.id, %why, "the next batch does not start early yet");
                            early_refused.store(key, Ordering::Relaxed);
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
        started: &[(usize, Drain, Vec<ServiceId>)],
    ) -> Result<(), CoordinatorError> {
        for (i, ..) in started {
            self.ahead.started(&run.nodes[*i].node);
            tracing::info!(run = %run.id, node = %run.nodes[*i].hostname, token, "node started");
            metrics::set_phase(&run.nodes[*i].hostname, &Phase::Prefetch.name());
        }
        let now = self.ports.clock.now();
        self.update_run(token, |r| {
            // (An abort asked since the run was read: nothing more starts.)
            if r.abort_requested {
                return Ok(());
            }
            for (i, drain, scope) in started {
                let n = &mut r.nodes[*i];
                if n.phase == Phase::Pending {
                    n.surge = drain.surge.clone();
                    n.downtime = drain.downtime.clone();
                    n.scope = scope.clone();
                    n.start(now)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Steps node `i` until its part is over (a terminal phase), reading the run afresh before
    /// each step (its batch-mates' phases, which its gates look at, change meanwhile); wakes
    /// the scheduling loop when the next batch may start early.
    async fn follow(&self, token: u64, i: usize, wake: &Wake) -> Result<(), CoordinatorError> {
        let mut acted: ActedKey = None;
        let mut ended = wake.batches_ended.subscribe();
        loop {
            let began = self.ports.clock.now();
            ended.borrow_and_update();
            let doc = self.load_retrying().await?.doc;
            doc.check(token, self.ports.clock.now())?;
            let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
            let phase = run.nodes[i].phase;
            if phase.is_terminal() && phase != Phase::Done {
                self.on_failure(token, &run, i).await?;
            }
            if phase.is_terminal() || phase == Phase::Pending {
                if run.batch_ended(i) {
                    wake.batches_ended.send_modify(|n| *n += 1);
                }
                return Ok(());
            }
            let refused = wake.refused.load(Ordering::Relaxed);
            if early_key(&run).is_some_and(|(_, key)| key > refused) {
                wake.notify.notify_one();
            }
            let before = acted.clone();
            let rest = self.step_node(token, &run, i, &mut acted).await?;
            if acted != before
                && matches!(&acted, Some((_, Phase::VerifyConverged, _, left)) if left.is_empty())
            {
                // Its surges are scaled back: the next batch may be able to start now.
                wake.notify.notify_one();
            }
            self.rest(began, rest, &mut ended).await;
        }
    }

    /// Rests after a step begun at `began`: polls are a poll interval apart from start to start
    /// (the time a poll takes is not added to the wait); a window is observed again as it ends;
    /// a node held for the batch before is woken when a batch ends.
    async fn rest(&self, began: Timestamp, rest: Rest, ended: &mut watch::Receiver<usize>) {
        let now = self.ports.clock.now();
        let next_poll = self.poll.saturating_sub(elapsed(began, now)).max(MIN_REST);
        let wait = match rest {
            Rest::None => return,
            Rest::Poll => next_poll,
            // (A whole poll: the end of the batch before wakes it anyway.)
            Rest::Held => self.poll,
            Rest::Until(end) => next_poll.min(elapsed(now, end)),
        };
        if rest == Rest::Held {
            tokio::select! {
                biased;
                () = self.ports.clock.sleep(wait) => {}
                _ = ended.changed() => {}
            }
        } else {
            self.ports.clock.sleep(wait).await;
        }
    }

    /// Re-checks the guards against the cluster as it is now, before the nodes `pending` (the
    /// rest of a batch) start; returns those that go now (the longest front that can be drained
    /// together, at least the first), each with its surge and scope (the services its polls
    /// judge) and accepted outages, or how and why the run must stop.
    async fn guard(
        &self,
        run: &RunRecord,
        pending: &[usize],
    ) -> Result<Vec<(usize, Drain, Vec<ServiceId>)>, (Halt, String)> {
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
        let settling = run.verifying_before(pending[0]);
        if let Some(why) = hooked_early(&snap, &ids, &settling) {
            return Err((Halt::Guard, why));
        }
        let sets: Vec<(NodeId, &PackageSet)> = pending
            .iter()
            .map(|&i| (run.nodes[i].node.clone(), run.packages_of(&run.nodes[i])))
            .collect();
        let drains = guard_settling(&snap, self.settings, &run.flags, &sets, &settling).map_err(
            |refusals| {
                let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
                (Halt::Guard, format!("stopped before node {host}: {}", reasons.join("; ")))
            },
        )?;
        Ok(pending
            .iter()
            .zip(drains)
            .map(|(&i, drain)| {
                let surged: Vec<ServiceId> =
                    drain.surge.iter().map(|s| s.service.clone()).collect();
                let scope = services_on(&snap, &run.nodes[i].node, &surged);
                (i, drain, scope)
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
        metrics::set(metrics::RUN_HELD, &[], 0);
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
