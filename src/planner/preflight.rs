//! Preflight: every reason the run must not start (or, between nodes, must not go on).

use super::{PlanRequest, Refusal, RefusalKind};
use crate::config::{Settings, StandalonePolicy};
use crate::model::convergence::{Convergence, every_service};
use crate::model::{
    AgentReport, AgentStatus, Autolock, ClusterSnapshot, EngineConfigProblem, Node, NodeId,
    NodeState, PackageSet, Reachability, Role,
};

fn at_node(kind: RefusalKind, node: &str, reason: String, fix: &str) -> Refusal {
    Refusal { kind, node: Some(node.to_string()), service: None, reason, fix: fix.to_string() }
}

/// An autolocked swarm is upgraded only with its current unlock key: without it, every manager
/// whose engine restarts stays locked, out of the swarm, until a person unlocks it.
fn autolock(state: Autolock) -> Option<Refusal> {
    let (reason, fix) = match state {
        Autolock::Off | Autolock::Keyed => return None,
        Autolock::NoKey => (
            "the swarm is autolocked and no unlock key was given: each manager's engine would come back locked after its restart",
            "give the key in a file only root can read, named by agent.unlock_key_file, on every manager (`docker swarm unlock-key -q > /etc/swarm-upgrade/unlock.key; chmod 600 /etc/swarm-upgrade/unlock.key`), then restart their agents (`systemctl restart swarm-upgrade-agent`): each unlocks its own engine after a restart",
        ),
        Autolock::WrongKey => (
            "the unlock key given is not the swarm's current one (it was rotated, or belongs to another swarm)",
            "replace it with what `docker swarm unlock-key -q` prints on a manager now",
        ),
    };
    Some(Refusal {
        kind: RefusalKind::Autolocked,
        node: None,
        service: None,
        reason: reason.into(),
        fix: fix.into(),
    })
}

/// Managers needed for quorum out of `total`.
pub fn quorum(total: usize) -> usize {
    total / 2 + 1
}

/// Whether taking one reachable manager down keeps quorum.
pub(crate) fn quorum_survives_one_down(snap: &ClusterSnapshot) -> bool {
    let total = snap.managers().count();
    let reachable = snap
        .managers()
        .filter(|m| {
            m.state == NodeState::Ready
                && m.manager.as_ref().is_some_and(|s| s.reachability == Reachability::Reachable)
        })
        .count();
    reachable >= 1 && reachable > quorum(total)
}

/// Checks that concern the whole cluster: an operator's stop label, node liveness, manager
/// reachability and quorum.
pub(crate) fn cluster_checks(
    snap: &ClusterSnapshot,
    settings: &Settings,
    req: &PlanRequest,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    if let Some(marked) = super::stop_requested(snap) {
        out.push(at_node(
            RefusalKind::StopLabel,
            marked,
            format!(
                "an operator stopped upgrades: node {marked} carries the label {}",
                super::STOP_LABEL
            ),
            &format!(
                "remove it when upgrades may go on: `docker node update --label-rm {} {marked}`",
                super::STOP_LABEL
            ),
        ));
    }
    out.extend(autolock(snap.autolock));
    for n in &snap.nodes {
        if n.state != NodeState::Ready {
            out.push(at_node(
                RefusalKind::NodeNotReady,
                &n.hostname,
                format!("node {} is {}, not Ready", n.hostname, format!("{:?}", n.state).to_lowercase()),
                "bring the node back (check its docker.service), or remove it with `docker node rm` if it is gone for good",
            ));
        }
    }
    for m in snap.managers() {
        let reach = m.manager.as_ref().map(|s| s.reachability).unwrap_or(Reachability::Unknown);
        if reach != Reachability::Reachable {
            out.push(at_node(
                RefusalKind::ManagerUnreachable,
                &m.hostname,
                format!("manager {} is unreachable by the other managers", m.hostname),
                "restore it (check docker.service and ports 2377/7946 on it) before upgrading; restarting another manager now could cost the quorum",
            ));
        }
    }
    let total = snap.managers().count();
    if total == 1 {
        if !(settings.allow_single_manager || req.allow_single_manager) {
            let m = snap.managers().next().expect("one manager");
            out.push(at_node(
                RefusalKind::SingleManager,
                &m.hostname,
                "the swarm has a single manager: its control plane is down while that manager's engine restarts".into(),
                "add managers (3 or 5), or accept the outage with --allow-single-manager or upgrade.allow_single_manager = true",
            ));
        }
    } else if total > 1 && !quorum_survives_one_down(snap) {
        out.push(Refusal {
            kind: RefusalKind::Quorum,
            node: None,
            service: None,
            reason: format!(
                "restarting any manager would lose the Raft quorum ({total} managers, {} needed)",
                quorum(total)
            ),
            fix: "run an odd number of managers (3 or 5) with all of them reachable".into(),
        });
    }
    out
}

/// What to do about a configuration dockerd would refuse on `host`.
fn engine_config_fix(p: &EngineConfigProblem, host: &str) -> String {
    let file = &p.file;
    if p.detail.starts_with("edited since the package installed it") {
        return format!(
            "move the edits of {file} on {host} into a drop-in (`systemctl edit docker.service`), then restore the package's file (`apt-get install --reinstall` of the installed docker-ce)"
        );
    }
    if file.ends_with(".service") {
        return format!(
            "correct the flags in {file}'s drop-ins on {host} (`systemctl cat {file}` shows them; `systemctl edit {file}` changes them), or move the setting into daemon.json only"
        );
    }
    if p.keys.is_empty() {
        return format!(
            "correct {file} on {host} (`dockerd --validate --config-file {file}` there checks it; Docker 23 and later)"
        );
    }
    let keys: Vec<String> = p.keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!("remove {} from {file} on {host}", keys.join(", "))
}

/// Checks for one node of the plan: its agent, its engine's configuration, its repository, its
/// disk, and the version step.
pub(crate) fn node_checks(
    snap: &ClusterSnapshot,
    settings: &Settings,
    req: &PlanRequest,
    node: &Node,
    packages: Option<&PackageSet>,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    let host = &node.hostname;
    let report = match snap.agents.get(&node.id) {
        Some(AgentStatus::Reachable(r)) => r,
        Some(AgentStatus::Unreachable { error }) => {
            out.push(at_node(
                RefusalKind::AgentUnreachable,
                host,
                format!("the agent on {host} is unreachable: {error}"),
                "check `systemctl status swarm-upgrade-agent` on that node and the agent port",
            ));
            return out;
        }
        None => {
            out.push(at_node(
                RefusalKind::AgentUnreachable,
                host,
                format!("no agent report for {host}"),
                "install and start swarm-upgrade-agent on that node (or take a new snapshot)",
            ));
            return out;
        }
    };
    for h in &report.hooks {
        if let Some(problem) = &h.problem {
            out.push(at_node(
                RefusalKind::HookUnusable,
                host,
                format!("hooks.{} on {host} cannot run: {problem}", h.point.key()),
                "fix it on that node (its agent reads its own configuration at each use), or remove the key from that node's [hooks]",
            ));
        }
    }
    let room = report.backup_room.as_ref().filter(|r| !r.fits());
    if let Some(r) = room.filter(|_| settings.backup_managers && node.role == Role::Manager) {
        out.push(at_node(
            RefusalKind::BackupNoRoom,
            host,
            format!(
                "{host}'s swarm state ({} MiB) would not fit twice in the {} MiB free under {}, where its archive goes",
                r.swarm_bytes.div_ceil(1 << 20),
                r.free_bytes >> 20,
                r.dir
            ),
            "free space there, or set upgrade.backup_managers = false to upgrade without the archive",
        ));
    }
    if let Some(what) = &report.dpkg_interrupted {
        out.push(at_node(
            RefusalKind::DpkgInterrupted,
            host,
            format!("dpkg on {host} was interrupted mid-transaction ({what})"),
            "run `dpkg --configure -a` on that node and check the packages before upgrading",
        ));
    }
    // docker-ce's postinst restarts dockerd during the install, long before our own restart
    // could check the file: a configuration dockerd refuses would leave the node without an engine.
    if let Some(p) = &report.engine_config {
        out.push(at_node(
            RefusalKind::EngineConfig,
            host,
            format!("dockerd on {host} would not start with {}: {}", p.file, p.detail),
            &engine_config_fix(p, host),
        ));
    }
    if let Some(e) = &report.repository_error {
        out.push(at_node(
            RefusalKind::RepositoryBroken,
            host,
            format!("the apt repository on {host} cannot be used: {e}"),
            "check its sources list, signing key and network, then `apt-get update` there",
        ));
    }
    if report.disk_free_bytes < settings.min_free_disk {
        out.push(at_node(
            RefusalKind::DiskLow,
            host,
            format!(
                "{host} has {} MiB free for packages, {} MiB needed",
                report.disk_free_bytes >> 20,
                settings.min_free_disk >> 20
            ),
            "free space under /var/cache/apt (apt-get clean) or lower upgrade.min_free_disk",
        ));
    }
    if let Some(packages) = packages {
        out.extend(package_checks(report, settings, req, node, packages));
    }
    if settings.standalone == StandalonePolicy::Refuse && !report.standalone.is_empty() {
        out.push(at_node(
            RefusalKind::StandaloneContainers,
            host,
            format!(
                "{host} runs containers no swarm service owns, which stop while its engine restarts: {}",
                crate::model::Standalone::list(&report.standalone)
            ),
            "stop or move them (`docker ps` on that node), or set upgrade.standalone = \"allow\" to upgrade it anyway",
        ));
    }
    if node.role == Role::Manager && node.manager.is_none() {
        out.push(at_node(
            RefusalKind::NoRaftStatus,
            host,
            format!("manager {host} reports no Raft status"),
            "check `docker node inspect` on it",
        ));
    }
    out
}

/// Checks of a node's package set: every package offered there (one refusal naming them all),
/// no downgrade without the opt-in, and the step in major versions.
fn package_checks(
    report: &AgentReport,
    settings: &Settings,
    req: &PlanRequest,
    node: &Node,
    packages: &PackageSet,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    let host = &node.hostname;
    let missing: Vec<String> = packages
        .0
        .iter()
        .filter(|(p, v)| !report.available.get(*p).is_some_and(|vs| vs.contains(v)))
        .map(|(p, v)| format!("{p} {v}"))
        .collect();
    let engine = &settings.engine_packages[0];
    if !missing.is_empty() && report.repository_error.is_none() {
        let engine_form = packages.get(engine).map_or(String::new(), |v| {
            format!("give the engine version instead (`--to {}`: each node resolves it in its own repository), ", v.engine_version())
        });
        let verb = if missing.len() == 1 { "is" } else { "are" };
        out.push(at_node(
            RefusalKind::VersionUnavailable,
            host,
            format!("{} {verb} not in the repository on {host}", missing.join(", ")),
            &format!(
                "{engine_form}pick a version from `apt-cache madison` on that node, or run `apt-get update` there"
            ),
        ));
    }
    let Some(target) = packages.get(engine) else { return out };
    if let Some(installed) = report.installed.get(engine)
        && target < installed
        && !(settings.allow_downgrade || req.allow_downgrade)
    {
        out.push(at_node(
            RefusalKind::Downgrade,
            host,
            format!("target {target} is below {engine} {installed} installed on {host}"),
            "pass --allow-downgrade if a downgrade is really meant",
        ));
    }
    let (from, to) = (node.engine_version.major(), target.engine_version().major());
    if from.abs_diff(to) > settings.max_major_skew {
        out.push(at_node(
            RefusalKind::MajorSkew,
            host,
            format!(
                "{host} runs engine {} and the target is {}: {} major versions apart, at most {} allowed",
                node.engine_version,
                target.engine_version(),
                from.abs_diff(to),
                settings.max_major_skew
            ),
            "upgrade in steps through intermediate versions, or raise upgrade.max_major_skew",
        ));
    }
    out
}

/// Services must be settled before the run: verification after each node could never pass
/// otherwise. A global service's task still missing on a node of `settling` (the batch before,
/// verifying while the next starts early) is left to that node's own verification.
pub(crate) fn service_checks(snap: &ClusterSnapshot, settling: &[NodeId]) -> Vec<Refusal> {
    every_service(snap, settling)
        .filter_map(|(s, c)| match c {
            Convergence::Converged => None,
            Convergence::Converging(why) | Convergence::Failed(why) => Some(Refusal {
                kind: RefusalKind::ServiceUnsettled,
                node: None,
                service: Some(s.name.clone()),
                reason: why,
                fix: format!(
                    "let service {} converge first (`docker service ps {}`), or fix it",
                    s.name, s.name
                ),
            }),
        })
        .collect()
}
