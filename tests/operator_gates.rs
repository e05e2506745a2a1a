//! Operator gates (issue 17) over the in-memory cluster: a run's plan confirmed before anything
//! changes, and services whose outage an operator accepts.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::{Coordinator, CoordinatorError, Ports};
use swarm_upgrade::run::Outcome;

fn cluster() -> FakeCluster {
    FakeCluster::new(world_from(&fixture()))
}

/// A run whose plan is answered by `answer`; returns the run's end and the plans shown.
async fn confirmed(
    c: &FakeCluster,
    answer: Result<(), String>,
) -> (Result<swarm_upgrade::run::RunRecord, CoordinatorError>, Vec<usize>) {
    let shown = Arc::new(Mutex::new(Vec::new()));
    let seen = shown.clone();
    let clock = TestClock::new();
    let ports = Ports { swarm: c, agents: c, store: c, clock: &clock };
    let settings = Settings::default();
    let end = Coordinator::new(ports, &settings, "manager1/1")
        .with_confirm(Box::new(move |plan| {
            seen.lock().unwrap().push(plan.nodes.len());
            answer.clone()
        }))
        .run(&to(NEW), "run-1")
        .await;
    let shown = shown.lock().unwrap().clone();
    (end, shown)
}

#[tokio::test(start_paused = true)]
async fn a_plan_not_confirmed_changes_nothing_and_takes_no_lock() {
    let c = cluster();
    let before = c.world.lock().unwrap().store_doc();
    let nodes_before = c.world.lock().unwrap().nodes.clone();
    let (end, shown) = confirmed(&c, Err("the answer was \"n\", not yes".into())).await;
    assert_eq!(shown, [5], "the whole plan was shown once");
    match end {
        Err(e @ CoordinatorError::Declined(_)) => assert_eq!(
            e.to_string(),
            "the plan was not confirmed (the answer was \"n\", not yes): nothing was changed"
        ),
        other => panic!("{other:?}"),
    }
    let w = c.world.lock().unwrap();
    assert_eq!(w.store_doc(), before, "no lock, no run record");
    assert_eq!(w.nodes, nodes_before, "no node paused or drained");
    assert!(w.log.is_empty(), "no agent acted: {:?}", w.log);
}

/// The cluster changed while the plan was on screen (an operator skipped worker2 meanwhile):
/// the yes is for a course the run would no longer take, so nothing is done.
#[tokio::test(start_paused = true)]
async fn a_plan_the_cluster_changed_under_is_not_run() {
    let c = cluster();
    let before = c.world.lock().unwrap().store_doc();
    let world = c.world.clone();
    let clock = TestClock::new();
    let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
    let settings = Settings::default();
    let end = Coordinator::new(ports, &settings, "manager1/1")
        .with_confirm(Box::new(move |_| {
            let mut w = world.lock().unwrap();
            let n = w.nodes.iter_mut().find(|n| n.hostname == "worker2").unwrap();
            n.labels.insert("swarm-upgrade.skip".into(), "true".into());
            Ok(())
        }))
        .run(&to(NEW), "run-1")
        .await;
    match end {
        Err(CoordinatorError::Declined(why)) => {
            assert!(why.starts_with("the cluster changed while the plan was shown"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.world.lock().unwrap().store_doc(), before, "no lock, no run record");
}

#[tokio::test(start_paused = true)]
async fn a_confirmed_plan_runs_as_shown() {
    let c = cluster();
    let (end, shown) = confirmed(&c, Ok(())).await;
    let rec = end.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert_eq!(shown, [rec.nodes.len()]);
}

/// The five-node snapshot with `db`: one replica pinned to worker2 (`node.hostname==worker2`),
/// running there, its outage accepted by its label when `labelled`.
fn with_pinned_db(labelled: bool) -> swarm_upgrade::model::ClusterSnapshot {
    use swarm_upgrade::model::*;
    let mut snap = fixture();
    snap.services.push(Service {
        id: ServiceId("db-id".into()),
        name: "db".into(),
        mode: Mode::Replicated { replicas: 1 },
        constraints: vec!["node.hostname==worker2".into()],
        max_replicas_per_node: None,
        host_ports: vec![],
        reservations: Resources::default(),
        update_state: None,
        version: 1,
        downtime_accepted: labelled,
    });
    snap.tasks.push(Task {
        id: "db.1".into(),
        service: ServiceId("db-id".into()),
        slot: Some(1),
        node: Some(NodeId("worker2-id".into())),
        state: TaskState::Running,
        desired: TaskState::Running,
        error: None,
    });
    snap
}

fn accepting(names: &[&str]) -> swarm_upgrade::planner::PlanRequest {
    swarm_upgrade::planner::PlanRequest {
        accept_downtime: names.iter().map(ToString::to_string).collect(),
        ..to(NEW)
    }
}

#[test]
fn a_pinned_service_is_refused_until_its_outage_is_accepted_and_the_fix_says_how() {
    use swarm_upgrade::model::plan::RefusalKind;
    use swarm_upgrade::planner::plan;
    let refused = plan(&with_pinned_db(false), &Settings::default(), &to(NEW)).unwrap_err();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].kind, RefusalKind::CannotEvacuate);
    assert_eq!(refused[0].service.as_deref(), Some("db"));
    assert!(
        refused[0].fix.contains(
            "accept its outage while worker2 upgrades (`docker service update --label-add swarm-upgrade.downtime=accept db`, or `--accept-downtime db`)"
        ),
        "{}",
        refused[0].fix
    );
    for (snap, req) in
        [(with_pinned_db(true), to(NEW)), (with_pinned_db(false), accepting(&["db"]))]
    {
        let p = plan(&snap, &Settings::default(), &req).unwrap();
        for n in &p.nodes {
            let down: Vec<&str> = n.downtime.iter().map(|o| o.name.as_str()).collect();
            let want: &[&str] = if n.hostname == "worker2" { &["db"] } else { &[] };
            assert_eq!(down, want, "{}", n.hostname);
        }
        let w2 = p.nodes.iter().find(|n| n.hostname == "worker2").unwrap();
        assert!(w2.surge.iter().all(|s| s.name != "db"), "nothing to surge it onto");
    }
    // A name that is no service is refused, as one reason among the others.
    let r =
        plan(&with_pinned_db(false), &Settings::default(), &accepting(&["db", "dbb"])).unwrap_err();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, RefusalKind::UnknownService);
    assert_eq!(r[0].reason, "--accept-downtime names dbb, which is no service of this swarm");
}

#[test]
fn an_accepted_outage_does_not_hide_a_service_that_could_move() {
    // solo (one replica on worker1) can run elsewhere: accepting its outage changes nothing.
    let p = swarm_upgrade::planner::plan(&fixture(), &Settings::default(), &accepting(&["solo"]))
        .unwrap();
    assert!(p.nodes.iter().all(|n| n.downtime.is_empty()));
    let w1 = p.nodes.iter().find(|n| n.hostname == "worker1").unwrap();
    assert!(w1.surge.iter().any(|s| s.name == "solo"), "{:?}", w1.surge);
}

#[tokio::test(start_paused = true)]
async fn a_run_drains_the_pinned_service_s_node_and_verifies_it_back() {
    use swarm_upgrade::model::{ServiceId, TaskState};
    let c = FakeCluster::new(world_from(&with_pinned_db(true)));
    c.world.lock().unwrap().watch_capacity();
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    // db went down (the accepted outage) and nothing else did.
    assert_eq!(w.capacity_dips(), ["db-id: 0 < 1"]);
    let db = ServiceId("db-id".into());
    let running: Vec<_> = w
        .tasks
        .iter()
        .filter(|t| t.service == db && t.state == TaskState::Running)
        .map(|t| t.node.clone().unwrap().0)
        .collect();
    assert_eq!(running, ["worker2-id"], "db runs again on its node");
    let w2 = rec.nodes.iter().find(|n| n.hostname == "worker2").unwrap();
    assert_eq!(w2.downtime.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["db"]);
    let report = swarm_upgrade::report::RunReport::new(rec.clone(), "docker-ce");
    let outage = report.versions.iter().find_map(|v| v.outage.clone()).unwrap();
    assert_eq!(outage.services, ["db"]);
    let drain = w2.history.iter().find(|s| s.phase == swarm_upgrade::machine::Phase::Drain);
    assert_eq!(Some(outage.from), drain.map(|s| s.start));
    assert!(outage.to.is_some_and(|to| to > outage.from));
    assert!(outage.line().starts_with("accepted outage of db: from the drain at "));
    assert!(report.versions.iter().filter(|v| v.hostname != "worker2").all(|v| v.outage.is_none()));
}

#[tokio::test(start_paused = true)]
async fn each_manager_s_swarm_state_is_archived_before_its_install_and_reported() {
    let c = cluster();
    // Managers first, the first one's dpkg lock busy: its order is sent again three times and
    // finds its archive taken (one archive a run).
    c.world.lock().unwrap().busy_upgrades = 3;
    let settings = Settings {
        backup_managers: true,
        order: swarm_upgrade::config::NodeOrder::ManagersFirst,
        ..Settings::default()
    };
    let rec = run(&c, &settings, &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    // Each manager's backup came with its install order, before it; no worker's did.
    let log: Vec<String> = w
        .log
        .iter()
        .filter(|l| l.starts_with("backup") || l.starts_with("install"))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        log,
        [
            "backup manager2",
            "install manager2",
            "backup manager3",
            "install manager3",
            "backup manager1",
            "install manager1",
            "install worker1",
            "install worker2",
        ]
    );
    let report = swarm_upgrade::report::RunReport::new(rec, "docker-ce");
    for v in &report.versions {
        let want = v.hostname.starts_with("manager").then(|| {
            "/var/lib/swarm-upgrade/swarm-backups/swarm-19700101T000000Z-run-1.tar.gz".to_string()
        });
        assert_eq!(v.swarm_backup, want, "{}", v.hostname);
    }
}

#[tokio::test(start_paused = true)]
async fn with_backup_managers_off_no_archive_is_taken() {
    let c = cluster();
    assert!(Settings::default().backup_managers, "on unless configured off");
    let settings = Settings { backup_managers: false, ..Settings::default() };
    let rec = run(&c, &settings, &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert!(!c.world.lock().unwrap().log.iter().any(|l| l.starts_with("backup")));
    assert!(rec.nodes.iter().all(|n| n.swarm_backup.is_none()));
}

/// The five-node snapshot without `web`, and `db`: two replicas, at most one a node, on the
/// nodes labelled `db=yes` (worker1, worker2, manager2), running on the two workers, its outage
/// accepted by its label.
fn with_two_db_replicas() -> swarm_upgrade::model::ClusterSnapshot {
    use swarm_upgrade::model::*;
    let mut snap = with_pinned_db(true);
    snap.services.retain(|s| s.name != "web");
    snap.tasks.retain(|t| t.service.0 != "web-id");
    let db = snap.services.iter_mut().find(|s| s.name == "db").unwrap();
    db.mode = Mode::Replicated { replicas: 2 };
    db.max_replicas_per_node = Some(1);
    db.constraints = vec!["node.labels.db==yes".into()];
    for n in snap
        .nodes
        .iter_mut()
        .filter(|n| ["worker1", "worker2", "manager2"].contains(&n.hostname.as_str()))
    {
        n.labels.insert("db".into(), "yes".into());
    }
    let mut second = snap.tasks.last().unwrap().clone();
    (second.id, second.slot, second.node) =
        ("db.2".into(), Some(2), Some(NodeId("worker1-id".into())));
    snap.tasks.push(second);
    snap
}

/// Two workers that both run db, whose task on one of them would be stuck (and accepted) were
/// they drained together, never share a batch even with `--parallel 2`: alone, each one's task
/// finds a place, so db never goes down. With installs that take 30 s the run finishes and db is
/// back at two.
#[tokio::test(start_paused = true)]
async fn nodes_running_one_accepted_service_go_in_separate_batches() {
    use swarm_upgrade::model::{ServiceId, TaskState};
    let snap = with_two_db_replicas();
    let req =
        swarm_upgrade::planner::PlanRequest { parallel: Some("2".parse().unwrap()), ..to(NEW) };
    let plan = swarm_upgrade::planner::plan(&snap, &Settings::default(), &req).unwrap();
    let batch_of =
        |host: &str| plan.nodes.iter().find(|n| n.hostname == host).map(|n| n.batch).unwrap();
    assert_ne!(batch_of("worker1"), batch_of("worker2"), "{:?}", plan.batches);
    assert!(
        plan.batches[0]
            .why
            .contains("whose outage on worker1 is accepted: they go in separate batches")
            || plan.batches[0]
                .why
                .contains("whose outage on worker2 is accepted: they go in separate batches"),
        "{}",
        plan.batches[0].why
    );
    let down: Vec<(String, String, u64)> = plan
        .nodes
        .iter()
        .flat_map(|n| n.downtime.iter().map(|o| (n.hostname.clone(), o.name.clone(), o.tasks)))
        .collect();
    // Each alone, its db task finds a place (the other worker, or manager2): no outage at all.
    assert!(down.is_empty(), "{down:?}");
    let mut world = world_from(&snap);
    let slow = common::latency::Latency { install: (30.0, 30.0), ..Default::default() };
    world.timed = Some(common::latency::Timed::new(slow, 7));
    let c = FakeCluster::new(world);
    c.world.lock().unwrap().watch_capacity();
    let rec = run(&c, &Settings::default(), &req, "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let w = c.world.lock().unwrap();
    assert_eq!(w.capacity_dips(), Vec::<String>::new(), "db never went down");
    let db = ServiceId("db-id".into());
    let running =
        w.tasks.iter().filter(|t| t.service == db && t.state == TaskState::Running).count();
    assert_eq!(running, 2);
}
