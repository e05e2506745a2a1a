//! The coordinator: fetches, decides with the pure modules, acts through the ports. Every step
//! starts from the store and the cluster, so a coordinator on another manager can take over at
//! any point; the one thing it keeps between steps is which phase's action it has already
//! carried out (a coordinator that takes over simply carries it out again: actions are
//! idempotent).

mod act;
mod ahead;
mod drive;
mod gate;
mod hold;
mod hooks;
pub use hooks::ON_FAILURE_ASK;
mod step;
mod store;

use std::time::Duration;

use crate::config::Settings;
use crate::lock::{LEASE_MARGIN, LockError, Sighting};
use crate::machine::TransitionError;
use futures_util::{StreamExt, stream};

use crate::model::{AgentStatus, Autolock, ClusterSnapshot, Node, NodeId};
use crate::planner::{self, PlanRequest, Refusal};
use crate::ports::{
    AgentTarget, Agents, Alerts, Clock, DESCRIBE_LIMIT, Lists, PortError, StateStore, Swarm,
};
use crate::run::{RunFlags, RunRecord};

/// The ports a coordinator acts through.
pub struct Ports<'a, S, A, St, C> {
    /// The swarm.
    pub swarm: &'a S,
    /// The agents.
    pub agents: &'a A,
    /// The lock and run store.
    pub store: &'a St,
    /// The clock.
    pub clock: &'a C,
}

/// Why a coordinator stopped without a finished run.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Preflight refused; nothing was changed.
    #[error("refused before touching anything:\n{}", list(.0))]
    Refused(Vec<Refusal>),
    /// Every node is at the target already.
    #[error("nothing to do: every selected node is already at {0}")]
    NothingToDo(String),
    /// A scheduled run found an operator's stop label (on the node named): it does nothing.
    #[error(
        "upgrades are stopped by the label {label} on node {0}: nothing was changed; remove it (`docker node update --label-rm {label} {0}`) when upgrades may go on",
        label = planner::STOP_LABEL
    )]
    Stopped(String),
    /// The lock is held by another coordinator.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// An earlier run did not finish.
    #[error(
        "run {0} was interrupted and is not finished: resume it with `swarm-upgrade resume`, or stop it with `swarm-upgrade abort` then `swarm-upgrade resume`"
    )]
    Unfinished(String),
    /// The operator did not confirm the plan (the answer, or why there was none): nothing was
    /// changed.
    #[error("the plan was not confirmed ({0}): nothing was changed")]
    Declined(String),
    /// There is nothing to resume.
    #[error("there is no unfinished run to resume (see `swarm-upgrade status`)")]
    NothingToResume,
    /// A port failed in a way the coordinator cannot recover from.
    #[error("{0}")]
    Port(#[from] PortError),
    /// A bug: a transition from the wrong phase.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

fn list(r: &[Refusal]) -> String {
    r.iter()
        .map(|r| {
            let at = r.node.as_ref().map(|n| format!("[{n}] ")).unwrap_or_default();
            format!("  - {at}{r}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plan with the alert gate's answer, or every refusal: the planner's and the gate's together
/// (a plan with nothing to do needs no gate).
fn with_gate(
    planned: Result<planner::Plan, Vec<Refusal>>,
    gate: Result<Option<crate::model::alerts::GateAnswer>, Refusal>,
) -> Result<planner::Plan, Vec<Refusal>> {
    match (planned, gate) {
        (Ok(mut plan), Ok(gate)) => {
            plan.gate = gate;
            Ok(plan)
        }
        (Ok(plan), Err(_)) if plan.nodes.is_empty() => Ok(plan),
        (Ok(_), Err(refusal)) => Err(vec![refusal]),
        (Err(refusals), Ok(_)) => Err(refusals),
        (Err(mut refusals), Err(refusal)) => {
            refusals.push(refusal);
            Err(refusals)
        }
    }
}

/// How many agents preflight asks at once.
const OBSERVE_AT_ONCE: usize = 16;

/// Where a node's agent answers: its address, named by its node ID (its certificate's name).
fn agent_target(hostname: &str, addr: &str, node: &crate::model::NodeId) -> AgentTarget {
    AgentTarget { hostname: hostname.to_string(), addr: addr.to_string(), node_id: node.0.clone() }
}

/// A coordinator for one run.
pub struct Coordinator<'a, S, A, St, C> {
    ports: Ports<'a, S, A, St, C>,
    settings: &'a Settings,
    holder: String,
    /// How often conditions are polled.
    pub poll: Duration,
    events: Option<crate::events::Sink>,
    /// The swarm's unlock key, when it was given (an autolocked swarm).
    unlock_key: Option<crate::model::UnlockKey>,
    /// Held across each write of the store: the nodes of a batch, stepped side by side, write
    /// one after another instead of losing compare-and-swap races to each other.
    writes: tokio::sync::Mutex<()>,
    /// The nodes' downloads fetched ahead ([`ahead`]).
    ahead: ahead::Ahead,
    /// Asked with the plan before a new run takes the lock (see [`Coordinator::with_confirm`]).
    confirm: Option<Confirm<'a>>,
    /// The alert gate's monitoring system, when one is configured ([`gate`]).
    alerts: Option<&'a dyn Alerts>,
    /// The nodes whose `on_failure` hook this coordinator has seen to already (asked, run or
    /// not configured), by run and index: the sweep before the run ends does not ask them again.
    failure_seen: std::sync::Mutex<std::collections::BTreeSet<(String, usize)>>,
}

/// Shows a plan to an operator and returns once they said yes, or why it may not run.
pub type Confirm<'a> = Box<dyn Fn(&planner::Plan) -> Result<(), String> + Send + Sync + 'a>;

impl<'a, S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'a, S, A, St, C> {
    /// A coordinator identified as `holder` (e.g. `manager1/4242`).
    pub fn new(
        ports: Ports<'a, S, A, St, C>,
        settings: &'a Settings,
        holder: impl Into<String>,
    ) -> Self {
        Coordinator {
            ports,
            settings,
            holder: holder.into(),
            poll: Duration::from_secs(1),
            events: None,
            unlock_key: None,
            writes: tokio::sync::Mutex::new(()),
            ahead: ahead::Ahead::default(),
            confirm: None,
            alerts: None,
            failure_seen: std::sync::Mutex::default(),
        }
    }

    /// Asks `alerts` before the run and before each node or batch, and holds the run while an
    /// alert that counts fires (see [`gate`]); `None`: no gate.
    pub fn with_alerts(mut self, alerts: Option<&'a dyn Alerts>) -> Self {
        self.alerts = alerts;
        self
    }

    /// Before a new run takes the lock, shows its plan with `confirm`, which returns once the
    /// plan may run (on a terminal: once the operator said yes); a refusal ends the run before
    /// anything is changed ([`CoordinatorError::Declined`]).
    pub fn with_confirm(mut self, confirm: Confirm<'a>) -> Self {
        self.confirm = Some(confirm);
        self
    }

    /// The swarm's unlock key, which an autolocked swarm needs before anything is upgraded (the
    /// agents on its managers unlock their restarted engines with the same key, from their own
    /// configuration).
    pub fn with_unlock_key(mut self, key: Option<crate::model::UnlockKey>) -> Self {
        self.unlock_key = key;
        self
    }

    /// Sends the run's events (start, each node done, failures, rollbacks, the end) to `sink`.
    pub fn with_events(mut self, sink: crate::events::Sink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Tells the outside world; never waits (a closed sink is ignored).
    pub(crate) fn emit(&self, event: crate::events::Event) {
        if let Some(sink) = &self.events {
            let _ = sink.send(event);
        }
    }

    fn emit_start(&self, run: &RunRecord, resumed: bool) {
        self.emit(crate::events::Event::RunStarted {
            run: run.id.clone(),
            target: run.target.to_string(),
            nodes: run.nodes.iter().map(|n| n.hostname.clone()).collect(),
            resumed,
        });
    }

    /// The cluster with every node's agent report, each node's package lists refreshed (once per
    /// node per run): [`OBSERVE_AT_ONCE`] agents asked at a time, each given [`DESCRIBE_LIMIT`].
    pub(crate) async fn observe_all(&self) -> Result<ClusterSnapshot, PortError> {
        let mut snap = self.ports.swarm.snapshot().await?;
        let reports: Vec<_> = stream::iter(&snap.nodes)
            .map(|n| async move { (n.id.clone(), self.agent_status(n, Lists::Refresh).await) })
            .buffer_unordered(OBSERVE_AT_ONCE)
            .collect()
            .await;
        snap.agents.extend(reports);
        self.judge_autolock(&mut snap).await?;
        Ok(snap)
    }

    /// The cluster with only `nodes`' agent reports, their lists as they are: what the guard
    /// before a batch needs, whatever the cluster's size.
    pub(crate) async fn observe_some(
        &self,
        nodes: &[NodeId],
    ) -> Result<ClusterSnapshot, PortError> {
        let mut snap = self.ports.swarm.snapshot().await?;
        let asked: Vec<&Node> = nodes.iter().filter_map(|id| snap.node(id)).collect();
        let reports: Vec<_> = stream::iter(asked)
            .map(|n| async move { (n.id.clone(), self.agent_status(n, Lists::AsTheyAre).await) })
            .buffer_unordered(OBSERVE_AT_ONCE)
            .collect()
            .await;
        snap.agents.extend(reports);
        self.judge_autolock(&mut snap).await?;
        Ok(snap)
    }

    /// A node's agent's report, or why there is none (an agent silent for [`DESCRIBE_LIMIT`]).
    async fn agent_status(&self, n: &Node, lists: Lists) -> AgentStatus {
        let target = agent_target(&n.hostname, &n.addr, &n.id);
        tokio::select! {
            r = self.ports.agents.describe(&target, lists) => match r {
                Ok(r) => AgentStatus::Reachable(Box::new(r)),
                Err(e) => AgentStatus::Unreachable { error: e.to_string() },
            },
            () = self.ports.clock.sleep(DESCRIBE_LIMIT) => AgentStatus::Unreachable {
                error: format!("the agent on {} did not answer within {} s", n.hostname, DESCRIBE_LIMIT.as_secs()),
            },
        }
    }

    /// Whether the swarm is autolocked, and whether the key given is its current one.
    async fn judge_autolock(&self, snap: &mut ClusterSnapshot) -> Result<(), PortError> {
        if snap.autolock != Autolock::Off {
            snap.autolock = match &self.unlock_key {
                None => Autolock::NoKey,
                Some(given) if self.ports.swarm.unlock_key().await?.as_ref() == Some(given) => {
                    Autolock::Keyed
                }
                Some(_) => Autolock::WrongKey,
            };
        }
        Ok(())
    }

    /// Plans without changing anything.
    pub async fn plan(&self, req: &PlanRequest) -> Result<planner::Plan, CoordinatorError> {
        let snap = self.observe_all().await?;
        let planned = planner::plan(&snap, self.settings, req);
        with_gate(planned, self.gate_preflight().await).map_err(CoordinatorError::Refused)
    }

    /// The cluster observed and planned again once the plan `shown` was confirmed (the answer
    /// may have taken minutes): the run starts from the cluster as it is now, if that plan takes
    /// the course shown; otherwise nothing is done and the operator is told why.
    async fn replan(
        &self,
        req: &PlanRequest,
        shown: &planner::Plan,
    ) -> Result<(ClusterSnapshot, planner::Plan), CoordinatorError> {
        let snap = self.observe_all().await?;
        let plan = planner::plan(&snap, self.settings, req).map_err(CoordinatorError::Refused)?;
        if plan.course() != shown.course() {
            return Err(CoordinatorError::Declined(
                "the cluster changed while the plan was shown, and the run would now take another course; run again to see it".into(),
            ));
        }
        Ok((snap, plan))
    }

    /// Starts a new run: preflight, then the lock and the run record in one write, then the nodes.
    pub async fn run(
        &self,
        req: &PlanRequest,
        run_id: &str,
    ) -> Result<RunRecord, CoordinatorError> {
        // A run in progress changes the cluster (paused nodes, surged services), which preflight
        // would refuse: say who holds the lock instead, before observing anything.
        let doc = self.load_retrying().await?.doc;
        doc.check_free(self.ports.clock.now())?;
        // An interrupted run left the cluster half-way through a node (drained, surged), which
        // preflight would refuse with reasons that hide the cause: name the run to resume instead.
        if let Some(run) = doc.run.as_ref().filter(|r| !r.finished() && r.id != run_id) {
            return Err(CoordinatorError::Unfinished(run.id.clone()));
        }
        let snap = self.observe_all().await?;
        // The timer goes on firing while an operator has stopped upgrades: that is no failure.
        // (An operator's own `run` gets the label among preflight's refusals.)
        if req.scheduled
            && let Some(marked) = planner::stop_requested(&snap)
        {
            return Err(CoordinatorError::Stopped(marked.to_string()));
        }
        let planned = planner::plan(&snap, self.settings, req);
        let plan = match with_gate(planned, self.gate_preflight().await) {
            Ok(plan) => plan,
            Err(refusals) => {
                // Another coordinator may have taken the lock while we observed (timers on every
                // manager start together) and already paused a node: say that, not the refusal.
                self.load_retrying().await?.doc.check_free(self.ports.clock.now())?;
                return Err(CoordinatorError::Refused(refusals));
            }
        };
        if plan.nodes.is_empty() {
            return Err(CoordinatorError::NothingToDo(plan.target.to_string()));
        }
        if req.scheduled
            && let Some(refusal) =
                doc.run.as_ref().and_then(|last| last.refuses_scheduled_retry(&plan.target))
        {
            return Err(CoordinatorError::Refused(vec![refusal]));
        }
        let (snap, plan) = match &self.confirm {
            None => (snap, plan),
            Some(confirm) => {
                confirm(&plan).map_err(CoordinatorError::Declined)?;
                self.replan(req, &plan).await?
            }
        };
        let now = self.ports.clock.now();
        let flags = RunFlags {
            allow_downgrade: req.allow_downgrade,
            allow_single_manager: req.allow_single_manager,
            accept_downtime: req.accept_downtime.clone(),
            backup_managers: self.settings.backup_managers,
        };
        let mut record = RunRecord::new(run_id.to_string(), &plan, flags, &snap, now);
        if plan.canary > 0 && plan.canary < plan.nodes.len() {
            let s = self.settings;
            record.hold = Some(crate::run::Hold::new(plan.canary, s.soak, s.timeouts.hold));
        }
        let token = self
            .update(|doc| {
                // A live holder is reported as such; an unfinished run without one must be resumed.
                let token = doc.acquire(
                    &self.holder,
                    run_id,
                    &plan.target,
                    self.settings.lease,
                    now,
                    None,
                )?;
                // (A retry of this very write finds its own run: it landed, its answer was lost.)
                if let Some(run) = doc.run.as_ref().filter(|r| !r.finished() && r.id != run_id) {
                    return Err(CoordinatorError::Unfinished(run.id.clone()));
                }
                doc.run = Some(record.clone());
                Ok(token)
            })
            .await?;
        tracing::info!(run = run_id, token, target = %plan.target, nodes = plan.nodes.len(), "run started");
        for n in plan.nodes.iter().filter(|n| !n.standalone.is_empty()) {
            let containers = crate::model::Standalone::list(&n.standalone);
            tracing::warn!(node = %n.hostname, %containers, "containers no service owns stop while this node's engine restarts (upgrade.standalone = \"refuse\" refuses such nodes)");
        }
        self.emit_start(&record, false);
        self.drive(token).await
    }

    /// Takes over an unfinished run once its lock is free, or once this coordinator has watched
    /// it lapse: unrenewed for a whole lease and a margin by its own monotonic clock, whatever the
    /// wall clocks say. Without `wait`, a lock whose lease has run out by our clock is watched
    /// (at most a lease); one that is renewed meanwhile, or is not run out, is reported as held.
    pub async fn resume(&self, wait: bool) -> Result<RunRecord, CoordinatorError> {
        let mut sighting: Option<Sighting> = None;
        loop {
            let now = self.ports.clock.now();
            let mono = self.ports.clock.mono();
            let seen = self.load_retrying().await?.doc.lock;
            let earlier = sighting.take();
            let renewed = matches!((&earlier, &seen), (Some(e), Some(l)) if !e.is_of(l));
            sighting = seen.as_ref().map(|l| Sighting::of(l, earlier, mono));
            let lapsed = sighting.as_ref().map(|s| (s, mono));
            let outcome = self
                .update(|doc| {
                    let run = doc
                        .run
                        .as_ref()
                        .filter(|r| !r.finished())
                        .ok_or(CoordinatorError::NothingToResume)?;
                    let (run_id, target) = (run.id.clone(), run.target.clone());
                    let token = doc.acquire(
                        &self.holder,
                        &run_id,
                        &target,
                        self.settings.lease,
                        now,
                        lapsed,
                    )?;
                    let run = doc.run.as_mut().expect("checked above");
                    let going: Vec<usize> = (0..run.nodes.len())
                        .filter(|&i| {
                            let phase = run.nodes[i].phase;
                            !phase.is_terminal() && phase != crate::machine::Phase::Pending
                        })
                        .collect();
                    for i in going {
                        run.nodes[i].resumed(now);
                    }
                    Ok((token, run_id, run.clone()))
                })
                .await;
            match outcome {
                Ok((token, run_id, run)) => {
                    tracing::info!(run = %run_id, token, holder = %self.holder, "run resumed");
                    self.emit_start(&run, true);
                    return self.drive(token).await;
                }
                Err(CoordinatorError::Lock(LockError::Held { until, .. }))
                    if wait || (until <= now && !renewed) =>
                {
                    let left = sighting.as_ref().map_or(Duration::ZERO, |s| {
                        s.left(self.settings.lease, self.ports.clock.mono())
                    });
                    tracing::info!(
                        seconds = left.as_secs(),
                        "the lock is held: watching it for a whole lease before taking over"
                    );
                    // Looked at again every few seconds: a renewal ends the watch at once.
                    self.ports.clock.sleep(left.clamp(self.poll, LEASE_MARGIN)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
