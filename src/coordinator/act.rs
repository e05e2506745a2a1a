//! The action each phase takes when it is entered. Every action is idempotent (absolute replica
//! counts and availabilities, exact package sets), so a coordinator that resumes simply repeats
//! the action of the phase it finds.
//!
//! Swarm writes are fenced ([`Swarm`]): each is decided on a snapshot read *before* the lock is
//! confirmed ([`Coordinator::decide_on`]) and carries the version of the object in it. A
//! coordinator that lost its lock after that confirmation (stalled past its lease) cannot undo a
//! successor's work: if the successor wrote the object, the swarm refuses ours; if it had not yet,
//! the successor reads the object after taking the lock and sees ours (or its own write, decided
//! on the same version as ours, is the one refused).

use std::collections::BTreeSet;

use super::{Coordinator, CoordinatorError, agent_target};
use crate::machine::{NodeProgress, Phase};
use crate::model::{
    Availability, ClusterSnapshot, Mode, NodeId, PackageSet, RESTORE_LABEL, Role, ServiceId,
};
use crate::ports::{AgentTarget, Agents, Clock, JoinOrder, OpKey, PortError, StateStore, Swarm};

/// How often the steps after a rejoin are tried (a poll apart) before they are left to the
/// operator.
const REJOIN_FOLLOW_UP_TRIES: u32 = 30;

/// How often a failed node's hand-back (surge scaled back, availability owed labelled) is tried
/// when a fenced write loses.
const HAND_BACK_TRIES: u32 = 5;

/// What an action produced that the machine must record.
pub(crate) enum Acted {
    /// Nothing to record.
    Done,
    /// The node joined again under a new ID.
    Rejoined(NodeId),
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Performs the action of `p`'s phase.
    /// `held`: the node's surged services its batch-mates still need surged, left as they are.
    /// `backup`: the run archives managers' swarm state before their install.
    pub(crate) async fn act(
        &self,
        p: &NodeProgress,
        packages: &PackageSet,
        op: &OpKey,
        held: &BTreeSet<ServiceId>,
        backup: bool,
    ) -> Result<Acted, PortError> {
        let agents = self.ports.agents;
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        match p.phase {
            Phase::Prefetch => {
                // (A fetch-ahead of this node still in flight is waited for, not doubled.)
                self.ahead.own(&p.node).await;
                agents.prefetch(&target, packages, op).await?
            }
            Phase::Pause => {
                // An operator's drain stays a drain; only an active node is paused.
                if p.original_availability == Availability::Active {
                    self.make_available(p, Availability::Pause, op.token).await?;
                }
            }
            Phase::Surge => {
                let snap = self.decide_for(op.token, &p.node, &surged(p)).await?;
                for s in &p.surge {
                    let at = snap.service(&s.service).map_or(0, |svc| svc.version);
                    self.ports.swarm.scale(&s.service, at, s.to).await?;
                }
            }
            Phase::Drain => self.make_available(p, Availability::Drain, op.token).await?,
            Phase::Upgrade => {
                let backup = backup && p.role == Role::Manager;
                agents.upgrade(&target, packages, op, backup).await?
            }
            Phase::Restart => agents.restart_engine(&target, op).await?,
            Phase::Rollback => {
                let previous = p
                    .previous
                    .as_ref()
                    .ok_or_else(|| PortError::Failed("no previous package set recorded".into()))?;
                agents.rollback(&target, previous, op).await?
            }
            Phase::Rejoin => return self.rejoin(p, &target, op).await,
            Phase::Reactivate => {
                self.make_available(p, p.original_availability, op.token).await?;
                self.settle_debt(p, op.token).await?;
            }
            Phase::Restore => {
                self.unsurge(p, op.token, held).await?;
                // A node no longer listed has no availability to give back.
                if self.decide_for(op.token, &p.node, &[]).await?.node(&p.node).is_some() {
                    self.make_available(p, p.original_availability, op.token).await?;
                }
                self.settle_debt(p, op.token).await?;
            }
            Phase::VerifyConverged => self.unsurge(p, op.token, held).await?,
            Phase::WaitMigrated
            | Phase::WaitReady
            | Phase::Pending
            | Phase::Done
            | Phase::RolledBack
            | Phase::Restored
            | Phase::Failed => {}
        }
        Ok(Acted::Done)
    }

    /// The swarm as it is now, read before the lock held with `token` is confirmed: the reading
    /// a fenced write is decided on (see the module's documentation). A lost lock is
    /// [`PortError::Stale`], which the caller takes to the store.
    pub(crate) async fn decide_on(&self, token: u64) -> Result<ClusterSnapshot, PortError> {
        let snap = self.ports.swarm.snapshot().await?;
        self.confirm(token).await?;
        Ok(snap)
    }

    /// As [`Self::decide_on`], reading only `node` and `services` (see
    /// [`crate::model::ClusterSnapshot::scoped`]): a write about a node costs its services.
    pub(crate) async fn decide_for(
        &self,
        token: u64,
        node: &NodeId,
        services: &[ServiceId],
    ) -> Result<ClusterSnapshot, PortError> {
        let snap = self.ports.swarm.scoped(node, services).await?;
        self.confirm(token).await?;
        Ok(snap)
    }

    /// Confirms the lock held with `token` (a lost lock is [`PortError::Stale`]).
    async fn confirm(&self, token: u64) -> Result<(), PortError> {
        let doc = self
            .load_retrying()
            .await
            .map_err(|e| PortError::Unavailable(format!("cannot confirm the lock: {e}")))?;
        doc.doc
            .check(token, self.ports.clock.now())
            .map(drop)
            .map_err(|e| PortError::Stale(format!("the lock is no longer ours: {e}")))
    }

    /// Sets `p`'s node to `availability` unless it already is.
    async fn make_available(
        &self,
        p: &NodeProgress,
        availability: Availability,
        token: u64,
    ) -> Result<(), PortError> {
        let snap = self.decide_for(token, &p.node, &[]).await?;
        let node = snap.node(&p.node).ok_or_else(|| {
            PortError::Failed(format!("{} is no longer in the swarm", p.hostname))
        })?;
        if node.availability != availability {
            self.ports.swarm.set_availability(&p.node, node.version, availability).await?;
        }
        Ok(())
    }

    /// The node has its availability back: an earlier run's note that it was owed (the
    /// [`RESTORE_LABEL`]) is removed.
    async fn settle_debt(&self, p: &NodeProgress, token: u64) -> Result<(), PortError> {
        let snap = self.decide_for(token, &p.node, &[]).await?;
        if let Some(n) = snap.node(&p.node).filter(|n| n.labels.contains_key(RESTORE_LABEL)) {
            self.ports.swarm.set_label(&p.node, n.version, RESTORE_LABEL, None).await?;
        }
        Ok(())
    }

    /// Scales surged services back to their replica count, writing only those that differ, but
    /// those `held` for batch-mates (the last of them scales it back).
    async fn unsurge(
        &self,
        p: &NodeProgress,
        token: u64,
        held: &BTreeSet<ServiceId>,
    ) -> Result<(), PortError> {
        if p.surge.iter().all(|s| held.contains(&s.service)) {
            return Ok(());
        }
        let snap = self.decide_for(token, &p.node, &surged(p)).await?;
        for s in p.surge.iter().filter(|s| !held.contains(&s.service)) {
            let Some(svc) = snap.service(&s.service) else { continue };
            if svc.mode != (Mode::Replicated { replicas: s.from }) {
                self.ports.swarm.scale(&s.service, svc.version, s.from).await?;
            }
        }
        Ok(())
    }

    /// The node's engine runs but it is no longer a member: join again with a fresh token, carry
    /// its labels over to the new entry, and remove the stale one. Availability follows in
    /// Reactivate.
    async fn rejoin(
        &self,
        p: &NodeProgress,
        target: &AgentTarget,
        op: &OpKey,
    ) -> Result<Acted, PortError> {
        let snap = self.ports.swarm.snapshot().await?;
        // Each manager's Raft address as the swarm reports it (its own listen port), else the
        // node's address at the swarm's default port.
        let managers: Vec<String> = snap
            .managers()
            .filter(|m| m.id != p.node && !m.addr.is_empty())
            .map(|m| match m.manager.as_ref().filter(|s| !s.addr.is_empty()) {
                Some(s) => s.addr.clone(),
                None => format!("{}:2377", m.addr),
            })
            .collect();
        let token = self.ports.swarm.join_token(p.role).await?;
        let new_id = self.ports.agents.rejoin(target, &JoinOrder { token, managers }, op).await?;
        // From here on the node is in the swarm again: nothing may send it to join once more
        // (a postponed action is repeated whole), so what follows is retried here, then left
        // to the operator with a warning.
        let stale = (new_id != p.node && snap.node(&p.node).is_some()).then_some(&p.node);
        for attempt in 1..=REJOIN_FOLLOW_UP_TRIES {
            match self.carry_over(p, &new_id, stale, op.token).await {
                Ok(()) => break,
                Err(PortError::Stale(e)) => return Err(PortError::Stale(e)),
                Err(e) if attempt == REJOIN_FOLLOW_UP_TRIES => tracing::error!(
                    node = %p.hostname, new_id = %new_id, error = %e,
                    "rejoined, but its labels could not be carried over or its stale entry removed: `docker node update --label-add` them and `docker node rm` the old entry by hand"
                ),
                Err(_) => self.ports.clock.sleep(self.poll).await,
            }
        }
        Ok(Acted::Rejoined(new_id))
    }

    /// After a rejoin: the node's labels onto its new entry (fenced, on a fresh reading: a
    /// just-joined node's entry is rewritten several times), and its stale entry removed.
    async fn carry_over(
        &self,
        p: &NodeProgress,
        new_id: &NodeId,
        stale: Option<&NodeId>,
        token: u64,
    ) -> Result<(), PortError> {
        let now = self.decide_on(token).await?;
        let node = now.node(new_id).ok_or_else(|| {
            PortError::Unavailable(format!("{} joined as {new_id}, not listed yet", p.hostname))
        })?;
        if node.labels != p.labels {
            self.ports.swarm.set_labels(new_id, node.version, &p.labels).await?;
        }
        if let Some(old) = stale.filter(|old| now.node(old).is_some()) {
            self.ports.swarm.remove_node(old).await?;
        }
        Ok(())
    }

    /// What a node left failed is owed: its surge scaled back, and the availability it had
    /// written on it ([`RESTORE_LABEL`]) when it no longer has it.
    async fn hand_back(
        &self,
        p: &NodeProgress,
        token: u64,
        held: &BTreeSet<ServiceId>,
    ) -> Result<(), PortError> {
        self.unsurge(p, token, held).await?;
        let snap = self.decide_for(token, &p.node, &[]).await?;
        if let Some(n) = snap.node(&p.node).filter(|n| n.availability != p.original_availability) {
            let was = p.original_availability.name();
            if n.labels.get(RESTORE_LABEL).map(String::as_str) != Some(was) {
                self.ports.swarm.set_label(&p.node, n.version, RESTORE_LABEL, Some(was)).await?;
            }
        }
        Ok(())
    }

    /// Records a failure on node `i` (`p`, of run `run_id`) and lets the machine pick the recovery.
    pub(crate) async fn fail_node(
        &self,
        token: u64,
        i: usize,
        p: &NodeProgress,
        run_id: &str,
        reason: String,
    ) -> Result<(), CoordinatorError> {
        let now = self.ports.clock.now();
        tracing::warn!(node = %p.hostname, %reason, "node step failed");
        // The run will halt: no more downloads ahead for nodes it will not start.
        self.ahead.halt();
        self.emit(crate::events::Event::NodeFailed {
            run: run_id.to_string(),
            node: p.hostname.clone(),
            reason: reason.clone(),
        });
        let after =
            self.update_node(token, i, p.phase, |n| Ok(n.fail(reason.clone(), now)?)).await?;
        if after == Phase::Failed {
            self.leave_behind(token, i).await?;
        }
        Ok(())
    }

    /// Node `i` failed and the machine cannot bring it back: undo what needs no node (the
    /// surge), hand back explicitly what cannot be undone (its availability: a label on the node
    /// that says what it was, which a later run gives back), and write down its recovery. Each
    /// part is best effort: the swarm may be the reason the node failed.
    async fn leave_behind(&self, token: u64, i: usize) -> Result<(), CoordinatorError> {
        let doc = self.load_retrying().await?.doc;
        let Some(run) = doc.run.as_ref() else { return Ok(()) };
        let (p, held) = (run.nodes[i].clone(), run.left_to_others(i));
        // A failing node's entry changes often (Ready, Down): a fenced write that lost is
        // decided again, a few times.
        for attempt in 1..=HAND_BACK_TRIES {
            match self.hand_back(&p, token, &held).await {
                Ok(()) => break,
                Err(e) if attempt == HAND_BACK_TRIES || !e.is_transient() => {
                    tracing::warn!(node = %p.hostname, error = %e, "scaling the surged services back or labelling the availability owed failed");
                    break;
                }
                Err(_) => self.ports.clock.sleep(self.poll).await,
            }
        }
        let now_availability = match self.ports.swarm.snapshot().await {
            Ok(snap) => snap.node(&p.node).map(|n| n.availability),
            Err(_) => None,
        };
        let steps = crate::machine::recovery::steps(&p, now_availability);
        tracing::error!(node = %p.hostname, recovery = %steps, "node left failed");
        self.update_node(token, i, Phase::Failed, |n| {
            n.recovery = Some(steps.clone());
            Ok(())
        })
        .await
        .map(drop)
    }
}

/// The services surged for `p`.
pub(crate) fn surged(p: &NodeProgress) -> Vec<ServiceId> {
    p.surge.iter().map(|s| s.service.clone()).collect()
}
