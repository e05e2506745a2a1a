//! Which nodes take part, and in which order: workers or managers first, the leader always last
//! among the managers.

use super::Skipped;
use crate::config::{NodeOrder, Settings};
use crate::model::{ClusterSnapshot, NodeId, Role, Target};

/// Splits nodes into those the labels let take part (opt-in and opt-out labels) and those they
/// leave out.
pub fn labelled(snap: &ClusterSnapshot, settings: &Settings) -> (Vec<NodeId>, Vec<Skipped>) {
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    for n in &snap.nodes {
        let skip = |reason: String| Skipped { hostname: n.hostname.clone(), reason };
        if let Some(inc) = &settings.include_label
            && !inc.matches(&n.labels)
        {
            skipped.push(skip(format!("not labelled {}", label_text(&inc.key, &inc.value))));
            continue;
        }
        if let Some(exc) = &settings.exclude_label
            && exc.matches(&n.labels)
        {
            skipped.push(skip(format!("labelled {}", label_text(&exc.key, &exc.value))));
            continue;
        }
        selected.push(n.id.clone());
    }
    (selected, skipped)
}

/// Splits the `labelled` nodes into those to upgrade and those skipped as already at `target`.
pub fn select(
    snap: &ClusterSnapshot,
    settings: &Settings,
    target: &Target,
    labelled: Vec<NodeId>,
) -> (Vec<NodeId>, Vec<Skipped>) {
    let engine = &settings.engine_packages[0];
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    let chosen: std::collections::HashSet<&NodeId> = labelled.iter().collect();
    for n in snap.nodes.iter().filter(|n| chosen.contains(&n.id)) {
        let installed = snap.agent_report(&n.id).and_then(|r| r.installed.get(engine));
        let at_target = match installed {
            Some(installed) => target.is_carried_by(installed),
            None => n.engine_version == target.engine_version(),
        };
        // A node an earlier run left out of service takes part even at the target, to be given
        // back its availability (and checked) by the machine's own phases.
        if at_target && n.availability_to_restore().is_none() {
            skipped.push(Skipped {
                hostname: n.hostname.clone(),
                reason: format!("already at {target}"),
            });
            continue;
        }
        selected.push(n.id.clone());
    }
    (selected, skipped)
}

fn label_text(key: &str, value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{key}={v}"),
        None => key.to_string(),
    }
}

/// Orders the selected nodes: those an earlier run left out of service first, then by role as
/// configured, then by zone (when zones are configured), then by host name; the leader is the last manager, so leadership moves once, at
/// the end.
pub fn order(snap: &ClusterSnapshot, settings: &Settings, selected: Vec<NodeId>) -> Vec<NodeId> {
    let chosen: std::collections::HashSet<&NodeId> = selected.iter().collect();
    let mut nodes: Vec<_> = snap.nodes.iter().filter(|n| chosen.contains(&n.id)).collect();
    let role_rank = |r: Role| match (settings.order, r) {
        (NodeOrder::WorkersFirst, Role::Worker) | (NodeOrder::ManagersFirst, Role::Manager) => 0,
        _ => 1,
    };
    let is_leader = |n: &crate::model::Node| n.manager.as_ref().is_some_and(|m| m.leader);
    // Nodes an earlier run left out of service go first: the others' evacuations count on them
    // being back (see `owed`).
    let not_owed = |n: &crate::model::Node| n.availability_to_restore().is_none();
    // Zones go one after another (see `upgrade.zone_label`); nodes without the label first.
    let zone = |n: &crate::model::Node| super::batch::zone_of(settings, n);
    nodes.sort_by_cached_key(|n| {
        (not_owed(n), role_rank(n.role), is_leader(n), zone(n), n.hostname.clone())
    });
    nodes.into_iter().map(|n| n.id.clone()).collect()
}

/// The cluster as the nodes after the owed ones will find it: those given back the availability
/// they are owed ([`crate::model::RESTORE_LABEL`]), which [`order`] puts first. Drained and
/// without tasks, they move nothing themselves; the guard before each later node checks the
/// swarm as it really is then.
pub fn owed(snap: &ClusterSnapshot) -> std::borrow::Cow<'_, ClusterSnapshot> {
    if snap.nodes.iter().all(|n| n.availability_to_restore().is_none()) {
        return std::borrow::Cow::Borrowed(snap);
    }
    let mut after = snap.clone();
    for n in &mut after.nodes {
        n.availability = n.availability_before_us();
    }
    std::borrow::Cow::Owned(after)
}
