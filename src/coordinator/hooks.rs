//! Hooks carried out (see [`crate::model::hooks`]): the node's agent runs its own hook at each
//! point, and the run records what came of it. `before_drain` at the end of the node's prefetch:
//! its failure fails the node there, untouched (it is restored, and the run halts).
//! `after_verify` once its verification passed: its failure, or no way to run it, marks the node
//! for attention and the run goes on. `on_failure` once its part ended in failure, best effort.
//! An agent is asked once per order (fence and point): an answer lost on the way is asked for
//! again and given from the agent's memory, not run twice; a coordinator that took over runs
//! the hook again.

use std::time::Duration;

use super::{Coordinator, CoordinatorError, agent_target};
use crate::events::Event;
use crate::model::hooks::{HookPoint, HookRun};
use crate::ports::{Agents, Clock, HookOrder, Lists, OpKey, PortError, StateStore, Swarm};
use crate::run::RunRecord;

/// What the coordinator allows a hook's order beyond the coordinator's own `hooks.timeout` (the
/// agent kills the hook at its node's own).
const HOOK_MARGIN: Duration = Duration::from_secs(30);

/// How long a failed node's agent is given to say whether it has an `on_failure` hook: a
/// describe of the lists as they are takes seconds, and the agent is often the one gone.
pub const ON_FAILURE_ASK: Duration = Duration::from_secs(30);

/// What came of asking for a hook before a node goes on.
pub(super) enum Hooked {
    /// None configured, or it succeeded: go on.
    Go,
    /// Not now (its agent unreachable or busy): ask again at the next poll.
    Later(String),
    /// It failed, or could not be run: why, for people.
    Failed(String),
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Runs node `i`'s hook at `point` (told `reason` for `on-failure`) and records its run in
    /// the node, if its phase is still the one read.
    pub(super) async fn hook(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
        point: HookPoint,
        reason: &str,
    ) -> Result<Hooked, CoordinatorError> {
        let p = &run.nodes[i];
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        let order = HookOrder { point, target: run.target.to_string(), reason: reason.to_string() };
        let limit = self.settings.hooks.timeout + HOOK_MARGIN;
        let op = OpKey { run_id: run.id.clone(), token, limit: Some(limit) };
        let ran = match self.ports.agents.run_hook(&target, &order, &op).await {
            Ok(None) => return Ok(Hooked::Go),
            Ok(Some(ran)) => ran,
            Err(e) if e.is_transient() => return Ok(Hooked::Later(e.to_string())),
            Err(PortError::Stale(e)) => {
                self.load_retrying().await?.doc.check(token, self.ports.clock.now())?;
                return Ok(Hooked::Failed(format!("hooks.{} on {}: {e}", point.key(), p.hostname)));
            }
            Err(e) => {
                let why = format!("hooks.{} could not be run on {}: {e}", point.key(), p.hostname);
                return Ok(Hooked::Failed(why));
            }
        };
        self.record_hook(token, i, p.phase, &ran).await?;
        if ran.succeeded() {
            tracing::info!(run = %run.id, node = %p.hostname, hook = point.name(), millis = ran.millis, "hook succeeded");
            return Ok(Hooked::Go);
        }
        let why = ran.summary();
        tracing::warn!(run = %run.id, node = %p.hostname, hook = point.name(), %why, "hook failed");
        self.emit(Event::HookFailed {
            run: run.id.clone(),
            node: p.hostname.clone(),
            hook: point.key().to_string(),
            why: why.clone(),
        });
        Ok(Hooked::Failed(why))
    }

    /// After node `i`'s verification passed: its `after_verify` hook; anything but success
    /// marks it for attention (the upgrade stays).
    pub(super) async fn after_verify(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
    ) -> Result<(), CoordinatorError> {
        let why = match self.hook(token, run, i, HookPoint::AfterVerify, "").await? {
            Hooked::Go => return Ok(()),
            Hooked::Later(e) => format!("hooks.after_verify could not be run: {e}"),
            Hooked::Failed(why) => why,
        };
        let p = &run.nodes[i];
        self.update_node(token, i, p.phase, |n| {
            n.attention = Some(why.clone());
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Node `i`'s part ended in failure: its `on_failure` hook, once (a coordinator that finds
    /// one recorded does not run it again), best effort, if its agent answers and names one.
    pub(super) async fn on_failure(
        &self,
        token: u64,
        run: &RunRecord,
        i: usize,
    ) -> Result<(), CoordinatorError> {
        let p = &run.nodes[i];
        let key = (run.id.clone(), i);
        let seen = !self.failure_seen.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
        if seen || p.hooks.iter().any(|h| h.point == HookPoint::OnFailure) {
            return Ok(());
        }
        // Only a node whose agent answers, within [`ON_FAILURE_ASK`], and names the hook is
        // asked: a failed node's agent is often the one gone (a hook's order may wait minutes).
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        let configured = tokio::select! {
            r = self.ports.agents.describe(&target, Lists::AsTheyAre) => r.is_ok_and(|r| {
                r.hooks.iter().any(|h| h.point == HookPoint::OnFailure)
            }),
            () = self.ports.clock.sleep(ON_FAILURE_ASK) => {
                tracing::warn!(run = %run.id, node = %p.hostname, "hooks.on_failure not run: the node's agent did not say within {} s whether it has one", ON_FAILURE_ASK.as_secs());
                false
            }
        };
        if !configured {
            return Ok(());
        }
        let reason = p.reason.clone().unwrap_or_default();
        match self.hook(token, run, i, HookPoint::OnFailure, &reason).await? {
            Hooked::Go | Hooked::Failed(_) => {}
            Hooked::Later(e) => {
                tracing::warn!(run = %run.id, node = %p.hostname, error = %e, "hooks.on_failure could not be run");
            }
        }
        Ok(())
    }

    /// Before the run ends: the `on_failure` hook of every node whose part ended in failure and
    /// has none recorded (one that failed under a coordinator this one took over from).
    pub(super) async fn on_failures(&self, token: u64) -> Result<(), CoordinatorError> {
        let Some(run) = self.load_retrying().await?.doc.run else { return Ok(()) };
        let failed = (0..run.nodes.len()).filter(|&i| {
            let phase = run.nodes[i].phase;
            phase.is_terminal() && phase != crate::machine::Phase::Done
        });
        for i in failed.collect::<Vec<_>>() {
            self.on_failure(token, &run, i).await?;
        }
        Ok(())
    }

    /// Records `ran` in node `i`, if it is still in `phase`.
    async fn record_hook(
        &self,
        token: u64,
        i: usize,
        phase: crate::machine::Phase,
        ran: &HookRun,
    ) -> Result<(), CoordinatorError> {
        self.update_node(token, i, phase, |n| {
            n.hooks.push(ran.clone());
            Ok(())
        })
        .await
        .map(drop)
    }
}
