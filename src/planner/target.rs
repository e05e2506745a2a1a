//! Which engine version to upgrade to, and each node's exact package set that carries it: a
//! node's repository names the engine version in its own release's way
//! (`5:28.5.2-1~debian.12~bookworm` on one node, `5:28.5.2-1~ubuntu.24.04~noble` on another).

use std::collections::{BTreeMap, BTreeSet};

use super::{PlanRequest, Refusal, RefusalKind};
use crate::config::{Settings, TargetSetting};
use crate::model::target::engine_versions;
use crate::model::{
    AgentReport, ClusterSnapshot, DebVersion, EngineVersion, NodeId, PackageSet, Target,
};

fn refusal(node: Option<&str>, reason: String, fix: &str) -> Refusal {
    Refusal {
        kind: RefusalKind::VersionUnavailable,
        node: node.map(str::to_string),
        service: None,
        reason,
        fix: fix.to_string(),
    }
}

/// The engine versions a node can install: each engine package offers a release carrying it.
pub(crate) fn installable(report: &AgentReport, settings: &Settings) -> BTreeSet<EngineVersion> {
    settings
        .engine_packages
        .iter()
        .map(|p| engine_versions(report.available.get(p).map(Vec::as_slice).unwrap_or_default()))
        .reduce(|a, b| a.intersection(&b).cloned().collect())
        .unwrap_or_default()
}

/// The engine versions every reporting node of `nodes` can install, ascending.
fn installable_everywhere(
    snap: &ClusterSnapshot,
    settings: &Settings,
    nodes: &[NodeId],
) -> Vec<EngineVersion> {
    nodes
        .iter()
        .filter_map(|id| snap.agent_report(id))
        .map(|r| installable(r, settings))
        .reduce(|a, b| a.intersection(&b).cloned().collect())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The target: `--to`, else the configured one. A policy becomes the engine version it picks
/// among what `nodes` (the selected nodes) can all install, so the cluster ends on one version.
pub fn resolve(
    snap: &ClusterSnapshot,
    settings: &Settings,
    req: &PlanRequest,
    nodes: &[NodeId],
) -> Result<Target, Refusal> {
    let engine = &settings.engine_packages[0];
    match req.to.as_ref().unwrap_or(&settings.target) {
        TargetSetting::Exact(t) => Ok(t.clone()),
        TargetSetting::Unset => Err(refusal(
            None,
            "no target version".into(),
            "pass --to with an engine version (28.5.2), an exact package version (see `apt-cache madison docker-ce` on a node) or `latest`, or set target.version or target.policy in the configuration",
        )),
        TargetSetting::Latest => {
            installable_everywhere(snap, settings, nodes).pop().map(Target::Engine).ok_or_else(|| {
                refusal(
                    None,
                    format!("policy `latest`: no engine version of {engine} is offered by every selected node's repository"),
                    "check the nodes' apt sources and run `apt-get update` there (`swarm-upgrade plan` lists what each node offers when given --to)",
                )
            })
        }
        TargetSetting::LatestPatch => latest_patch(snap, settings, nodes),
    }
}

/// `latest-patch`: the newest engine version of the lowest installed major.minor that every
/// selected node can install.
fn latest_patch(
    snap: &ClusterSnapshot,
    settings: &Settings,
    nodes: &[NodeId],
) -> Result<Target, Refusal> {
    let engine = &settings.engine_packages[0];
    let lowest = nodes
        .iter()
        .filter_map(|id| snap.agent_report(id)?.installed.get(engine))
        .map(|v| v.engine_version())
        .min();
    let Some(lowest) = lowest else {
        return Err(refusal(
            None,
            format!("policy `latest-patch`: no selected node reported an installed {engine}"),
            "check that the agents run and that packages.engine names the installed package",
        ));
    };
    installable_everywhere(snap, settings, nodes)
        .into_iter()
        .filter(|v| v.major() == lowest.major() && v.minor() == lowest.minor())
        .rfind(|v| v >= &lowest)
        .map(Target::Engine)
        .ok_or_else(|| {
            refusal(
                None,
                format!(
                    "policy `latest-patch`: no engine {}.{}.x of {engine} is offered by every selected node's repository",
                    lowest.major(),
                    lowest.minor()
                ),
                "use --to or policy `latest`",
            )
        })
}

/// A node's exact package set for `target`: each engine package at the version its repository
/// has for the target (for an exact package version, that version: preflight checks it is
/// offered), each companion at the newest version offered there, and each plugin installed there
/// (see [`plugin`]). `None` for a node without a usable report (its agent unreachable, its
/// repository broken): preflight refuses it already.
pub(crate) fn node_set(
    report: Option<&AgentReport>,
    settings: &Settings,
    target: &Target,
    host: &str,
) -> Result<Option<PackageSet>, Refusal> {
    let Some(report) = report.filter(|r| r.repository_error.is_none()) else { return Ok(None) };
    let mut set = engine_set(report, settings, target, host)?;
    for p in &settings.companion_packages {
        let Some(v) = newest(offered(report, p)) else {
            return Err(refusal(
                Some(host),
                format!("companion package {p} is not in the repository on {host}"),
                "check the node's apt sources, or remove it from packages.companions",
            ));
        };
        set.insert(p.clone(), v);
    }
    for p in &settings.plugin_packages {
        if let Some(v) = plugin(report, settings, p, target) {
            set.insert(p.clone(), v);
        }
    }
    Ok(Some(PackageSet(set)))
}

/// The versions of `package` a node's repository offers.
fn offered<'r>(report: &'r AgentReport, package: &str) -> &'r [DebVersion] {
    report.available.get(package).map(Vec::as_slice).unwrap_or_default()
}

/// The newest release among `versions` (never a pre-release).
fn newest(versions: &[DebVersion]) -> Option<DebVersion> {
    versions.iter().filter(|v| !v.is_prerelease()).max().cloned()
}

/// The engine packages at the target, or one refusal naming what the node's repository lacks
/// and the engine versions it offers.
fn engine_set(
    report: &AgentReport,
    settings: &Settings,
    target: &Target,
    host: &str,
) -> Result<BTreeMap<String, DebVersion>, Refusal> {
    let mut set = BTreeMap::new();
    let mut missing = Vec::new();
    for p in &settings.engine_packages {
        let version = match target {
            Target::Package(v) => Some(v.clone()),
            Target::Engine(_) => target.pick(offered(report, p)),
        };
        match version {
            Some(v) => {
                set.insert(p.clone(), v);
            }
            None => missing.push(p.as_str()),
        }
    }
    if missing.is_empty() {
        return Ok(set);
    }
    let has: Vec<String> = installable(report, settings).iter().map(ToString::to_string).collect();
    let has = match has.len() {
        0 => "no engine version at all".to_string(),
        n if n <= SHOWN => format!("engine {}", has.join(", ")),
        n => format!("engine {} (and {} older)", has[n - SHOWN..].join(", "), n - SHOWN),
    };
    Err(refusal(
        Some(host),
        format!(
            "the repository on {host} has no {} for engine {target}; it offers {has}",
            missing.join(", ")
        ),
        "pick an engine version every node offers (`--to latest` picks the newest), or add that version's repository to the node's apt sources and run `apt-get update` there",
    ))
}

/// How many of the engine versions a node offers a refusal names (the newest).
const SHOWN: usize = 6;

/// The version a plugin installed on a node goes to. One versioned with the engine (its
/// installed version carries the installed engine's, as docker-ce-rootless-extras does) follows
/// the engine: the version carrying the target, or it is left alone when the repository lacks
/// one. Any other goes to the newest release offered, never below what is installed. `None`
/// (left alone) too when it is not installed or not offered there (it came from elsewhere).
fn plugin(
    report: &AgentReport,
    settings: &Settings,
    package: &str,
    target: &Target,
) -> Option<DebVersion> {
    let installed = report.installed.get(package)?;
    let offered = report.available.get(package)?;
    let engine = report.installed.get(&settings.engine_packages[0]);
    if engine.is_some_and(|e| e.engine_version() == installed.engine_version()) {
        return target.pick(offered);
    }
    newest(offered).filter(|v| v >= installed)
}

#[cfg(test)]
mod tests;
