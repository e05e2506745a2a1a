//! A run over the in-memory cluster whose nodes run two Debian releases: each node installs the
//! package versions its own repository names for the engine version, plugins included, and a
//! rollback returns each node's own previous set.

mod common;

use common::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::machine::Phase;
use swarm_upgrade::model::{DebVersion, PackageSet};
use swarm_upgrade::run::Outcome;

/// The hosts whose repository names every version `~debian.12~bookworm`.
const BOOKWORM: [&str; 2] = ["worker2", "manager3"];
const BUILDX_OLD: &str = "0.17.1-1~debian.13~trixie";
const BUILDX_NEW: &str = "0.29.1-1~debian.13~trixie";

fn bookworm(v: &DebVersion) -> DebVersion {
    v.to_string().replace("debian.13~trixie", "debian.12~bookworm").parse().unwrap()
}

/// The five-node world, two of its hosts on Debian 12, and worker1 with the buildx plugin.
fn mixed() -> FakeCluster {
    let mut w = world_from(&fixture());
    for h in w.hosts.iter_mut().filter(|h| BOOKWORM.contains(&h.hostname.as_str())) {
        for p in ["docker-ce", "docker-ce-cli"] {
            let offered = h.available.get_mut(p).unwrap();
            *offered = offered.iter().map(bookworm).collect();
            let installed = h.installed.0.get_mut(p).unwrap();
            *installed = bookworm(installed);
        }
    }
    let w1 = w.hosts.iter_mut().find(|h| h.hostname == "worker1").unwrap();
    w1.installed.0.insert("docker-buildx-plugin".into(), v(BUILDX_OLD));
    w1.available.insert("docker-buildx-plugin".into(), vec![v(BUILDX_OLD), v(BUILDX_NEW)]);
    FakeCluster::new(w)
}

fn release_of(host: &str) -> &'static str {
    if BOOKWORM.contains(&host) { "debian.12~bookworm" } else { "debian.13~trixie" }
}

#[tokio::test(start_paused = true)]
async fn each_node_installs_its_own_releases_packages_for_the_engine_version() {
    let c = mixed();
    let rec = run(&c, &Settings::default(), &to("28.5.2"), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert_eq!(rec.target.to_string(), "28.5.2");
    let w = c.world.lock().unwrap();
    for h in &w.hosts {
        let want = v(&format!("5:28.5.2-1~{}", release_of(&h.hostname)));
        assert_eq!(h.installed.get("docker-ce"), Some(&want), "{}", h.hostname);
        assert_eq!(h.installed.get("docker-ce-cli"), Some(&want), "{}", h.hostname);
        let n = rec.nodes.iter().find(|n| n.hostname == h.hostname).unwrap();
        assert_eq!(n.phase, Phase::Done);
        assert_eq!(rec.packages_of(n), &h.installed, "{}: the record keeps its set", h.hostname);
        let node = w.nodes.iter().find(|n| Some(&n.id) == h.local_id.as_ref()).unwrap();
        assert_eq!(node.engine_version.to_string(), "28.5.2", "one engine version everywhere");
    }
    let w1 = w.hosts.iter().find(|h| h.hostname == "worker1").unwrap();
    assert_eq!(w1.installed.get("docker-buildx-plugin"), Some(&v(BUILDX_NEW)));
    let others = w.hosts.iter().filter(|h| h.hostname != "worker1");
    assert!(others.into_iter().all(|h| h.installed.get("docker-buildx-plugin").is_none()));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_returns_the_nodes_own_set_plugins_included() {
    let c = mixed();
    let before: PackageSet = c.world.lock().unwrap().hosts[3].installed.clone();
    assert_eq!(c.world.lock().unwrap().hosts[3].hostname, "worker1");
    let rec = run(&c, &Settings::default(), &to("28.5.3"), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed), "{:?}", rec.reason);
    assert_eq!(rec.nodes[0].hostname, "worker1");
    assert_eq!(rec.nodes[0].phase, Phase::RolledBack);
    assert_eq!(
        rec.nodes[0].packages.get("docker-buildx-plugin"),
        Some(&v(BUILDX_NEW)),
        "the plugin went with the engine"
    );
    let w = c.world.lock().unwrap();
    let w1 = w.hosts.iter().find(|h| h.hostname == "worker1").unwrap();
    assert_eq!(w1.installed, before, "engine, companion and plugin back as they were");
    assert!(w.log.iter().any(|l| l.starts_with("rollback worker1") && l.contains(BUILDX_OLD)));
}
