//! Targets on a swarm whose nodes run two Debian releases.

use crate::config::{Settings, TargetSetting};
use crate::model::{AgentStatus, ClusterSnapshot, DebVersion, NodeId};
use crate::planner::{PlanRequest, RefusalKind, plan};

/// The nodes that see the repository as Debian 12.
const BOOKWORM: [&str; 2] = ["worker2", "manager3"];

/// The five-node swarm, two of its nodes on Debian 12: their repository names every engine
/// version `~debian.12~bookworm`.
fn mixed() -> ClusterSnapshot {
    let mut snap: ClusterSnapshot =
        serde_json::from_str(include_str!("../../../tests/fixtures/five-node.json")).unwrap();
    for host in BOOKWORM {
        let id = NodeId(format!("{host}-id"));
        let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) else { panic!("{host}") };
        let bookworm = |v: &DebVersion| -> DebVersion {
            v.to_string().replace("debian.13~trixie", "debian.12~bookworm").parse().unwrap()
        };
        for p in ["docker-ce", "docker-ce-cli"] {
            let offered = r.available.get_mut(p).unwrap();
            *offered = offered.iter().map(bookworm).collect();
            let installed = r.installed.get_mut(p).unwrap();
            *installed = bookworm(installed);
        }
    }
    snap
}

fn to(v: &str) -> PlanRequest {
    PlanRequest { to: Some(v.parse().unwrap()), ..Default::default() }
}

fn drop_offer(snap: &mut ClusterSnapshot, host: &str, engine: &str) {
    let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&NodeId(format!("{host}-id"))) else {
        panic!("{host}")
    };
    for p in ["docker-ce", "docker-ce-cli"] {
        r.available.get_mut(p).unwrap().retain(|v| v.engine_version().to_string() != engine);
    }
}

#[test]
fn an_engine_version_resolves_to_each_nodes_own_packages() {
    let p = plan(&mixed(), &Settings::default(), &to("28.5.2")).unwrap();
    assert_eq!(p.target.to_string(), "28.5.2");
    assert_eq!(p.nodes.len(), 5);
    for n in &p.nodes {
        let release = if BOOKWORM.contains(&n.hostname.as_str()) {
            "debian.12~bookworm"
        } else {
            "debian.13~trixie"
        };
        for pkg in ["docker-ce", "docker-ce-cli"] {
            let want = format!("5:28.5.2-1~{release}");
            assert_eq!(n.packages.get(pkg).unwrap().to_string(), want, "{} {pkg}", n.hostname);
        }
        assert_eq!(n.packages.get("containerd.io").unwrap().to_string(), "2.1.9-1");
    }
}

#[test]
fn an_exact_package_version_is_refused_once_per_node_of_the_other_release() {
    let r = plan(&mixed(), &Settings::default(), &to("5:28.5.2-1~debian.13~trixie")).unwrap_err();
    let nodes: Vec<&str> = r.iter().filter_map(|r| r.node.as_deref()).collect();
    assert_eq!(nodes, ["worker2", "manager3"], "{r:?}");
    assert!(r.iter().all(|r| r.kind == RefusalKind::VersionUnavailable));
    assert!(r[0].fix.contains("--to 28.5.2"), "{}", r[0].fix);
}

#[test]
fn a_node_without_the_engine_version_is_named_with_what_it_offers() {
    let mut snap = mixed();
    drop_offer(&mut snap, "worker2", "28.5.2");
    let r = plan(&snap, &Settings::default(), &to("28.5.2")).unwrap_err();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].node.as_deref(), Some("worker2"));
    assert_eq!(
        r[0].reason,
        "the repository on worker2 has no docker-ce, docker-ce-cli for engine 28.5.2; it offers engine 26.1.5, 28.5.3"
    );
}

#[test]
fn latest_is_the_newest_engine_version_every_node_can_install() {
    let latest = Settings { target: TargetSetting::Latest, ..Settings::default() };
    let req = PlanRequest::default();
    assert_eq!(plan(&mixed(), &latest, &req).unwrap().target.to_string(), "28.5.3");
    let mut snap = mixed();
    drop_offer(&mut snap, "manager3", "28.5.3");
    let p = plan(&snap, &latest, &req).unwrap();
    assert_eq!(p.target.to_string(), "28.5.2", "manager3 cannot install 28.5.3");
    assert!(
        p.nodes
            .iter()
            .all(|n| n.packages.get("docker-ce").unwrap().engine_version().to_string() == "28.5.2")
    );
    assert_eq!(plan(&snap, &latest, &to("latest")).unwrap().target.to_string(), "28.5.2");
}

#[test]
fn a_node_on_a_prerelease_is_not_at_its_release() {
    let mut snap = mixed();
    let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&NodeId("worker1-id".into())) else {
        panic!()
    };
    r.installed.insert("docker-ce".into(), "5:28.5.2~rc.1-1~debian.13~trixie".parse().unwrap());
    let p = plan(&snap, &Settings::default(), &to("28.5.2")).unwrap();
    assert_eq!(p.nodes.len(), 5, "worker1 runs 28.5.2's release candidate: {:?}", p.skipped);
}

#[test]
fn a_node_at_the_engine_version_is_skipped_whatever_its_release() {
    let mut snap = mixed();
    let id = NodeId("worker2-id".into());
    let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) else { panic!() };
    r.installed.insert("docker-ce".into(), "5:28.5.2-1~debian.12~bookworm".parse().unwrap());
    let p = plan(&snap, &Settings::default(), &to("28.5.2")).unwrap();
    assert_eq!(p.nodes.len(), 4);
    assert_eq!(p.skipped[0].hostname, "worker2");
    assert_eq!(p.skipped[0].reason, "already at 28.5.2");
}

/// Installs `package` at `installed` on `host`, its repository offering `offered`.
fn with_plugin(
    snap: &mut ClusterSnapshot,
    host: &str,
    package: &str,
    installed: Option<&str>,
    offered: &[&str],
) {
    let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&NodeId(format!("{host}-id"))) else {
        panic!("{host}")
    };
    if let Some(v) = installed {
        r.installed.insert(package.into(), v.parse().unwrap());
    }
    r.available.insert(package.into(), offered.iter().map(|v| v.parse().unwrap()).collect());
}

#[test]
fn plugins_go_with_the_engine_only_where_they_are_installed() {
    let mut snap = mixed();
    let buildx = ["0.17.1-1~debian.13~trixie", "0.29.1-1~debian.13~trixie"];
    let rootless = [
        "5:26.1.5-1~debian.13~trixie",
        "5:28.5.2-1~debian.13~trixie",
        "5:28.5.3-1~debian.13~trixie",
    ];
    with_plugin(&mut snap, "worker1", "docker-buildx-plugin", Some(buildx[0]), &buildx);
    with_plugin(&mut snap, "worker1", "docker-ce-rootless-extras", Some(rootless[0]), &rootless);
    with_plugin(&mut snap, "manager1", "docker-buildx-plugin", None, &buildx);
    // Installed from elsewhere: not this repository's to upgrade.
    with_plugin(&mut snap, "manager2", "docker-compose-plugin", Some("2.29.7-1"), &[]);
    // Offered only below what is installed: left as it is.
    with_plugin(
        &mut snap,
        "worker2",
        "docker-compose-plugin",
        Some("2.40.3-1~debian.12~bookworm"),
        &["2.29.7-1~debian.12~bookworm"],
    );
    let p = plan(&snap, &Settings::default(), &to("28.5.2")).unwrap();
    let set = |host: &str| &p.nodes.iter().find(|n| n.hostname == host).unwrap().packages;
    let w1 = set("worker1");
    assert_eq!(w1.get("docker-buildx-plugin").unwrap().to_string(), buildx[1], "the newest");
    assert_eq!(
        w1.get("docker-ce-rootless-extras").unwrap().to_string(),
        "5:28.5.2-1~debian.13~trixie",
        "the one carrying the target, not the newest"
    );
    for host in ["manager1", "manager2", "worker2", "manager3"] {
        let names: Vec<&String> = set(host).0.keys().collect();
        assert_eq!(names, ["containerd.io", "docker-ce", "docker-ce-cli"], "{host}");
    }
    // Versioned with the engine, and the repository lacks the target's: left alone.
    let mut snap = mixed();
    with_plugin(
        &mut snap,
        "worker1",
        "docker-ce-rootless-extras",
        Some(rootless[0]),
        &rootless[..1],
    );
    let p = plan(&snap, &Settings::default(), &to("28.5.2")).unwrap();
    assert!(p.nodes[0].packages.get("docker-ce-rootless-extras").is_none(), "{:?}", p.nodes[0]);
    let none = Settings { plugin_packages: vec![], ..Settings::default() };
    assert!(
        plan(&snap, &none, &to("28.5.2")).unwrap().nodes.iter().all(|n| n.packages.0.len() == 3)
    );
}
