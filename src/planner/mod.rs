//! The planner: from a cluster snapshot and settings, a preflight verdict, the node order and each
//! node's actions. Pure: no I/O, no clock (the snapshot carries its time).

pub mod batch;
mod index;
pub mod order;
pub mod placement;
pub mod preflight;
pub mod target;

use serde::{Deserialize, Serialize};

use crate::config::{Parallel, Settings, TargetSetting};
use crate::model::plan::RunFlags;
pub use crate::model::plan::{NodePlan, Outage, Refusal, RefusalKind, Surge};
use crate::model::{ClusterSnapshot, NodeId, PackageSet, Role, Target};
pub use batch::BatchPlan;

/// What the operator asked for on the command line.
#[derive(Clone, Debug, Default)]
pub struct PlanRequest {
    /// `--to`: overrides the configured target.
    pub to: Option<TargetSetting>,
    /// `--allow-downgrade`.
    pub allow_downgrade: bool,
    /// `--allow-single-manager`.
    pub allow_single_manager: bool,
    /// Started by the timer (`run --scheduled`): a target whose last run failed is not retried.
    pub scheduled: bool,
    /// `--parallel`: overrides `upgrade.parallel`.
    pub parallel: Option<Parallel>,
    /// `--accept-downtime`: services (by name) whose outage is accepted, as if labelled
    /// [`crate::model::DOWNTIME_LABEL`].
    pub accept_downtime: Vec<String>,
}

/// A node left out of the run, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Host name.
    pub hostname: String,
    /// Why.
    pub reason: String,
}

/// An accepted plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The target: an engine version, or an exact package version.
    pub target: Target,
    /// Nodes in upgrade order, each with its own package set.
    pub nodes: Vec<NodePlan>,
    /// The nodes' batches, in order (each node's `batch` is its position here).
    #[serde(default)]
    pub batches: Vec<BatchPlan>,
    /// Nodes left out.
    pub skipped: Vec<Skipped>,
    /// How many nodes at the front are the canary (each its own batch): the run holds once
    /// they are done, until `swarm-upgrade approve` or its soak. 0: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub canary: usize,
    /// The alert gate's answer when the plan was made (filled in by the coordinator, which
    /// asks the monitoring system); `None`: no gate configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::model::alerts::GateAnswer>,
}

/// What an operator confirms of a plan: the target, and each node in order with its batch, its
/// packages and its accepted outages (not where surges land, which the guard decides anew).
pub type Course = (Target, Vec<(String, u32, PackageSet, Vec<String>)>, usize);

impl Plan {
    /// The plan's [`Course`].
    pub fn course(&self) -> Course {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let down = n.downtime.iter().map(|o| o.name.clone()).collect();
                (n.hostname.clone(), n.batch, n.packages.clone(), down)
            })
            .collect();
        (self.target.clone(), nodes, self.canary)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Why canary node `k` of `of` (of `total` nodes) goes alone, and what the run does after.
fn canary_why(k: usize, of: usize, total: usize, settings: &Settings) -> String {
    if of >= total {
        return format!(
            "canary {k} of {of}: alone; the canary is the whole run, so it never holds"
        );
    }
    let then = match settings.soak {
        Some(soak) => format!(
            "`swarm-upgrade approve`, or until it has soaked {:#} with every service converged",
            jiff::SignedDuration::try_from(soak).unwrap_or(jiff::SignedDuration::MAX)
        ),
        None => "`swarm-upgrade approve`".into(),
    };
    format!("canary {k} of {of}: alone; after the canary the run holds until {then}")
}

/// The node label an operator sets on any node to stop every run before its next node
/// (`docker node update --label-add swarm-upgrade.stop=true manager1`); `false` does not count.
pub(crate) const STOP_LABEL: &str = "swarm-upgrade.stop";

/// The host name of a node carrying [`STOP_LABEL`], if any.
pub(crate) fn stop_requested(snap: &ClusterSnapshot) -> Option<&str> {
    snap.nodes
        .iter()
        .find(|n| n.labels.get(STOP_LABEL).is_some_and(|v| v != "false"))
        .map(|n| n.hostname.as_str())
}

/// The guards re-checked before each batch of a running run: the cluster, the nodes, the
/// services, and whether the nodes' tasks can run elsewhere, all of theirs at once, in the
/// cluster as it is now. On success, the longest front of `nodes` that can go together now (at
/// least the first) with each one's surge, computed from where the tasks are now (the swarm may
/// have placed them differently from the plan's prediction); the others wait for the next round.
/// Each node comes with the package set the run installs on it.
pub fn guard(
    snap: &ClusterSnapshot,
    settings: &Settings,
    flags: &RunFlags,
    nodes: &[(NodeId, &PackageSet)],
) -> Result<Vec<Drain>, Vec<Refusal>> {
    guard_settling(snap, settings, flags, nodes, &[])
}

/// As [`guard`], for a batch that starts while the nodes `settling` (the batch before) verify:
/// a global service's task still starting on one of them does not hold it (their own
/// verification judges it, and the batch drains only once they are done).
pub fn guard_settling(
    snap: &ClusterSnapshot,
    settings: &Settings,
    flags: &RunFlags,
    nodes: &[(NodeId, &PackageSet)],
    settling: &[NodeId],
) -> Result<Vec<Drain>, Vec<Refusal>> {
    let req = PlanRequest {
        allow_downgrade: flags.allow_downgrade,
        allow_single_manager: flags.allow_single_manager,
        ..Default::default()
    };
    let mut refusals = preflight::cluster_checks(snap, settings, &req);
    for (n, packages) in nodes.iter().filter_map(|(id, p)| Some((snap.node(id)?, *p))) {
        refusals.extend(preflight::node_checks(snap, settings, &req, n, Some(packages)));
    }
    refusals.extend(preflight::service_checks(snap, settling));
    let ix = index::Index::new(snap).accepting(&flags.accept_downtime);
    let mut load = placement::Load::from_snapshot(&ix);
    let ids: Vec<NodeId> = nodes.iter().map(|(id, _)| id.clone()).collect();
    match batch::fit(&ix, &mut load, None, &ids, settings.surge) {
        Ok(fitted) if refusals.is_empty() => Ok(fitted
            .evs
            .into_iter()
            .map(|ev| Drain {
                surge: if settings.surge { ev.surge } else { Vec::new() },
                downtime: ev.downtime,
            })
            .collect()),
        Ok(_) => Err(refusals),
        Err(r) => {
            refusals.extend(r);
            Err(refusals)
        }
    }
}

/// What draining one node of a batch does, as the guard finds it just before the batch starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// Services scaled up first (empty without surge).
    pub surge: Vec<Surge>,
    /// Services whose accepted outage the drain starts.
    pub downtime: Vec<Outage>,
}

/// `--accept-downtime` names that are no service of the swarm's: one refusal each.
fn unknown_services(snap: &ClusterSnapshot, names: &[String]) -> Vec<Refusal> {
    names
        .iter()
        .filter(|name| !snap.services.iter().any(|s| &s.name == *name))
        .map(|name| Refusal {
            kind: RefusalKind::UnknownService,
            node: None,
            service: Some(name.clone()),
            reason: format!("--accept-downtime names {name}, which is no service of this swarm"),
            fix: "give a service's name as `docker service ls` shows it".into(),
        })
        .collect()
}

/// Plans a run, or lists every reason to refuse it.
pub fn plan(
    snap: &ClusterSnapshot,
    settings: &Settings,
    req: &PlanRequest,
) -> Result<Plan, Vec<Refusal>> {
    let (labelled, mut skipped) = order::labelled(snap, settings);
    let target = target::resolve(snap, settings, req, &labelled).map_err(|r| vec![r])?;
    let (selected, at_target) = order::select(snap, settings, &target, labelled);
    skipped.extend(at_target);
    let ordered = order::order(snap, settings, selected);
    let mut refusals = preflight::cluster_checks(snap, settings, req);
    refusals.extend(unknown_services(snap, &req.accept_downtime));
    let ix = index::Index::new(snap);
    let node_of =
        |id: &NodeId| &snap.nodes[ix.node(id).expect("ordered nodes come from the snapshot")];
    let mut sets = std::collections::BTreeMap::new();
    for id in &ordered {
        let n = node_of(id);
        // Without its set, a node's other checks still run, so every reason (an unreachable
        // agent, say) is reported at once.
        let set = target::node_set(snap.agent_report(id), settings, &target, &n.hostname)
            .unwrap_or_else(|r| {
                refusals.push(r);
                None
            });
        refusals.extend(preflight::node_checks(snap, settings, req, n, set.as_ref()));
        sets.insert(id.clone(), set.unwrap_or_default());
    }
    refusals.extend(preflight::service_checks(snap, &[]));
    // The swarm does not move tasks back or forth as a simulation predicts (a replacement left
    // pending lands on the node again once it is reactivated), so each node must be evacuable
    // both from the placement as it is now and after the predicted moves of the nodes before it.
    let after = order::owed(snap);
    let after_ix = index::Index::new(&after).accepting(&req.accept_downtime);
    let mut now = placement::Load::from_snapshot(&after_ix);
    let mut predicted = placement::Load::from_snapshot(&after_ix);
    let parallel = req.parallel.unwrap_or(settings.parallel);
    let workers = ordered.iter().filter(|id| node_of(id).role == Role::Worker).count();
    let limit = parallel.of(workers);
    let (mut nodes, mut batches) = (Vec::new(), Vec::new());
    let canary = (settings.canary as usize).min(ordered.len());
    for group in batch::groups(settings, &ordered, node_of) {
        let mut rest = &group.nodes[..];
        while !rest.is_empty() {
            let in_canary = nodes.len() < canary;
            let most =
                if group.role == Role::Manager || in_canary { 1 } else { limit.min(rest.len()) };
            let fitted = match batch::fit(
                &after_ix,
                &mut now,
                Some(&mut predicted),
                &rest[..most],
                settings.surge,
            ) {
                Ok(fitted) => fitted,
                Err(r) => {
                    refusals.extend(r);
                    rest = &rest[1..];
                    continue;
                }
            };
            let size = fitted.evs.len();
            let next = rest.get(size).map(|id| node_of(id).hostname.as_str());
            let hosts: Vec<String> =
                rest[..size].iter().map(|id| node_of(id).hostname.clone()).collect();
            let why = if in_canary {
                canary_why(nodes.len() + 1, canary, ordered.len(), settings)
            } else {
                batch::why(
                    &group,
                    &hosts,
                    limit,
                    rest.len(),
                    next,
                    fitted.stopped_by.as_deref(),
                    parallel,
                )
            };
            let number = u32::try_from(batches.len()).unwrap_or(u32::MAX);
            for (id, ev) in rest.iter().zip(fitted.evs) {
                let set = sets.get(id).cloned().unwrap_or_default();
                nodes.push(node_plan(snap, settings, node_of(id), number, ev, set));
            }
            batches.push(BatchPlan { nodes: hosts, zone: group.zone.clone(), why });
            rest = &rest[size..];
        }
    }
    if refusals.is_empty() {
        Ok(Plan { target, nodes, batches, skipped, canary, gate: None })
    } else {
        Err(refusals)
    }
}

/// A node's part of the plan, in batch `batch`, with its evacuation and its package set.
fn node_plan(
    snap: &ClusterSnapshot,
    settings: &Settings,
    node: &crate::model::Node,
    batch: u32,
    ev: placement::Evacuation,
    packages: PackageSet,
) -> NodePlan {
    NodePlan {
        node: node.id.clone(),
        hostname: node.hostname.clone(),
        role: node.role,
        leader: node.manager.as_ref().is_some_and(|m| m.leader),
        engine_from: node.engine_version.clone(),
        installed: snap
            .agent_report(&node.id)
            .and_then(|r| r.installed.get(&settings.engine_packages[0]).cloned()),
        // A node an earlier run left drained goes back to what it was before that run.
        availability: node.availability_before_us(),
        surge: if settings.surge { ev.surge } else { Vec::new() },
        moves: ev.moves,
        global_stops: ev.global_stops,
        batch,
        packages,
        standalone: snap.agent_report(&node.id).map(|r| r.standalone.clone()).unwrap_or_default(),
        downtime: ev.downtime,
    }
}

#[cfg(test)]
mod tests;
