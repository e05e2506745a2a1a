use super::*;
use crate::config::{LabelMatch, NodeOrder, TargetSetting};
use crate::model::{
    AgentStatus, Availability, Mode, NodeState, Reachability, Resources, TaskState,
};

const NEW: &str = "5:28.5.2-1~debian.13~trixie";

fn fixture() -> ClusterSnapshot {
    serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap()
}

fn to(v: &str) -> PlanRequest {
    PlanRequest { to: Some(v.parse().unwrap()), ..Default::default() }
}

fn refusals(snap: &ClusterSnapshot, settings: &Settings, req: &PlanRequest) -> Vec<Refusal> {
    plan(snap, settings, req).expect_err("plan should be refused")
}

fn host_mut<'a>(snap: &'a mut ClusterSnapshot, host: &str) -> &'a mut crate::model::Node {
    snap.nodes.iter_mut().find(|n| n.hostname == host).unwrap()
}

fn hosts(p: &Plan) -> Vec<&str> {
    p.nodes.iter().map(|n| n.hostname.as_str()).collect()
}

#[test]
fn workers_first_then_managers_leader_last() {
    let p = plan(&fixture(), &Settings::default(), &to(NEW)).unwrap();
    assert_eq!(hosts(&p), ["worker1", "worker2", "manager2", "manager3", "manager1"]);
    assert!(p.nodes[4].leader);
    assert_eq!(
        p.nodes[0].packages.get("containerd.io").unwrap().to_string(),
        "2.1.9-1",
        "companions take the newest offered"
    );
    let s = Settings { order: NodeOrder::ManagersFirst, ..Settings::default() };
    let p = plan(&fixture(), &s, &to(NEW)).unwrap();
    assert_eq!(hosts(&p), ["manager2", "manager3", "manager1", "worker1", "worker2"]);
}

#[test]
fn surge_adds_one_replica_per_task_on_the_node_and_can_be_turned_off() {
    let p = plan(&fixture(), &Settings::default(), &to(NEW)).unwrap();
    let w1 = &p.nodes[0];
    let surge: Vec<_> = w1.surge.iter().map(|s| (s.name.as_str(), s.from, s.to)).collect();
    assert_eq!(surge, [("solo", 1, 2), ("web", 4, 5)]);
    assert_eq!(w1.global_stops, ["agentcheck"]);
    let s = Settings { surge: false, ..Settings::default() };
    assert!(plan(&fixture(), &s, &to(NEW)).unwrap().nodes.iter().all(|n| n.surge.is_empty()));
}

#[test]
fn node_not_ready_and_unreachable_manager_are_named() {
    let mut snap = fixture();
    host_mut(&mut snap, "worker2").state = NodeState::Down;
    host_mut(&mut snap, "manager3").manager.as_mut().unwrap().reachability =
        Reachability::Unreachable;
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r.iter()
            .any(|r| r.node.as_deref() == Some("worker2") && r.reason.contains("down, not Ready")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|r| r.node.as_deref() == Some("manager3") && r.reason.contains("unreachable")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|r| r.reason.contains("lose the Raft quorum")),
        "3 managers with one unreachable: {r:?}"
    );
}

#[test]
fn two_managers_cannot_lose_one() {
    let mut snap = fixture();
    snap.nodes.retain(|n| n.hostname != "manager3");
    snap.tasks.retain(|t| t.node.as_ref().is_none_or(|n| n.0 != "manager3-id"));
    if let Some(web) = snap.services.iter_mut().find(|s| s.name == "web") {
        web.mode = Mode::Replicated { replicas: 3 };
    }
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(r.iter().any(|r| r.reason.contains("(2 managers, 2 needed)")), "{r:?}");
}

#[test]
fn single_manager_needs_explicit_opt_in() {
    let mut snap = fixture();
    snap.nodes.retain(|n| !["manager2", "manager3"].contains(&n.hostname.as_str()));
    snap.tasks
        .retain(|t| t.node.as_ref().is_none_or(|n| n.0 != "manager2-id" && n.0 != "manager3-id"));
    snap.services.retain(|s| s.name != "web");
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r.iter().any(
            |r| r.reason.contains("single manager") && r.fix.contains("--allow-single-manager")
        ),
        "{r:?}"
    );
    let req = PlanRequest { allow_single_manager: true, ..to(NEW) };
    assert!(plan(&snap, &Settings::default(), &req).is_ok());
}

#[test]
fn tasks_that_fit_nowhere_else_refuse_with_every_nodes_reason() {
    let mut snap = fixture();
    let web = snap.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.mode = Mode::Replicated { replicas: 5 };
    snap.tasks.push(crate::model::Task {
        id: "web.5".into(),
        service: web.id.clone(),
        slot: Some(5),
        node: Some(crate::model::NodeId("manager1-id".into())),
        state: TaskState::Running,
        desired: TaskState::Running,
        error: None,
    });
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    let first = &r[0];
    assert_eq!((first.node.as_deref(), first.service.as_deref()), (Some("worker1"), Some("web")));
    assert!(
        first.reason.contains("manager1: already runs 1 (max replicas per node)"),
        "{}",
        first.reason
    );
}

#[test]
fn host_port_constraint_and_reservation_clashes_refuse() {
    // solo pinned to worker1 by a constraint.
    let mut snap = fixture();
    snap.services.iter_mut().find(|s| s.name == "solo").unwrap().constraints =
        vec!["node.hostname==worker1".into()];
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r.iter().any(|r| r.service.as_deref() == Some("solo") && r.reason.contains("constraints")),
        "{r:?}"
    );

    // solo publishes web's host port: wherever web runs, it cannot.
    let mut snap = fixture();
    snap.services.iter_mut().find(|s| s.name == "solo").unwrap().host_ports[0].port = 8080;
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(r.iter().any(|r| r.reason.contains("host port 8080/tcp already taken")), "{r:?}");

    // solo reserves more CPU than any other node has.
    let mut snap = fixture();
    snap.services.iter_mut().find(|s| s.name == "solo").unwrap().reservations =
        Resources { nano_cpus: 2_000_000_000, memory_bytes: 0 };
    host_mut(&mut snap, "worker1").resources.nano_cpus = 4_000_000_000;
    for n in snap.nodes.iter_mut().filter(|n| n.hostname != "worker1") {
        n.resources.nano_cpus = 1_000_000_000;
    }
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(r.iter().any(|r| r.reason.contains("not enough CPU")), "{r:?}");
}

#[test]
fn drained_or_paused_nodes_take_no_tasks_and_keep_their_availability() {
    let mut snap = fixture();
    host_mut(&mut snap, "manager1").availability = Availability::Drain;
    snap.tasks.retain(|t| t.node.as_ref().is_none_or(|n| n.0 != "manager1-id"));
    // web runs on the other four; with manager1 drained nobody can take worker1's web task.
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(r.iter().any(|r| r.reason.contains("manager1: availability drain")), "{r:?}");
    let web = snap.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.max_replicas_per_node = None;
    web.host_ports.clear();
    let p = plan(&snap, &Settings::default(), &to(NEW)).unwrap();
    assert_eq!(
        p.nodes.iter().find(|n| n.hostname == "manager1").unwrap().availability,
        Availability::Drain
    );
}

#[test]
fn downgrade_needs_its_flag_and_skew_is_bounded() {
    let r = refusals(&fixture(), &Settings::default(), &to("5:26.1.4-1~debian.13~trixie"));
    assert!(
        r.iter()
            .any(|r| r.reason.contains("below docker-ce") && r.fix.contains("--allow-downgrade")),
        "{r:?}"
    );
    let mut snap = fixture();
    for a in snap.agents.values_mut() {
        if let AgentStatus::Reachable(r) = a {
            for p in ["docker-ce", "docker-ce-cli"] {
                r.available
                    .get_mut(p)
                    .unwrap()
                    .push("5:26.1.4-1~debian.13~trixie".parse().unwrap());
            }
        }
    }
    let req = PlanRequest { allow_downgrade: true, ..to("5:26.1.4-1~debian.13~trixie") };
    assert!(plan(&snap, &Settings::default(), &req).is_ok());

    let mut snap = fixture();
    host_mut(&mut snap, "worker2").engine_version =
        crate::model::EngineVersion::parse_lenient("20.10.24");
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r.iter()
            .any(|r| r.node.as_deref() == Some("worker2")
                && r.reason.contains("8 major versions apart")),
        "{r:?}"
    );
}

#[test]
fn agent_repository_version_and_disk_problems_name_the_node() {
    let mut snap = fixture();
    let id = |h: &str| crate::model::NodeId(format!("{h}-id"));
    snap.agents
        .insert(id("worker2"), AgentStatus::Unreachable { error: "connection refused".into() });
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id("manager2")) {
        r.repository_error = Some("NO_PUBKEY 7EA0A9C3F273FCD8".into());
    }
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id("manager3")) {
        r.disk_free_bytes = 100 << 20;
    }
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id("worker1")) {
        r.dpkg_interrupted = Some("docker-ce (iF )".into());
    }
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r.iter().any(|r| r.node.as_deref() == Some("worker1")
            && r.reason.contains("interrupted")
            && r.fix.contains("dpkg --configure -a")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|r| r.node.as_deref() == Some("worker2")
            && r.reason.contains("agent on worker2 is unreachable")),
        "{r:?}"
    );
    assert!(
        r.iter().any(|r| r.node.as_deref() == Some("manager2") && r.reason.contains("NO_PUBKEY")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|r| r.node.as_deref() == Some("manager3") && r.reason.contains("100 MiB free")),
        "{r:?}"
    );

    let kinds: Vec<(Option<&str>, RefusalKind)> =
        r.iter().map(|r| (r.node.as_deref(), r.kind)).collect();
    for want in [
        (Some("worker1"), RefusalKind::DpkgInterrupted),
        (Some("worker2"), RefusalKind::AgentUnreachable),
        (Some("manager2"), RefusalKind::RepositoryBroken),
        (Some("manager3"), RefusalKind::DiskLow),
    ] {
        assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
    }

    let r = refusals(&fixture(), &Settings::default(), &to("5:29.0.0-1~debian.13~trixie"));
    assert!(
        r.iter().any(|r| r
            .reason
            .contains("docker-ce 5:29.0.0-1~debian.13~trixie, docker-ce-cli 5:29.0.0-1~debian.13~trixie are not in the repository on worker1")),
        "{r:?}"
    );
    let missing = r.iter().filter(|r| r.kind == RefusalKind::VersionUnavailable).count();
    let skew = r.iter().filter(|r| r.kind == RefusalKind::MajorSkew).count();
    assert_eq!((missing, skew, r.len()), (5, 5, 10), "one per node, 3 majors apart");
}

#[test]
fn a_manager_whose_swarm_state_would_not_fit_twice_is_refused_only_with_backups() {
    use crate::model::swarm_backup::BackupRoom;
    let mut snap = fixture();
    let room = |free| BackupRoom {
        swarm_bytes: 300 << 20,
        free_bytes: free,
        dir: "/var/lib/swarm-upgrade/swarm-backups".into(),
    };
    for (host, free) in [("manager2", 500 << 20), ("manager3", 600 << 20), ("worker1", 1)] {
        let id = crate::model::NodeId(format!("{host}-id"));
        let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) else { panic!("{host}") };
        r.backup_room = Some(room(free));
    }
    let settings = Settings::default();
    assert!(settings.backup_managers);
    let r: Vec<Refusal> = refusals(&snap, &settings, &to(NEW))
        .into_iter()
        .filter(|r| r.kind == RefusalKind::BackupNoRoom)
        .collect();
    assert_eq!(r.len(), 1, "manager3's fits twice, a worker keeps none: {r:?}");
    assert_eq!(r[0].node.as_deref(), Some("manager2"));
    assert_eq!(
        r[0].reason,
        "manager2's swarm state (300 MiB) would not fit twice in the 500 MiB free under /var/lib/swarm-upgrade/swarm-backups, where its archive goes"
    );
    assert!(r[0].fix.contains("upgrade.backup_managers = false"), "{r:?}");
    let off = Settings { backup_managers: false, ..Settings::default() };
    let others = plan(&snap, &off, &to(NEW)).err().unwrap_or_default();
    assert!(others.iter().all(|r| r.kind != RefusalKind::BackupNoRoom), "{others:?}");
}

fn with_live_restore(snap: &mut ClusterSnapshot, host: &str) {
    let id = crate::model::NodeId(format!("{host}-id"));
    let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) else { panic!("{host}") };
    r.engine_config = Some(crate::model::EngineConfigProblem {
        file: "/etc/docker/daemon.json".into(),
        keys: vec!["live-restore".into()],
        detail: "\"live-restore\": true is not supported in swarm mode".into(),
    });
}

#[test]
fn an_engine_configuration_dockerd_would_refuse_is_refused_by_plan_and_guard() {
    let mut snap = fixture();
    with_live_restore(&mut snap, "worker1");
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].kind, r[0].node.as_deref()), (RefusalKind::EngineConfig, Some("worker1")));
    assert!(
        r[0].reason.contains("dockerd on worker1 would not start with /etc/docker/daemon.json")
    );
    assert_eq!(r[0].fix, "remove \"live-restore\" from /etc/docker/daemon.json on worker1");
    assert_eq!(serde_json::to_value(&r[0]).unwrap()["kind"], "engine-config");

    // Written after the plan was accepted: the guard before that node refuses it too, and only it.
    let p = plan(&fixture(), &Settings::default(), &to(NEW)).unwrap();
    let flags = RunFlags::default();
    let guard_at = |h: &str| {
        let n = p.nodes.iter().find(|n| n.hostname == h).unwrap();
        guard(&snap, &Settings::default(), &flags, &[(n.node.clone(), &n.packages)])
    };
    let refused = guard_at("worker1").expect_err("the guard refuses worker1");
    assert_eq!(refused.iter().map(|r| r.kind).collect::<Vec<_>>(), [RefusalKind::EngineConfig]);
    assert!(guard_at("worker2").is_ok());

    // Without a key (dockerd's own words), the fix names the file and how to check it.
    let id = crate::model::NodeId("worker1-id".into());
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) {
        r.engine_config = Some(crate::model::EngineConfigProblem {
            file: "/etc/docker/daemon.json".into(),
            keys: vec![],
            detail: "dockerd --validate: unable to configure the Docker daemon with file /etc/docker/daemon.json: invalid logging level: nope".into(),
        });
    }
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(r[0].reason.ends_with("invalid logging level: nope"), "{r:?}");
    assert!(
        r[0].fix.starts_with("correct /etc/docker/daemon.json on worker1 (`dockerd --validate")
    );

    // A drop-in's flag dockerd refuses: the unit is named, and where its drop-ins are.
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) {
        r.engine_config = Some(crate::model::EngineConfigProblem {
            file: "docker.service".into(),
            keys: vec![],
            detail: "dockerd --validate with its unit's ExecStart flags (-H fd:// --no-such-flag): unknown flag: --no-such-flag".into(),
        });
    }
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r[0].reason.starts_with("dockerd on worker1 would not start with docker.service"),
        "{r:?}"
    );
    assert!(r[0].fix.contains("`systemctl cat docker.service`"), "{r:?}");

    // The package's own unit edited in place: the upgrade would replace it.
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) {
        r.engine_config = Some(crate::model::EngineConfigProblem {
            file: "/usr/lib/systemd/system/docker.service".into(),
            keys: vec![],
            detail: "edited since the package installed it: the upgrade replaces it with the new package's unit, and the edits would be lost at the engine's restart".into(),
        });
    }
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r[0].fix.starts_with(
            "move the edits of /usr/lib/systemd/system/docker.service on worker1 into a drop-in"
        ),
        "{r:?}"
    );
}

#[test]
fn refusal_kinds_are_written_in_kebab_case() {
    let r = &refusals(&fixture(), &Settings::default(), &to("5:29.0.0-1~debian.13~trixie"))[0];
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["kind"], "version-unavailable", "{json}");
}

#[test]
fn unsettled_services_refuse() {
    let mut snap = fixture();
    snap.services[0].update_state = Some(crate::model::UpdateState::Paused);
    snap.tasks.iter_mut().find(|t| t.id == "solo.1").unwrap().state = TaskState::Starting;
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(
        r.iter().any(|r| r.service.as_deref() == Some("web") && r.reason.contains("paused")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|r| r.service.as_deref() == Some("solo")
                && r.reason.contains("0/1 replicas running")),
        "{r:?}"
    );
}

#[test]
fn labels_and_nodes_at_target_are_skipped() {
    let mut snap = fixture();
    host_mut(&mut snap, "worker2").labels.insert("swarm-upgrade.skip".into(), "true".into());
    if let Some(AgentStatus::Reachable(r)) =
        snap.agents.get_mut(&crate::model::NodeId("manager2-id".into()))
    {
        r.installed.insert("docker-ce".into(), NEW.parse().unwrap());
    }
    let p = plan(&snap, &Settings::default(), &to(NEW)).unwrap();
    assert_eq!(hosts(&p), ["worker1", "manager3", "manager1"]);
    let skipped: Vec<_> =
        p.skipped.iter().map(|s| (s.hostname.as_str(), s.reason.as_str())).collect();
    assert!(skipped.contains(&("worker2", "labelled swarm-upgrade.skip=true")), "{skipped:?}");
    assert!(
        skipped.contains(&("manager2", "already at 5:28.5.2-1~debian.13~trixie")),
        "{skipped:?}"
    );

    let s = Settings {
        include_label: Some(LabelMatch { key: "upgrade".into(), value: None }),
        ..Settings::default()
    };
    let mut snap = fixture();
    host_mut(&mut snap, "worker1").labels.insert("upgrade".into(), "yes".into());
    assert_eq!(hosts(&plan(&snap, &s, &to(NEW)).unwrap()), ["worker1"]);
}

#[test]
fn target_policies_resolve_from_what_every_repository_offers() {
    let req = PlanRequest::default();
    let r = refusals(&fixture(), &Settings::default(), &req);
    assert!(r[0].reason.contains("no target version") && r[0].fix.contains("--to"), "{r:?}");
    let latest = Settings { target: TargetSetting::Latest, ..Settings::default() };
    assert_eq!(
        plan(&fixture(), &latest, &req).unwrap().target.to_string(),
        "28.5.3",
        "policies resolve to an engine version"
    );
    let patch = Settings { target: TargetSetting::LatestPatch, ..Settings::default() };
    let p = plan(&fixture(), &patch, &req).unwrap();
    assert!(p.nodes.is_empty(), "nothing newer in 26.1: every node is at target");
    let mut snap = fixture();
    for a in snap.agents.values_mut() {
        if let AgentStatus::Reachable(r) = a {
            r.available.get_mut("docker-ce").unwrap().retain(|v| v.engine_version().major() == 28);
        }
    }
    let r = refusals(&snap, &patch, &req);
    assert!(r[0].reason.contains("no engine 26.1.x of docker-ce"), "{r:?}");
    let mut snap = fixture();
    for a in snap.agents.values_mut() {
        if let AgentStatus::Reachable(r) = a {
            for p in ["docker-ce", "docker-ce-cli"] {
                r.available
                    .get_mut(p)
                    .unwrap()
                    .push("5:26.1.9-1~debian.13~trixie".parse().unwrap());
            }
        }
    }
    assert_eq!(plan(&snap, &patch, &req).unwrap().target.to_string(), "26.1.9");
    let exact =
        Settings { target: TargetSetting::Exact(NEW.parse().unwrap()), ..Settings::default() };
    assert_eq!(plan(&fixture(), &exact, &req).unwrap().target.to_string(), NEW);
}

#[test]
fn an_operators_stop_label_refuses_and_false_does_not_count() {
    let mut snap = fixture();
    host_mut(&mut snap, "manager3").labels.insert(STOP_LABEL.into(), "false".into());
    assert!(
        plan(&snap, &Settings::default(), &to(NEW)).is_ok(),
        "swarm-upgrade.stop=false is no stop"
    );
    host_mut(&mut snap, "manager3").labels.insert(STOP_LABEL.into(), "true".into());
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].node.as_deref(), Some("manager3"));
    assert!(
        r[0].reason.contains("an operator stopped upgrades")
            && r[0].fix.contains("--label-rm swarm-upgrade.stop manager3"),
        "{}",
        r[0]
    );
}

/// A node an earlier run left drained (its restore label) goes first, even at the target, and is
/// planned back to what it was; the others' evacuations count on it being back.
#[test]
fn a_node_owed_its_availability_goes_first_and_is_given_it_back() {
    let mut snap = fixture();
    let worker2 = host_mut(&mut snap, "worker2");
    worker2.availability = Availability::Drain;
    worker2.labels.insert(crate::model::RESTORE_LABEL.into(), "active".into());
    let id = worker2.id.clone();
    // Drained: its tasks run elsewhere, each on a node that had none of its service.
    let others: Vec<_> = snap.nodes.iter().filter(|n| n.id != id).map(|n| n.id.clone()).collect();
    for i in 0..snap.tasks.len() {
        if snap.tasks[i].node.as_ref() == Some(&id) {
            let service = snap.tasks[i].service.clone();
            let free = others.iter().find(|n| {
                !snap.tasks.iter().any(|t| t.service == service && t.node.as_ref() == Some(n))
            });
            snap.tasks[i].node = free.cloned();
        }
    }
    if let Some(AgentStatus::Reachable(r)) = snap.agents.get_mut(&id) {
        r.installed.insert("docker-ce".into(), NEW.parse().unwrap());
    }
    let p = plan(&snap, &Settings::default(), &to(NEW)).unwrap();
    assert_eq!(hosts(&p)[0], "worker2", "{:?}", hosts(&p));
    assert_eq!(p.nodes[0].availability, Availability::Active);
    // Without the label it is an operator's drain: at the target, it is left alone.
    host_mut(&mut snap, "worker2").labels.clear();
    let r = refusals(&snap, &Settings::default(), &to(NEW));
    assert!(r.iter().any(|r| r.reason.contains("worker2: availability drain")), "{r:?}");
}
