//! What a phase waits for, judged on freshly fetched observations. Pure.

use std::time::Duration;

use jiff::Timestamp;

use super::{NodeProgress, Phase, elapsed};
use crate::config::Timeouts;
use crate::model::convergence::{first_unconverged_at, slots_meant_to_run};
use crate::model::{
    AgentReport, Availability, ClusterSnapshot, LocalSwarmState, Mode, NodeId, NodeState,
    PackageSet, ServiceId, TaskState, UpdateState,
};

/// The verdict on one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The phase is done.
    Complete,
    /// Not yet; the text says what is missing.
    Wait(String),
    /// Nothing could be judged yet (the phase's action was postponed, or the swarm could not be
    /// observed); the text says why. Unlike a wait, it says nothing about the node.
    Postponed(String),
    /// The condition holds now, but not yet for its whole window: the monitor window (verify),
    /// the warm-up of surged replicas (surge), or the batch-mates' packages (prefetch).
    Monitoring,
    /// The phase is done, but the node may not go on yet: it waits for other nodes (the batch
    /// before its own still verifying, bounded by their own limits). Its phase's limit counts
    /// only from when they are done (`RunRecord::clock`).
    Held(String),
    /// It failed; the text says why.
    Fail(String),
    /// The engine runs at the expected version, but the node is no longer in the swarm.
    Rejoin,
    /// The node is Down in the swarm's view for [`KICK_AFTER`] while its engine runs and holds
    /// its swarm state: restart its engine, once in the phase; the text says why.
    Kick(String),
    /// The swarm missed the scale-down of these surged services: write their replica count again.
    Rescale(Vec<MissedScaleDown>),
}

/// A surged service scaled back whose surplus replica the swarm still means to run.
///
/// swarmkit's replicated orchestrator reconciles a scale-down once, on the service's update
/// event: it reads the tasks, then marks the surplus ones for removal in a later transaction. If
/// a task it picked changed in between (a replica still starting on the node just reactivated,
/// which it prefers to remove), that write is refused as out of sequence, only logged
/// ("failed to update task to REMOVE"), and nothing reconciles the service again until its next
/// update. Writing the same replica count again is that next update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissedScaleDown {
    /// Service ID.
    pub service: ServiceId,
    /// Service name.
    pub name: String,
    /// Replicas in its spec.
    pub replicas: u64,
    /// Slots the swarm means to keep running.
    pub slots: u64,
}

/// How long a surplus may last before it counts as a missed scale-down, and the time between two
/// writes of the same scale. The orchestrator reacts within a second when it does not miss it.
pub(crate) const RESCALE_AFTER: Duration = Duration::from_secs(20);

/// What the coordinator observed for one node.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The cluster, just fetched.
    pub snap: &'a ClusterSnapshot,
    /// The node's agent report, if its agent answered.
    pub agent: Option<&'a AgentReport>,
    /// The run's package set.
    pub packages: &'a PackageSet,
    /// The engine package's name (the first of `packages.engine`).
    pub engine_package: &'a str,
    /// The node's surged services its batch-mates still need surged: left as they are (see
    /// [`crate::run`]'s batches).
    pub held: &'a std::collections::BTreeSet<ServiceId>,
    /// The replica count before the surge of each service a started batch-mate, or a started
    /// node of the next batch, surged: what the service must run, not its surged count, when a
    /// task of it lands on this node (wait-migrated) or while this node verifies.
    pub mates_from: &'a std::collections::BTreeMap<ServiceId, u64>,
    /// The nodes of the node's batch-mates that take no tasks now (paused or drained).
    pub mates: &'a [NodeId],
}

/// The tasks of `service` that the node's accepted outage keeps from running while it is
/// drained. (No batch-mate runs a task of such a service: the planner keeps them apart, see
/// [`crate::planner::placement`].)
fn stuck(p: &NodeProgress, service: &ServiceId) -> u64 {
    p.downtime.iter().filter(|o| &o.service == service).map(|o| o.tasks).sum()
}

/// Judges the current phase; a phase past its time limit fails with the reason it was waiting for.
/// (The coordinator applies the two halves itself, the deadline to whatever verdict its step
/// reached.)
#[cfg(test)]
pub(crate) fn evaluate(
    p: &NodeProgress,
    obs: &Observation<'_>,
    timeouts: &Timeouts,
    now: Timestamp,
) -> Verdict {
    deadline(p, condition(p, obs, timeouts, now), timeouts, now)
}

/// The one place a phase's time limit is applied: a verdict that still waits (for the node, for
/// its action, or for an observation) past the limit becomes a failure saying what it waited for.
pub fn deadline(
    p: &NodeProgress,
    verdict: Verdict,
    timeouts: &Timeouts,
    now: Timestamp,
) -> Verdict {
    if !p.timed_out(timeouts, now) {
        return verdict;
    }
    match verdict {
        Verdict::Wait(why) | Verdict::Postponed(why) | Verdict::Kick(why) => {
            let limit = p.phase.timeout(timeouts).unwrap_or(Duration::ZERO);
            Verdict::Fail(format!(
                "{:?} on {} timed out after {}s: {why}",
                p.phase,
                p.hostname,
                limit.as_secs()
            ))
        }
        Verdict::Monitoring if p.phase == Phase::Surge => Verdict::Fail(format!(
            "Surge on {} timed out after {}s: the surged replicas had run {}s of the {}s warm-up",
            p.hostname,
            timeouts.surge.as_secs(),
            p.converged_since.map_or(0, |since| elapsed(since, now).as_secs()),
            timeouts.warmup.as_secs()
        )),
        Verdict::Monitoring if p.phase == Phase::Prefetch => Verdict::Fail(format!(
            "Prefetch on {} timed out after {}s: its packages are fetched, its batch-mates' are not",
            p.hostname,
            timeouts.prefetch.as_secs()
        )),
        Verdict::Monitoring => Verdict::Fail(format!(
            "services on {} did not stay converged within the verify timeout",
            p.hostname
        )),
        v => v,
    }
}

/// A condition that holds now: complete once it has held for `window` (at once for none), else
/// the window runs (see [`NodeProgress::converged_since`]).
fn held_for(p: &NodeProgress, window: Duration, now: Timestamp) -> Verdict {
    match p.converged_since {
        _ if window.is_zero() => Verdict::Complete,
        Some(since) if elapsed(since, now) >= window => Verdict::Complete,
        _ => Verdict::Monitoring,
    }
}

/// What the observation says of the current phase, before its time limit is applied.
pub(crate) fn condition(
    p: &NodeProgress,
    obs: &Observation<'_>,
    timeouts: &Timeouts,
    now: Timestamp,
) -> Verdict {
    let snap = obs.snap;
    let Some(node) = snap.node(&p.node) else {
        return match p.phase {
            Phase::WaitReady => rejoin_or_wait(p, obs, "the node's entry is gone from the swarm"),
            _ => Verdict::Wait(format!("node {} ({}) is not in the snapshot", p.hostname, p.node)),
        };
    };
    let host = &p.hostname;
    match p.phase {
        // Prefetch also reads the installed set (the rollback target) from the agent.
        Phase::Prefetch => match obs.agent {
            Some(_) => Verdict::Complete,
            None => Verdict::Wait(format!("the agent on {host} does not answer")),
        },
        Phase::Upgrade | Phase::Rejoin => Verdict::Complete,
        Phase::Pause => {
            done_if(node.availability != Availability::Active, format!("{host} is still active"))
        }
        Phase::Surge => {
            // What the drain leaves: the service's count before the surge must run off this
            // node and its batch-mates (whose own drains, one a little before another, take
            // only their own tasks away: counting every running task against the surged count
            // would make the later ones wait for the earlier ones to come back).
            let away: Vec<&NodeId> = std::iter::once(&p.node).chain(obs.mates).collect();
            for s in &p.surge {
                let running = snap.running_outside(&s.service, &away);
                // (An accepted outage's tasks stay on their nodes: they are not counted.)
                let needed = s.from.saturating_sub(stuck(p, &s.service));
                if running < needed {
                    let batch = if obs.mates.is_empty() { "" } else { " and its batch-mates" };
                    return Verdict::Wait(format!(
                        "service {}: {running}/{needed} running off {host}{batch} after surge{}",
                        s.name,
                        snap.not_running(&s.service)
                    ));
                }
            }
            // Running is what the engine says (healthy); a load balancer sends requests only
            // after its own checks pass, so the old replica is not drained before the warm-up.
            if p.surge.is_empty() {
                return Verdict::Complete;
            }
            held_for(p, timeouts.warmup, now)
        }
        Phase::Drain => {
            done_if(node.availability == Availability::Drain, format!("{host} is not drained yet"))
        }
        Phase::WaitMigrated => {
            if let Some(t) = snap
                .tasks
                .iter()
                .find(|t| t.node.as_ref() == Some(&p.node) && t.state == TaskState::Running)
            {
                return Verdict::Wait(format!("task {} still runs on {host}", t.id));
            }
            // Counted once for every service: a poll costs the cluster's tasks, not tasks times
            // services (2,500 nodes: 30,000 tasks and 5,000 services). An accepted outage's tasks
            // are not waited for: they have nowhere else to run.
            let counts = snap.running_counts();
            for svc in &snap.services {
                let Mode::Replicated { replicas } = svc.mode else { continue };
                let own = p.surge.iter().find(|s| s.service == svc.id).map(|s| s.from);
                let needed = own.or(obs.mates_from.get(&svc.id).copied()).unwrap_or(replicas);
                let needed = needed.saturating_sub(stuck(p, &svc.id));
                let running = counts.get(&svc.id).copied().unwrap_or(0);
                if running < needed {
                    return Verdict::Wait(format!(
                        "service {}: {running}/{needed} running elsewhere{}",
                        svc.name,
                        snap.not_running(&svc.id)
                    ));
                }
            }
            Verdict::Complete
        }
        Phase::Restart | Phase::Rollback => match obs.agent {
            Some(a) if a.engine_active => Verdict::Complete,
            Some(_) => {
                Verdict::Fail(format!("docker.service is not active on {host} after the restart"))
            }
            None => Verdict::Wait(format!("the agent on {host} does not answer")),
        },
        Phase::WaitReady => {
            let expected = expected_engine(p, obs);
            if node.state == NodeState::Ready
                && expected.as_ref().is_none_or(|e| *e == node.engine_version)
            {
                return Verdict::Complete;
            }
            if let Some(a) = obs.agent
                && !a.engine_active
            {
                return Verdict::Fail(format!("docker.service is not active on {host}"));
            }
            let what = format!("{host} is {:?} at engine {}", node.state, node.engine_version)
                .to_lowercase();
            if let Some(why) = stuck_down(p, obs, node.state, now) {
                return Verdict::Kick(format!("{why} ({what})"));
            }
            rejoin_or_wait(p, obs, &what)
        }
        Phase::Reactivate => done_if(
            node.availability == p.original_availability,
            format!("{host} is not back to {:?}", p.original_availability),
        ),
        Phase::VerifyConverged => {
            if node.state != NodeState::Ready {
                return Verdict::Wait(format!("{host} is not Ready"));
            }
            // A surge left to batch-mates is scaled back once none holds it: the window opens
            // after that (a node in its window has scaled every surge back; the next batch's
            // early start relies on that, or on the mark of its scale-back, `rescaled_at`: see
            // `crate::run`'s pipeline).
            if let Some(s) = p.surge.iter().find(|s| obs.held.contains(&s.service)) {
                return Verdict::Wait(format!(
                    "service {} stays surged until its batch-mates' tasks run elsewhere",
                    s.name
                ));
            }
            let missed = missed_scale_downs(p, snap, now);
            if !missed.is_empty() {
                return Verdict::Rescale(missed);
            }
            // (Its own accepted outage is judged at the service's count: it must be back.)
            if let Some(c) = first_unconverged_at(snap, obs.mates_from) {
                return Verdict::Wait(format!("{c:?}"));
            }
            held_for(p, timeouts.monitor, now)
        }
        Phase::Restore => {
            for s in p.surge.iter().filter(|s| !obs.held.contains(&s.service)) {
                if snap
                    .service(&s.service)
                    .is_some_and(|svc| svc.mode != (Mode::Replicated { replicas: s.from }))
                {
                    return Verdict::Wait(format!(
                        "service {} is not back to {} replicas",
                        s.name, s.from
                    ));
                }
            }
            done_if(
                node.availability == p.original_availability,
                format!("{host} is not back to {:?}", p.original_availability),
            )
        }
        Phase::Pending | Phase::Done | Phase::RolledBack | Phase::Restored | Phase::Failed => {
            Verdict::Complete
        }
    }
}

/// The node's surged services that are back to their replica count in the spec but still run
/// more slots, for longer than [`RESCALE_AFTER`] since the phase began or the last rewrite.
fn missed_scale_downs(
    p: &NodeProgress,
    snap: &ClusterSnapshot,
    now: Timestamp,
) -> Vec<MissedScaleDown> {
    if elapsed(p.rescaled_at.unwrap_or(p.phase_started), now) < RESCALE_AFTER {
        return Vec::new();
    }
    let mut missed = Vec::new();
    for s in &p.surge {
        let Some(svc) = snap.service(&s.service) else { continue };
        let settled = svc.mode == (Mode::Replicated { replicas: s.from })
            && svc.update_state != Some(UpdateState::Updating);
        let slots = slots_meant_to_run(snap, svc);
        if settled && slots > s.from {
            missed.push(MissedScaleDown {
                service: s.service.clone(),
                name: s.name.clone(),
                replicas: s.from,
                slots,
            });
        }
    }
    missed
}

fn done_if(done: bool, why: String) -> Verdict {
    if done { Verdict::Complete } else { Verdict::Wait(why) }
}

/// The engine version the node should report in WaitReady: the target's, or after a rollback the
/// previous set's.
fn expected_engine(p: &NodeProgress, obs: &Observation<'_>) -> Option<crate::model::EngineVersion> {
    let set = if p.rolled_back { p.previous.as_ref()? } else { obs.packages };
    set.get(obs.engine_package).map(|v| v.engine_version())
}

/// The node is not Ready: if its engine runs and says it is not in the swarm (or holds another
/// node ID), it must rejoin; otherwise keep waiting.
/// How long a node may stay Down in the swarm's view after its engine restarted, the engine
/// running and holding its swarm state, before its engine is restarted once more: in the lab a
/// node whose engine restarted twice in seconds (a failed start, then a rollback) once never
/// registered its session with the managers again, and stayed Down until its next restart.
pub const KICK_AFTER: Duration = Duration::from_secs(90);

/// Why node `p` (in WaitReady, its entry `state`) should have its engine restarted, if it should:
/// Down for [`KICK_AFTER`] with its engine active and locally in its swarm as itself, and not
/// restarted so in this phase yet.
fn stuck_down(
    p: &NodeProgress,
    obs: &Observation<'_>,
    state: NodeState,
    now: Timestamp,
) -> Option<String> {
    let local = obs.agent.filter(|a| a.engine_active)?.local_swarm.as_ref()?;
    let kicked = p.kicked_at.is_some_and(|t| t >= p.phase_started);
    let waited = elapsed(p.phase_started, now);
    (state == NodeState::Down
        && local.state == LocalSwarmState::Active
        && local.node_id == p.node.0
        && waited >= KICK_AFTER
        && !kicked)
        .then(|| {
            format!(
                "{} has been Down in the swarm's view for {} s while its engine runs in the swarm: restarting its engine once",
                p.hostname,
                waited.as_secs()
            )
        })
}

fn rejoin_or_wait(p: &NodeProgress, obs: &Observation<'_>, what: &str) -> Verdict {
    if let Some(local) = obs.agent.filter(|a| a.engine_active).and_then(|a| a.local_swarm.as_ref())
    {
        let stranger = local.state == LocalSwarmState::Inactive
            || (local.state == LocalSwarmState::Active && local.node_id != p.node.0);
        if stranger {
            return Verdict::Rejoin;
        }
    }
    Verdict::Wait(format!("waiting for {} to be Ready: {what}", p.hostname))
}
