//! Which version to upgrade to, and the exact package set that carries it.

use std::collections::BTreeMap;

use super::{PlanRequest, Refusal, RefusalKind};
use crate::config::{Settings, TargetSetting};
use crate::model::{ClusterSnapshot, DebVersion, PackageSet};

fn refusal(reason: String, fix: &str) -> Refusal {
    Refusal {
        kind: RefusalKind::VersionUnavailable,
        node: None,
        service: None,
        reason,
        fix: fix.to_string(),
    }
}

/// Versions of `package` that every reporting agent's repository offers.
fn offered_everywhere(snap: &ClusterSnapshot, package: &str) -> Vec<DebVersion> {
    let mut reports = snap.nodes.iter().filter_map(|n| snap.agent_report(&n.id));
    let Some(first) = reports.next() else { return Vec::new() };
    let mut common: Vec<DebVersion> = first.available.get(package).cloned().unwrap_or_default();
    for r in reports {
        let here = r.available.get(package).cloned().unwrap_or_default();
        common.retain(|v| here.contains(v));
    }
    common.sort();
    common
}

/// The target: `--to`, else the configured exact version or policy.
pub fn resolve(
    snap: &ClusterSnapshot,
    settings: &Settings,
    req: &PlanRequest,
) -> Result<DebVersion, Refusal> {
    if let Some(v) = &req.to {
        return Ok(v.clone());
    }
    let engine = &settings.engine_packages[0];
    let offered = offered_everywhere(snap, engine);
    match &settings.target {
        TargetSetting::Exact(v) => Ok(v.clone()),
        TargetSetting::Unset => Err(refusal(
            "no target version".into(),
            "pass --to VERSION (see `apt-cache madison docker-ce` on a node) or set target.version or target.policy in the configuration",
        )),
        TargetSetting::Latest => offered.last().cloned().ok_or_else(|| {
            refusal(
                format!(
                    "policy `latest`: no version of {engine} is offered by every node's repository"
                ),
                "check the nodes' apt sources and run `apt-get update` there",
            )
        }),
        TargetSetting::LatestPatch => {
            let lowest = snap
                .nodes
                .iter()
                .filter_map(|n| snap.agent_report(&n.id)?.installed.get(engine))
                .min();
            let Some(lowest) = lowest else {
                return Err(refusal(
                    format!("policy `latest-patch`: no node reported an installed {engine}"),
                    "check that the agents run and that packages.engine names the installed package",
                ));
            };
            let ev = lowest.engine_version();
            offered
                .into_iter()
                .filter(|v| v.engine_version().major() == ev.major() && v.engine_version().minor() == ev.minor())
                .rfind(|v| v >= lowest)
                .ok_or_else(|| {
                    refusal(
                        format!("policy `latest-patch`: no {engine} {}.{}.x is offered by every node's repository", ev.major(), ev.minor()),
                        "use --to or policy `latest`",
                    )
                })
        }
    }
}

/// Engine packages at the target; each companion at the newest version every repository offers.
pub(crate) fn package_set(
    snap: &ClusterSnapshot,
    settings: &Settings,
    target: &DebVersion,
) -> Result<PackageSet, Refusal> {
    let mut set = BTreeMap::new();
    for p in &settings.engine_packages {
        set.insert(p.clone(), target.clone());
    }
    for p in &settings.companion_packages {
        let offered = offered_everywhere(snap, p);
        let Some(v) = offered.last() else {
            return Err(refusal(
                format!("companion package {p} is not offered by every node's repository"),
                "check the nodes' apt sources, or remove it from packages.companions",
            ));
        };
        set.insert(p.clone(), v.clone());
    }
    Ok(PackageSet(set))
}
