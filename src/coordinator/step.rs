//! One step of the node in progress: its phase's action (once), one observation, one verdict
//! with the phase's deadline applied in one place ([`deadline`]), and one handler per verdict.

use std::collections::BTreeSet;
use std::time::Duration;

use super::act::Acted;
use super::hooks::Hooked;
use super::{Coordinator, CoordinatorError, agent_target};
use crate::events::Event;
use crate::machine::decide::{MissedScaleDown, Observation, Verdict, condition, deadline};
use crate::machine::{NodeProgress, Phase, elapsed};
use crate::metrics;
use crate::model::hooks::HookPoint;
use crate::model::{AgentReport, DebVersion, Mode, NodeId, PackageSet, ServiceId};
use crate::ports::{Agents, Clock, Lists, OpKey, PortError, StateStore, Swarm};
use crate::run::RunRecord;
use jiff::Timestamp;

/// The action already carried out by this coordinator: (node index, phase, node ID, and for
/// the actions that scale surges back, the services they left for batch-mates: once those are
/// no longer held, the action is carried out again and scales them back too).
pub(crate) type ActedKey = Option<(usize, Phase, NodeId, BTreeSet<ServiceId>)>;

/// How long a follower rests after a step (see [`Coordinator::rest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// Not at all: a phase was entered, or a node turned to its recovery.
    None,
    /// Until the next poll.
    Poll,
    /// Until the next poll, or the end of the window (warm-up, monitor) that ends earlier.
    Until(Timestamp),
    /// Held for the batch before: until the next poll, or that batch's end.
    Held,
}

/// What carrying out the phase's action came to.
enum Acting {
    /// Done now or earlier: observe.
    Done,
    /// The node joined again under a new ID: record it.
    Rejoined(NodeId),
    /// Nothing is judged this time: a verdict to apply as it is.
    Verdict(Verdict),
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// One step of node `i`: its phase's action once, then one observation and its verdict;
    /// returns how long to rest before the next.
    pub(crate) async fn step_node(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
        acted: &mut ActedKey,
    ) -> Result<Rest, CoordinatorError> {
        let p = &run.nodes[i];
        let held = run.held_by_mates(i);
        let left = run.left_to_others(i);
        let (verdict, report) = match self.act_once(token, run, i, acted, &left).await? {
            Acting::Rejoined(new_id) => {
                return self.on_rejoined(token, i, p, new_id).await.map(|()| Rest::None);
            }
            Acting::Verdict(v) => (v, None),
            Acting::Done => self.observe_node(run, i, &held).await,
        };
        // The action and the observation took time: transitions are stamped now, so each phase's
        // span covers its own action.
        let now = self.ports.clock.now();
        let verdict = self.deadline(run, i, run.gate(i, verdict), now);
        tracing::debug!(node = %p.hostname, phase = ?p.phase, ?verdict, "observed");
        match verdict {
            Verdict::Complete => self.on_complete(token, run, i, report.as_ref(), now).await,
            Verdict::Wait(_) => self.on_wait(token, i, p).await.map(|()| Rest::Poll),
            Verdict::Postponed(_) => Ok(Rest::Poll),
            Verdict::Held(_) => self.on_held(token, i, p, now).await.map(|()| Rest::Held),
            Verdict::Monitoring => self.on_monitoring(token, i, p, now).await,
            Verdict::Rescale(missed) => {
                self.on_rescale(token, i, p, &missed, now).await.map(|()| Rest::Poll)
            }
            Verdict::Fail(why) => {
                self.fail_node(token, i, p, &run.id, why).await.map(|()| Rest::None)
            }
            Verdict::Kick(why) => self.kick(token, run, i, &why, now).await.map(|()| Rest::Poll),
            Verdict::Rejoin => {
                tracing::warn!(node = %p.hostname, "engine runs but the node is not in the swarm: rejoining");
                self.update_node(token, i, p.phase, |n| Ok(n.needs_rejoin(now)?))
                    .await
                    .map(|_| Rest::None)
            }
        }
    }

    /// The phase's time limit applied to `verdict`, counted by [`RunRecord::clock`]: none while
    /// the node is held for the batch before.
    fn deadline(&self, run: &RunRecord, i: usize, verdict: Verdict, now: Timestamp) -> Verdict {
        let p = &run.nodes[i];
        match run.clock(i) {
            None => verdict,
            Some(since) if since == p.phase_started => {
                deadline(p, verdict, &self.settings.timeouts, now)
            }
            Some(since) => {
                let counted = NodeProgress { phase_started: since, ..p.clone() };
                deadline(&counted, verdict, &self.settings.timeouts, now)
            }
        }
    }

    /// Carries out the phase's action unless this coordinator already did. A transient failure
    /// (unreachable, busy) postpones it; an order refused as stale means the lock is lost. A
    /// surge waits until the node's batch-mates are all paused; a node started early whose
    /// batch before failed fails too (and is restored) without acting.
    async fn act_once(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
        acted: &mut ActedKey,
        held: &BTreeSet<ServiceId>,
    ) -> Result<Acting, CoordinatorError> {
        let p = &run.nodes[i];
        let left_for_mates = match p.phase {
            Phase::VerifyConverged | Phase::Restore => held.clone(),
            _ => BTreeSet::new(),
        };
        let key = Some((i, p.phase, p.node.clone(), left_for_mates));
        if let Some(why) = run.failed_before(i) {
            return Ok(Acting::Verdict(Verdict::Fail(why)));
        }
        if *acted == key {
            return Ok(Acting::Done);
        }
        if let Some(why) = run.unpaused_mates(i).filter(|_| p.phase == Phase::Surge) {
            return Ok(Acting::Verdict(Verdict::Postponed(why)));
        }
        let now = self.ports.clock.now();
        let since = run.clock(i).unwrap_or(now);
        let left =
            p.phase.timeout(&self.settings.timeouts).map(|t| t.saturating_sub(elapsed(since, now)));
        let op = OpKey { run_id: run.id.clone(), token, limit: left };
        let action = self.bounded(
            left,
            self.act(p, run.packages_of(p), &op, held, run.flags.backup_managers),
            p,
        );
        Ok(match action.await {
            Ok(Acted::Done) => {
                *acted = key;
                if p.phase == Phase::VerifyConverged && held.is_empty() && p.rescaled_at.is_none() {
                    self.scaled_back(token, i, p).await?;
                }
                Acting::Done
            }
            Ok(Acted::Rejoined(new_id)) => Acting::Rejoined(new_id),
            Err(e) if e.is_transient() => {
                tracing::debug!(node = %p.hostname, phase = ?p.phase, error = %e, kind = e.kind(), "action postponed");
                Acting::Verdict(Verdict::Postponed(e.to_string()))
            }
            Err(PortError::Stale(e)) => {
                // Lost lock, or an agent that saw a higher token elsewhere (a store removed by
                // hand, a node that joined another swarm): only the store can tell which.
                tracing::warn!(node = %p.hostname, error = %e, "the agent refused our token as stale");
                self.load_retrying().await?.doc.check(token, self.ports.clock.now())?;
                Acting::Verdict(Verdict::Fail(format!("{:?} on {}: {e}", p.phase, p.hostname)))
            }
            Err(e) => {
                Acting::Verdict(Verdict::Fail(format!("{:?} on {}: {e}", p.phase, p.hostname)))
            }
        })
    }

    /// The node's surges are all scaled back (its verify action, nothing left to others): noted,
    /// for the next batch's early start (see [`RunRecord::early_start`]).
    async fn scaled_back(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
    ) -> Result<(), CoordinatorError> {
        let now = self.ports.clock.now();
        self.update_node(token, i, p.phase, |n| {
            n.rescaled_at = Some(now);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// `action`, given up once the phase's time `left` has passed (plus a second, so that the
    /// verdict that follows finds the phase past its limit and fails it): an agent that never
    /// answers, a paused node or a hung repository must not hold the run and its lock. The
    /// abandoned order is bounded on the node by the same limit (see [`OpKey::limit`]).
    async fn bounded<T>(
        &self,
        left: Option<Duration>,
        action: impl Future<Output = Result<T, PortError>>,
        p: &NodeProgress,
    ) -> Result<T, PortError> {
        let Some(left) = left else { return action.await };
        tokio::select! {
            r = action => r,
            () = self.ports.clock.sleep(left + Duration::from_secs(1)) => Err(PortError::Unavailable(format!(
                "the {} action on {} did not finish within the phase's time limit",
                p.phase.name(),
                p.hostname
            ))),
        }
    }

    /// The swarm and the node's agent now, judged (the deadline not yet applied).
    async fn observe_node(
        &self,
        run: &RunRecord,
        i: usize,
        held: &BTreeSet<ServiceId>,
    ) -> (Verdict, Option<AgentReport>) {
        let p = &run.nodes[i];
        // Polls read the node's scope; a node started before scopes were kept, the cluster.
        let read = match p.scope.as_slice() {
            [] => self.ports.swarm.snapshot().await,
            scope => self.ports.swarm.scoped(&p.node, scope).await,
        };
        let snap = match read {
            Ok(s) => s,
            Err(e) => return (Verdict::Postponed(format!("cannot observe the swarm: {e}")), None),
        };
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        let report = self.ports.agents.describe(&target, Lists::AsTheyAre).await;
        let agent = report.as_ref().ok();
        let engine_package = &self.settings.engine_packages[0];
        let mates_from = run.mates_from(i);
        let mates = run.mate_nodes(i);
        let obs = Observation {
            snap: &snap,
            agent,
            packages: run.packages_of(p),
            engine_package,
            held,
            mates_from: &mates_from,
            mates: &mates,
        };
        let now = self.ports.clock.now();
        (condition(p, &obs, &self.settings.timeouts, now), agent.cloned())
    }

    /// The phase is done: enter the next one (Prefetch also records what a rollback reinstalls),
    /// after the node's hook at that point, if any (see [`super::hooks`]).
    async fn on_complete(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
        report: Option<&AgentReport>,
        now: jiff::Timestamp,
    ) -> Result<Rest, CoordinatorError> {
        let p = &run.nodes[i];
        match p.phase {
            Phase::Prefetch => match self.hook(token, run, i, HookPoint::BeforeDrain, "").await? {
                Hooked::Go => {}
                Hooked::Later(why) => {
                    tracing::info!(node = %p.hostname, %why, "hooks.before_drain is asked again at the next poll");
                    return Ok(Rest::Poll);
                }
                Hooked::Failed(why) => {
                    return self.fail_node(token, i, p, &run.id, why).await.map(|()| Rest::None);
                }
            },
            // (A node verified after its rollback is not upgraded: its on_failure hook runs.)
            Phase::VerifyConverged if !p.rolled_back => self.after_verify(token, run, i).await?,
            _ => {}
        }
        let previous = report.map(|r| installed_subset(&r.installed, run.packages_of(p)));
        // At most 20 names a node: the store's writes stay bounded.
        let standalone = report.map(|r| crate::model::Standalone::names(&r.standalone, 20));
        // This run's archive of the node's swarm state, once its agent lists one.
        let archive = report.and_then(|r| {
            r.swarm_backups
                .iter()
                .find(|a| crate::model::swarm_backup::run_of(a) == Some(run.id.as_str()))
        });
        let entered = self
            .update_node(token, i, p.phase, |n| {
                if n.swarm_backup.is_none() {
                    n.swarm_backup = archive.cloned();
                }
                match n.phase {
                    Phase::Prefetch => {
                        if let Some(prev) = previous.clone() {
                            n.record_previous(prev);
                        }
                        n.standalone_before = n.standalone_before.take().or(standalone.clone());
                        n.advance(now)?
                    }
                    Phase::Rollback => n.rolled_back(now)?,
                    Phase::Restore => n.restored(now)?,
                    _ => n.advance(now)?,
                }
                if matches!(n.phase, Phase::Done | Phase::RolledBack | Phase::Restored) {
                    n.standalone_after = standalone.clone();
                }
                Ok(())
            })
            .await?;
        tracing::info!(run = %run.id, node = %p.hostname, phase = ?entered, token, "phase entered");
        metrics::observe(
            metrics::PHASE_SECONDS,
            &[("phase", &p.phase.name())],
            elapsed(p.phase_started, now).as_secs_f64(),
        );
        metrics::set_phase(&p.hostname, &entered.name());
        if p.phase == Phase::Rollback {
            metrics::inc(metrics::ROLLBACKS, &[]);
            self.emit(Event::RolledBack { run: run.id.clone(), node: p.hostname.clone() });
        }
        if entered == Phase::Done {
            let started = p.history.first().map_or(p.phase_started, |s| s.end);
            self.emit(Event::NodeDone {
                run: run.id.clone(),
                node: p.hostname.clone(),
                seconds: elapsed(started, now).as_secs(),
            });
        }
        Ok(Rest::None)
    }

    /// Node `i` is Down in the swarm's view while its engine runs: its engine is restarted, once
    /// in the phase (marked first, so that a restart that fails or hangs is not repeated).
    async fn kick(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
        why: &str,
        now: jiff::Timestamp,
    ) -> Result<(), CoordinatorError> {
        let p = &run.nodes[i];
        tracing::warn!(node = %p.hostname, %why, "restarting a node's engine that stays Down");
        self.update_node(token, i, p.phase, |n| {
            n.kicked_at = Some(now);
            Ok(())
        })
        .await?;
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        let op =
            OpKey { run_id: run.id.clone(), token, limit: Some(self.settings.timeouts.restart) };
        if let Err(e) = self.ports.agents.restart_engine_again(&target, &op).await {
            tracing::warn!(node = %p.hostname, error = %e, "the engine restart of a node that stays Down failed: its WaitReady goes on to its limit");
        }
        Ok(())
    }

    /// Not yet: a condition that held (verify's convergence, surge's replicas) starts its window
    /// again.
    async fn on_wait(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
    ) -> Result<(), CoordinatorError> {
        let windowed = matches!(p.phase, Phase::VerifyConverged | Phase::Surge);
        if windowed && (p.converged_since.is_some() || p.held_since.is_some()) {
            self.update_node(token, i, p.phase, |n| {
                n.converged_since = None;
                n.held_since = None;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// The condition holds: its window (monitor, warm-up) starts now unless it already runs;
    /// rest until it ends.
    async fn on_monitoring(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
        now: jiff::Timestamp,
    ) -> Result<Rest, CoordinatorError> {
        if p.converged_since.is_none() {
            self.update_node(token, i, p.phase, |n| {
                n.converged_since = Some(now);
                Ok(())
            })
            .await?;
        }
        let window = match p.phase {
            Phase::Surge => self.settings.timeouts.warmup,
            Phase::VerifyConverged => self.settings.timeouts.monitor,
            _ => return Ok(Rest::Poll),
        };
        let since = p.converged_since.unwrap_or(now);
        Ok(since.checked_add(window).map_or(Rest::Poll, Rest::Until))
    }

    /// The surge is done and held for the batch before: noted once, so that the report counts
    /// the wait as the pipeline's, not the surge's.
    async fn on_held(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
        now: jiff::Timestamp,
    ) -> Result<(), CoordinatorError> {
        if p.held_since.is_none() {
            self.update_node(token, i, p.phase, |n| {
                n.held_since = Some(now);
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// The swarm missed a scale-down: write the same replica count again (see [`MissedScaleDown`]).
    async fn on_rescale(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
        missed: &[MissedScaleDown],
        now: jiff::Timestamp,
    ) -> Result<(), CoordinatorError> {
        let services: Vec<_> = missed.iter().map(|m| m.service.clone()).collect();
        let snap = self.decide_for(token, &p.node, &services).await;
        for m in missed {
            tracing::warn!(
                node = %p.hostname,
                service = %m.name,
                "the swarm still runs {} slots of {} for {} replicas after the scale-down: writing replicas={} again",
                m.slots,
                m.name,
                m.replicas,
                m.replicas
            );
            // Only while the spec still says that count: a node of the next batch may have
            // surged the service since the observation.
            let write = match snap.as_ref().map(|s| s.service(&m.service)) {
                Ok(Some(svc)) if svc.mode == (Mode::Replicated { replicas: m.replicas }) => {
                    self.ports.swarm.scale(&m.service, svc.version, m.replicas).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.clone()),
            };
            if let Err(e) = write {
                tracing::warn!(node = %p.hostname, service = %m.name, error = %e, "writing the scale again failed; waiting");
            }
        }
        self.update_node(token, i, p.phase, |n| {
            n.rescaled_at = Some(now);
            n.converged_since = None;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The node joined again under `new_id`: its progress follows it.
    async fn on_rejoined(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
        new_id: NodeId,
    ) -> Result<(), CoordinatorError> {
        tracing::info!(node = %p.hostname, new_id = %new_id, "node rejoined");
        let now = self.ports.clock.now();
        self.update_node(token, i, p.phase, |n| Ok(n.rejoined(new_id.clone(), now)?))
            .await
            .map(drop)
    }
}

/// The installed versions of the run's packages: what a rollback reinstalls.
fn installed_subset(
    installed: &std::collections::BTreeMap<String, DebVersion>,
    packages: &PackageSet,
) -> PackageSet {
    PackageSet(
        installed
            .iter()
            .filter(|(k, _)| packages.0.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}
