//! The action each phase takes when it is entered. Every action is idempotent (absolute replica
//! counts and availabilities, exact package sets), so a coordinator that resumes simply repeats
//! the action of the phase it finds.

use super::{Coordinator, CoordinatorError, agent_target};
use crate::machine::{NodeProgress, Phase};
use crate::model::{Availability, Mode, NodeId, PackageSet, RESTORE_LABEL};
use crate::ports::{AgentTarget, Agents, Clock, JoinOrder, OpKey, PortError, StateStore, Swarm};

/// What an action produced that the machine must record.
pub(crate) enum Acted {
    /// Nothing to record.
    Done,
    /// The node joined again under a new ID.
    Rejoined(NodeId),
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// Performs the action of `p`'s phase.
    pub(crate) async fn act(
        &self,
        p: &NodeProgress,
        packages: &PackageSet,
        op: &OpKey,
    ) -> Result<Acted, PortError> {
        let swarm = self.ports.swarm;
        let agents = self.ports.agents;
        let target = agent_target(&p.hostname, &p.addr, &p.node);
        match p.phase {
            Phase::Prefetch => agents.prefetch(&target, packages, op).await?,
            Phase::Pause => {
                // An operator's drain stays a drain; only an active node is paused.
                if p.original_availability == Availability::Active {
                    swarm.set_availability(&p.node, Availability::Pause).await?;
                }
            }
            Phase::Surge => {
                for s in &p.surge {
                    swarm.scale(&s.service, s.to).await?;
                }
            }
            Phase::Drain => swarm.set_availability(&p.node, Availability::Drain).await?,
            Phase::Upgrade => agents.upgrade(&target, packages, op).await?,
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
                swarm.set_availability(&p.node, p.original_availability).await?;
                self.settle_debt(p).await?;
            }
            Phase::VerifyConverged => self.unsurge(p).await?,
            Phase::Restore => {
                self.unsurge(p).await?;
                let snap = swarm.snapshot().await?;
                if snap.node(&p.node).is_some_and(|n| n.availability != p.original_availability) {
                    swarm.set_availability(&p.node, p.original_availability).await?;
                }
                self.settle_debt(p).await?;
            }
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

    /// The node has its availability back: an earlier run's note that it was owed (the
    /// [`RESTORE_LABEL`]) is removed.
    async fn settle_debt(&self, p: &NodeProgress) -> Result<(), PortError> {
        let snap = self.ports.swarm.snapshot().await?;
        if snap.node(&p.node).is_some_and(|n| n.labels.contains_key(RESTORE_LABEL)) {
            self.ports.swarm.set_label(&p.node, RESTORE_LABEL, None).await?;
        }
        Ok(())
    }

    /// Scales surged services back to their replica count, writing only those that differ.
    async fn unsurge(&self, p: &NodeProgress) -> Result<(), PortError> {
        if p.surge.is_empty() {
            return Ok(());
        }
        let snap = self.ports.swarm.snapshot().await?;
        for s in &p.surge {
            let current = snap.service(&s.service).map(|svc| svc.mode);
            if current != Some(Mode::Replicated { replicas: s.from }) {
                self.ports.swarm.scale(&s.service, s.from).await?;
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
        let managers: Vec<String> = snap
            .managers()
            .filter(|m| m.id != p.node && !m.addr.is_empty())
            .map(|m| format!("{}:2377", m.addr))
            .collect();
        let token = self.ports.swarm.join_token(p.role).await?;
        let new_id = self.ports.agents.rejoin(target, &JoinOrder { token, managers }, op).await?;
        self.ports.swarm.set_labels(&new_id, &p.labels).await?;
        if new_id != p.node && snap.node(&p.node).is_some() {
            self.ports.swarm.remove_node(&p.node).await?;
        }
        Ok(Acted::Rejoined(new_id))
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
        let Some(p) = doc.run.as_ref().map(|r| r.nodes[i].clone()) else { return Ok(()) };
        if let Err(e) = self.unsurge(&p).await {
            tracing::warn!(node = %p.hostname, error = %e, "scaling the surged services back failed");
        }
        let now_availability = match self.ports.swarm.snapshot().await {
            Ok(snap) => snap.node(&p.node).map(|n| n.availability),
            Err(_) => None,
        };
        if now_availability.is_some_and(|a| a != p.original_availability) {
            let was = p.original_availability.name();
            if let Err(e) = self.ports.swarm.set_label(&p.node, RESTORE_LABEL, Some(was)).await {
                tracing::warn!(node = %p.hostname, error = %e, "labelling the node with the availability it is owed failed");
            }
        }
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
