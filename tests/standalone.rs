//! Containers no swarm service owns: `plan` lists them per node, `upgrade.standalone = "refuse"`
//! refuses their node naming them, and a run records what ran before and after on each node.

mod common;

use common::*;
use swarm_upgrade::config::{Settings, StandalonePolicy};
use swarm_upgrade::model::plan::RefusalKind;
use swarm_upgrade::model::{AgentStatus, ClusterSnapshot, NodeId, Standalone};
use swarm_upgrade::planner::plan;
use swarm_upgrade::report::RunReport;
use swarm_upgrade::run::Outcome;

fn container(name: &str, restart: &str) -> Standalone {
    Standalone { name: name.into(), image: "busybox".into(), restart: restart.into() }
}

/// The five-node snapshot with two containers started by `docker run` on worker2.
fn with_standalone() -> ClusterSnapshot {
    let mut snap = fixture();
    let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&NodeId("worker2-id".into())) else {
        panic!("worker2's report")
    };
    r.standalone = vec![container("cache", "unless-stopped"), container("scratch", "no")];
    snap
}

#[test]
fn plan_lists_them_on_their_node_and_says_which_come_back() {
    let p = plan(&with_standalone(), &Settings::default(), &to(NEW)).unwrap();
    let w2 = p.nodes.iter().find(|n| n.hostname == "worker2").unwrap();
    assert_eq!(w2.standalone, [container("cache", "unless-stopped"), container("scratch", "no")]);
    assert!(p.nodes.iter().filter(|n| n.hostname != "worker2").all(|n| n.standalone.is_empty()));
    let shown: Vec<String> = w2.standalone.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["cache (restart unless-stopped: comes back)", "scratch (restart no: stays stopped)"]
    );
    let flaky = container("flaky", "on-failure").to_string();
    assert_eq!(flaky, "flaky (restart on-failure: comes back only if it exits with an error)");
}

#[test]
fn a_nodes_record_names_a_bounded_number() {
    let many: Vec<Standalone> = (0..25).map(|i| container(&format!("c{i:02}"), "no")).collect();
    let names = Standalone::names(&many, 20);
    assert_eq!(names.len(), 21);
    assert_eq!((names[19].as_str(), names[20].as_str()), ("c19", "... and 5 more"));
    assert_eq!(Standalone::names(&many[..3], 20), ["c00", "c01", "c02"]);
}

#[test]
fn refuse_names_the_node_and_its_containers() {
    let refuse = Settings { standalone: StandalonePolicy::Refuse, ..Settings::default() };
    let r = plan(&with_standalone(), &refuse, &to(NEW)).unwrap_err();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, RefusalKind::StandaloneContainers);
    assert_eq!(r[0].node.as_deref(), Some("worker2"));
    assert!(
        r[0].reason.contains("cache (restart unless-stopped: comes back), scratch"),
        "{}",
        r[0]
    );
    assert!(r[0].fix.contains("upgrade.standalone = \"allow\""), "{}", r[0].fix);
    assert!(plan(&fixture(), &refuse, &to(NEW)).is_ok(), "no such container: nothing to refuse");
}

#[tokio::test(start_paused = true)]
async fn a_run_records_what_ran_before_and_after_on_each_node() {
    let c = FakeCluster::new(world_from(&with_standalone()));
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w2 = rec.nodes.iter().find(|n| n.hostname == "worker2").unwrap();
    assert_eq!(w2.standalone_before.as_deref(), Some(&["cache".to_string(), "scratch".into()][..]));
    assert_eq!(
        w2.standalone_after.as_deref(),
        Some(&["cache".to_string()][..]),
        "scratch has no restart policy"
    );
    let report = RunReport::new(rec.clone(), "docker-ce");
    let lines: Vec<Option<String>> = report.versions.iter().map(|v| v.standalone_line()).collect();
    let w2_line = report.versions.iter().position(|v| v.hostname == "worker2").unwrap();
    assert_eq!(
        lines[w2_line].as_deref(),
        Some("standalone containers before: cache, scratch; after: cache")
    );
    assert_eq!(lines.iter().flatten().count(), 1, "nodes without any say nothing: {lines:?}");
}
