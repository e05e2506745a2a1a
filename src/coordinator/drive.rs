//! The loop: read the run from the store, decide the next step, act, observe, transition.

use super::act::Acted;
use super::{Coordinator, CoordinatorError};
use crate::events::Event;
use crate::machine::decide::{Observation, Verdict, evaluate};
use crate::machine::{Phase, elapsed};
use crate::metrics;
use crate::model::{AgentStatus, NodeId, PackageSet};
use crate::planner::{STOP_LABEL, Surge, guard, stop_requested};
use crate::ports::{AgentTarget, Agents, Clock, OpKey, PortError, StateStore, Swarm};
use crate::run::{Outcome, RunRecord, RunStep};

/// The action already carried out by this coordinator: (node index, phase, node ID).
type ActedKey = Option<(usize, Phase, NodeId)>;

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Drives the run held with `token` to its end.
    pub(crate) async fn drive(&self, token: u64) -> Result<RunRecord, CoordinatorError> {
        let mut acted: ActedKey = None;
        let mut renewed = self.ports.clock.now();
        metrics::set(metrics::LOCK_HELD, &[], 1.0);
        loop {
            let now = self.ports.clock.now();
            if elapsed(renewed, now) >= self.settings.lease / 3 {
                self.renew(token).await?;
                renewed = now;
            }
            let doc = self.load_retrying().await?.doc;
            doc.check(token, now)?;
            let run = doc.run.ok_or(CoordinatorError::NothingToResume)?;
            match run.next_step() {
                RunStep::Finish(outcome, reason) => return self.finish(token, outcome, reason).await,
                RunStep::Start(i) => {
                    let surge = match self.guard(&run, i).await {
                        Ok(surge) => surge,
                        Err((outcome, why)) => return self.finish(token, outcome, why).await,
                    };
                    tracing::info!(run = %run.id, node = %run.nodes[i].hostname, token, "node started");
                    metrics::set_phase(&run.nodes[i].hostname, &Phase::Prefetch.name());
                    self.update_node(token, i, Phase::Pending, |n| {
                        n.surge = surge.clone();
                        Ok(n.start(now)?)
                    })
                    .await?;
                }
                RunStep::Continue(i) => self.step_node(token, &run, i, &mut acted).await?,
            }
        }
    }

    /// Re-checks the guards against the cluster as it is now, before a node starts; returns the
    /// node's surge, or how and why the run must stop here (an operator's stop label: aborted).
    async fn guard(&self, run: &RunRecord, i: usize) -> Result<Vec<Surge>, (Outcome, String)> {
        let host = &run.nodes[i].hostname;
        let failed = |why: String| (Outcome::Failed, why);
        let snap = self.observe_all().await.map_err(|e| failed(format!("cannot observe the cluster before node {host}: {e}")))?;
        if let Some(marked) = stop_requested(&snap) {
            return Err((
                Outcome::Aborted,
                format!(
                    "stopped before node {host} by the label {STOP_LABEL} on node {marked}: remove it (`docker node update --label-rm {STOP_LABEL} {marked}`), then `swarm-upgrade run` again"
                ),
            ));
        }
        guard(&snap, self.settings, &run.flags, &run.nodes[i].node, &run.packages).map_err(|refusals| {
            let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            failed(format!("stopped before node {host}: {}", reasons.join("; ")))
        })
    }

    async fn finish(&self, token: u64, outcome: Outcome, reason: String) -> Result<RunRecord, CoordinatorError> {
        let now = self.ports.clock.now();
        let record = self
            .update(|doc| {
                if let Some(run) = doc.run.as_ref().filter(|r| r.finished() && doc.lock.is_none() && doc.last_token == token) {
                    // A retry of this very write: it landed (no one has taken the lock since).
                    return Ok(run.clone());
                }
                doc.check(token, now)?;
                let run = doc.run.as_mut().ok_or(CoordinatorError::NothingToResume)?;
                run.finish(outcome, reason.clone(), now);
                let record = run.clone();
                doc.release(token);
                Ok(record)
            })
            .await?;
        tracing::info!(run = %record.id, outcome = ?outcome, %reason, "run finished");
        metrics::set(metrics::LOCK_HELD, &[], 0.0);
        let outcome_name = format!("{outcome:?}").to_lowercase();
        metrics::inc(metrics::RUNS, &[("outcome", &outcome_name)]);
        self.emit(Event::RunFinished { run: record.id.clone(), outcome: outcome_name, reason: record.reason.clone().unwrap_or_default() });
        Ok(record)
    }

    /// One step of node `i`: its phase's action once, then one observation and its verdict.
    async fn step_node(&self, token: u64, run: &RunRecord, i: usize, acted: &mut ActedKey) -> Result<(), CoordinatorError> {
        let p = &run.nodes[i];
        let now = self.ports.clock.now();
        let key = Some((i, p.phase, p.node.clone()));
        if *acted != key {
            let op = OpKey { run_id: run.id.clone(), token };
            match self.with_lease(token, self.act(p, &run.packages, &op)).await? {
                Ok(Acted::Done) => *acted = key,
                Ok(Acted::Rejoined(new_id)) => {
                    tracing::info!(node = %p.hostname, new_id = %new_id, "node rejoined");
                    return self.update_node(token, i, p.phase, |n| Ok(n.rejoined(new_id.clone(), now)?)).await;
                }
                Err(PortError::Unavailable(e)) if !p.timed_out(&self.settings.timeouts, now) => {
                    tracing::debug!(node = %p.hostname, phase = ?p.phase, error = %e, "action postponed");
                    self.ports.clock.sleep(self.poll).await;
                    return Ok(());
                }
                Err(e) => return self.fail_node(token, i, p, &run.id, format!("{:?} on {}: {e}", p.phase, p.hostname)).await,
            }
        }
        let snap = match self.ports.swarm.snapshot().await {
            Ok(s) => s,
            Err(e) if p.timed_out(&self.settings.timeouts, now) => {
                return self
                    .fail_node(token, i, p, &run.id, format!("{:?} on {}: cannot observe the swarm: {e}", p.phase, p.hostname))
                    .await;
            }
            Err(_) => {
                self.ports.clock.sleep(self.poll).await;
                return Ok(());
            }
        };
        let target = AgentTarget { hostname: p.hostname.clone(), addr: p.addr.clone(), node_id: p.node.0.clone() };
        let agent = match self.ports.agents.describe(&target).await {
            Ok(r) => AgentStatus::Reachable(r),
            Err(e) => AgentStatus::Unreachable { error: e.to_string() },
        };
        let report = match &agent {
            AgentStatus::Reachable(r) => Some(r),
            AgentStatus::Unreachable { .. } => None,
        };
        // The action and the observation took time: transitions are stamped now, so each phase's
        // span covers its own action.
        let now = self.ports.clock.now();
        let engine_package = &self.settings.engine_packages[0];
        let obs = Observation { snap: &snap, agent: report, packages: &run.packages, engine_package };
        let verdict = evaluate(p, &obs, &self.settings.timeouts, now);
        tracing::debug!(node = %p.hostname, phase = ?p.phase, ?verdict, "observed");
        match verdict {
            Verdict::Complete => {
                let previous = report.map(|r| installed_subset(&r.installed, &run.packages));
                let entered = self
                    .update_run(token, |r| {
                        let n = &mut r.nodes[i];
                        if n.phase != p.phase {
                            // An earlier attempt of this very write landed (see `update_node`).
                            return Ok(n.phase);
                        }
                        match n.phase {
                            Phase::Prefetch => {
                                if let Some(prev) = previous.clone() {
                                    n.record_previous(prev);
                                }
                                n.advance(now)?
                            }
                            Phase::Rollback => n.rolled_back(now)?,
                            Phase::Restore => n.restored(now)?,
                            _ => n.advance(now)?,
                        }
                        Ok(n.phase)
                    })
                    .await?;
                tracing::info!(run = %run.id, node = %p.hostname, phase = ?entered, token, "phase entered");
                metrics::observe(metrics::PHASE_SECONDS, &[("phase", &p.phase.name())], elapsed(p.phase_started, now).as_secs_f64());
                metrics::set_phase(&p.hostname, &entered.name());
                if p.phase == Phase::Rollback {
                    metrics::inc(metrics::ROLLBACKS, &[]);
                    self.emit(Event::RolledBack { run: run.id.clone(), node: p.hostname.clone() });
                }
                if entered == Phase::Done {
                    let started = p.history.first().map_or(p.phase_started, |s| s.end);
                    self.emit(Event::NodeDone { run: run.id.clone(), node: p.hostname.clone(), seconds: elapsed(started, now).as_secs() });
                }
            }
            Verdict::Wait(_) => {
                if p.phase == Phase::VerifyConverged && p.converged_since.is_some() {
                    self.update_run(token, |r| {
                        r.nodes[i].converged_since = None;
                        Ok(())
                    })
                    .await?;
                }
                self.ports.clock.sleep(self.poll).await;
            }
            Verdict::Monitoring => {
                if p.converged_since.is_none() {
                    self.update_run(token, |r| {
                        r.nodes[i].converged_since = Some(now);
                        Ok(())
                    })
                    .await?;
                }
                self.ports.clock.sleep(self.poll).await;
            }
            Verdict::Rescale(missed) => {
                for m in &missed {
                    tracing::warn!(
                        node = %p.hostname,
                        service = %m.name,
                        "the swarm still runs {} slots of {} for {} replicas after the scale-down: writing replicas={} again",
                        m.slots,
                        m.name,
                        m.replicas,
                        m.replicas
                    );
                    if let Err(e) = self.ports.swarm.scale(&m.service, m.replicas).await {
                        tracing::warn!(node = %p.hostname, service = %m.name, error = %e, "writing the scale again failed; waiting");
                    }
                }
                self.update_node(token, i, p.phase, |n| {
                    n.rescaled_at = Some(now);
                    n.converged_since = None;
                    Ok(())
                })
                .await?;
                self.ports.clock.sleep(self.poll).await;
            }
            Verdict::Fail(why) => self.fail_node(token, i, p, &run.id, why).await?,
            Verdict::Rejoin => {
                tracing::warn!(node = %p.hostname, "engine runs but the node is not in the swarm: rejoining");
                self.update_node(token, i, p.phase, |n| Ok(n.needs_rejoin(now)?)).await?;
            }
        }
        Ok(())
    }
}

/// The installed versions of the run's packages: what a rollback reinstalls.
fn installed_subset(installed: &std::collections::BTreeMap<String, crate::model::DebVersion>, packages: &PackageSet) -> PackageSet {
    PackageSet(installed.iter().filter(|(k, _)| packages.0.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect())
}
