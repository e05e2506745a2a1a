//! Batches: consecutive nodes of the order that go through their upgrade together. Managers go
//! one at a time; workers go up to `upgrade.parallel` at once, never two zones in one batch, and
//! only as many as can be evacuated together: a batch is the longest run of candidates whose
//! tasks all find a place elsewhere while every one of them is drained.

use serde::{Deserialize, Serialize};

use super::Refusal;
use super::index::Index;
use super::placement::{Evacuation, Load, evacuate_batch};
use crate::config::Settings;
use crate::model::{NodeId, Role};

/// One batch of a plan, and why it has its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    /// Host names, in order.
    pub nodes: Vec<String>,
    /// The zone (the value of `upgrade.zone_label`), when zones are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Why it holds that many nodes.
    pub why: String,
}

/// Consecutive nodes of the order that may share batches: one role and one zone.
pub(crate) struct Group {
    /// Node IDs, in order.
    pub nodes: Vec<NodeId>,
    /// Their role.
    pub role: Role,
    /// Their zone.
    pub zone: Option<String>,
}

/// The order cut where the role or the zone changes.
/// `node_of` finds an ordered node in the snapshot the plan has already indexed.
pub(crate) fn groups<'a>(
    settings: &Settings,
    ordered: &[NodeId],
    node_of: impl Fn(&NodeId) -> &'a crate::model::Node,
) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for id in ordered {
        let n = node_of(id);
        let zone = zone_of(settings, n);
        match out.last_mut() {
            Some(g) if g.role == n.role && g.zone == zone => g.nodes.push(id.clone()),
            _ => out.push(Group { nodes: vec![id.clone()], role: n.role, zone }),
        }
    }
    out
}

/// A node's zone: the value of its `upgrade.zone_label` label (none without the label).
pub(crate) fn zone_of(settings: &Settings, n: &crate::model::Node) -> Option<String> {
    settings.zone_label.as_ref().and_then(|key| n.labels.get(key).cloned())
}

/// The nodes that go together from the front of `candidates`, with each one's evacuation.
pub(crate) struct Fitted {
    /// One evacuation per node of the batch, in order (the batch is their count).
    pub evs: Vec<Evacuation>,
    /// When the batch is shorter than `candidates`: why the next node could not join it.
    pub stopped_by: Option<Vec<Refusal>>,
}

/// The longest front of `candidates` (at least one node) that can be evacuated together from
/// `now` (the placement as it is) and from `predicted` (after the batches before it), found by
/// halving; the batch's moves are then kept in `predicted`. The first node alone not fitting
/// is a refusal.
pub(crate) fn fit(
    ix: &Index,
    now: &mut Load,
    mut predicted: Option<&mut Load>,
    candidates: &[NodeId],
    surge: bool,
) -> Result<Fitted, Vec<Refusal>> {
    let mut check = |k: usize| {
        evacuate_batch(ix, now, &candidates[..k], false, surge)?;
        match predicted.as_deref_mut() {
            Some(p) => evacuate_batch(ix, p, &candidates[..k], false, surge),
            None => Ok(Vec::new()),
        }
    };
    let (mut fits, mut stopped_by) = (1, None);
    match check(candidates.len()) {
        Ok(_) => fits = candidates.len(),
        Err(r) => {
            check(1)?;
            // `fits` fits, `fails` does not: halve the gap.
            let (mut fails, mut why) = (candidates.len(), r);
            while fails - fits > 1 {
                let mid = (fits + fails) / 2;
                match check(mid) {
                    Ok(_) => fits = mid,
                    Err(r) => (fails, why) = (mid, r),
                }
            }
            stopped_by = Some(why);
        }
    }
    let evs = match predicted {
        Some(p) => evacuate_batch(ix, p, &candidates[..fits], true, surge)?,
        None => evacuate_batch(ix, now, &candidates[..fits], false, surge)?,
    };
    Ok(Fitted { evs, stopped_by })
}

/// Why a batch (its nodes' `hosts`) from a group holds that many: `limit` is the most workers at once,
/// `left` how many of its group were left to go.
pub(crate) fn why(
    group: &Group,
    hosts: &[String],
    limit: usize,
    left: usize,
    next: Option<&str>,
    stopped_by: Option<&[Refusal]>,
    parallel: crate::config::Parallel,
) -> String {
    let size = hosts.len();
    if group.role == Role::Manager {
        return "a manager: managers go one at a time, the leader last".into();
    }
    if let (Some(next), Some(r)) = (next, stopped_by.and_then(|r| r.first())) {
        return format!(
            "{next} could not be drained together with {}: {}",
            hosts.join(", "),
            r.reason
        );
    }
    let zone = group.zone.as_ref().map(|z| format!(" of zone {z}")).unwrap_or_default();
    if size == limit {
        format!("at most {limit} worker(s) at once (parallel {parallel})")
    } else {
        debug_assert_eq!(size, left);
        format!("the last worker(s){zone}")
    }
}
