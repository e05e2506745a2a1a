//! The scope a node's polls read, on the bundled five-node cluster.

use super::*;
use crate::model::convergence::first_unconverged;
use crate::model::{NodeState, Task};

fn snap() -> ClusterSnapshot {
    serde_json::from_str(include_str!("../../../tests/fixtures/five-node.json")).unwrap()
}

fn id(s: &str) -> NodeId {
    NodeId(format!("{s}-id"))
}

fn names(snap: &ClusterSnapshot) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    (
        snap.nodes.iter().map(|n| n.hostname.as_str()).collect(),
        snap.services.iter().map(|s| s.name.as_str()).collect(),
        snap.tasks.iter().map(|t| t.id.as_str()).collect(),
    )
}

#[test]
fn a_nodes_services_are_those_running_on_it_then_its_surge() {
    let s = snap();
    let on = services_on(&s, &id("worker1"), &[ServiceId("web-id".into())]);
    assert_eq!(on, ["web-id", "solo-id", "agentcheck-id"].map(|x| ServiceId(x.into())));
    let on = services_on(&s, &id("worker2"), &[ServiceId("solo-id".into())]);
    assert_eq!(on, ["web-id", "agentcheck-id", "solo-id"].map(|x| ServiceId(x.into())));
}

#[test]
fn the_scope_holds_its_services_tasks_and_the_nodes_they_run_on() {
    let s = snap();
    let worker1 = id("worker1");
    // manager1 runs agentcheck only: its scope is itself and that task; asking for solo adds solo's
    // task and the node it runs on, with agentcheck's task there.
    let manager1 = id("manager1");
    assert_eq!(
        names(&s.scoped(&manager1, &[])),
        (vec!["manager1"], vec!["agentcheck"], vec!["agentcheck.manager1"])
    );
    assert_eq!(
        names(&s.scoped(&manager1, &[ServiceId("solo-id".into())])),
        (
            vec!["manager1", "worker1"],
            vec!["solo", "agentcheck"],
            vec!["solo.1", "agentcheck.manager1", "agentcheck.worker1"]
        )
    );
    // web runs on four nodes: all of them are read, with agentcheck's tasks on them.
    let scoped = s.scoped(&worker1, &services_on(&s, &worker1, &[]));
    let (nodes, _, tasks) = names(&scoped);
    assert_eq!(nodes, ["manager2", "manager3", "worker1", "worker2"]);
    assert!(tasks.contains(&"agentcheck.manager2") && !tasks.contains(&"agentcheck.manager1"));
    assert_eq!(first_unconverged(&scoped), None);
}

#[test]
fn a_service_outside_the_scope_is_not_judged_and_one_inside_is() {
    let mut s = snap();
    let worker2 = id("worker2");
    // solo (on worker1) lost its task: the whole cluster has not converged, worker2's scope has.
    s.tasks.retain(|t| t.id != "solo.1");
    assert!(first_unconverged(&s).is_some());
    assert_eq!(first_unconverged(&s.scoped(&worker2, &services_on(&s, &worker2, &[]))), None);
    // web's task on worker2 is starting again: both see it.
    let web2 = s.tasks.iter_mut().find(|t| t.id == "web.2").unwrap();
    web2.state = TaskState::Starting;
    assert!(first_unconverged(&s.scoped(&worker2, &services_on(&s, &worker2, &[]))).is_some());
}

#[test]
fn a_task_on_a_down_node_of_the_scope_does_not_count() {
    let mut s = snap();
    let worker1 = id("worker1");
    s.nodes.iter_mut().find(|n| n.hostname == "manager3").unwrap().state = NodeState::Down;
    let scoped = s.scoped(&worker1, &services_on(&s, &worker1, &[]));
    assert!(scoped.nodes.iter().any(|n| n.hostname == "manager3"), "web.4's node is read");
    assert!(first_unconverged(&scoped).is_some(), "web.4 on a down node is not running");
}

#[test]
fn every_task_on_the_node_is_read_whatever_its_service() {
    let mut s = snap();
    let worker1 = id("worker1");
    s.tasks.push(Task {
        id: "late.1".into(),
        service: ServiceId("late-id".into()),
        slot: Some(1),
        node: Some(worker1.clone()),
        state: TaskState::Running,
        desired: TaskState::Running,
        error: None,
    });
    let scoped = s.scoped(&worker1, &[]);
    assert!(scoped.tasks.iter().any(|t| t.id == "late.1"));
}

#[test]
fn a_service_that_landed_on_the_node_after_its_scope_was_kept_is_judged() {
    let mut s = snap();
    let worker2 = id("worker2");
    let kept = services_on(&s, &worker2, &[]);
    // solo moved onto worker2 after the scope was recorded, then the drain stopped it there and
    // no other node took it: the scope still judges solo, from its task on worker2.
    let solo = s.tasks.iter_mut().find(|t| t.id == "solo.1").unwrap();
    solo.node = Some(worker2.clone());
    solo.desired = TaskState::Shutdown;
    solo.state = TaskState::Shutdown;
    assert!(!kept.contains(&ServiceId("solo-id".into())));
    let scoped = s.scoped(&worker2, &kept);
    assert!(scoped.services.iter().any(|svc| svc.name == "solo"));
    assert!(first_unconverged(&scoped).is_some(), "solo runs nowhere");
}

#[test]
fn a_node_gone_from_the_swarm_is_not_read_nor_filtered_on() {
    let mut s = snap();
    let worker1 = id("worker1");
    let scope = services_on(&s, &worker1, &[]);
    // worker1 rejoined under a new ID and its old entry was removed: tasks still name the old ID.
    s.nodes.retain(|n| n.id != worker1);
    let scoped = s.scoped(&worker1, &scope);
    assert!(scoped.nodes.iter().all(|n| n.id != worker1));
    assert!(scoped.tasks.iter().all(|t| t.node.as_ref() != Some(&worker1) || t.slot.is_some()));
    assert_eq!(names(&scoped).1, ["web", "solo", "agentcheck"]);
}
