//! Bollard's models (all `Option`, generated) into this project's own types. Nothing past this
//! file sees a bollard type.

use std::collections::BTreeMap;

use bollard::models as b;

use crate::model::{
    Autolock, Availability, ClusterSnapshot, DOWNTIME_ACCEPT, DOWNTIME_LABEL, EngineVersion,
    HostPort, ManagerStatus, Mode, Node, NodeId, NodeState, Platform, Reachability, Resources,
    Role, Service, ServiceId, Task, TaskState, UpdateState,
};

fn map<K: Ord + Clone, V: Clone>(m: Option<&std::collections::HashMap<K, V>>) -> BTreeMap<K, V> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

fn resources(r: Option<&b::ResourceObject>) -> Resources {
    r.map(|r| Resources {
        nano_cpus: r.nano_cpus.unwrap_or(0),
        memory_bytes: r.memory_bytes.unwrap_or(0),
    })
    .unwrap_or_default()
}

/// An object's version index (0 when the engine sent none: a write at 0 is refused).
fn version(v: Option<&b::ObjectVersion>) -> u64 {
    v.and_then(|v| v.index).unwrap_or(0)
}

/// A node, or `None` when the engine sent one without an ID.
pub fn node(n: &b::Node) -> Option<Node> {
    let spec = n.spec.as_ref();
    let desc = n.description.as_ref();
    let status = n.status.as_ref();
    let role = match spec.and_then(|s| s.role) {
        Some(b::NodeSpecRoleEnum::MANAGER) => Role::Manager,
        _ => Role::Worker,
    };
    let manager = n.manager_status.as_ref().map(|m| ManagerStatus {
        leader: m.leader.unwrap_or(false),
        reachability: match m.reachability {
            Some(b::Reachability::REACHABLE) => Reachability::Reachable,
            Some(b::Reachability::UNREACHABLE) => Reachability::Unreachable,
            _ => Reachability::Unknown,
        },
        addr: m.addr.clone().unwrap_or_default(),
    });
    Some(Node {
        id: NodeId(n.id.clone()?),
        hostname: desc.and_then(|d| d.hostname.clone()).unwrap_or_default(),
        role,
        availability: match spec.and_then(|s| s.availability) {
            Some(b::NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
            Some(b::NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
            _ => Availability::Active,
        },
        state: match status.and_then(|s| s.state) {
            Some(b::NodeState::READY) => NodeState::Ready,
            Some(b::NodeState::DOWN) => NodeState::Down,
            Some(b::NodeState::DISCONNECTED) => NodeState::Disconnected,
            _ => NodeState::Unknown,
        },
        addr: status.and_then(|s| s.addr.clone()).unwrap_or_default(),
        manager: (role == Role::Manager).then(|| {
            manager.unwrap_or(ManagerStatus {
                leader: false,
                reachability: Reachability::Unknown,
                addr: String::new(),
            })
        }),
        engine_version: EngineVersion::parse_lenient(
            desc.and_then(|d| d.engine.as_ref()?.engine_version.as_deref()).unwrap_or(""),
        ),
        labels: map(spec.and_then(|s| s.labels.as_ref())),
        engine_labels: map(desc.and_then(|d| d.engine.as_ref()?.labels.as_ref())),
        platform: Platform {
            os: desc.and_then(|d| d.platform.as_ref()?.os.clone()).unwrap_or_default(),
            arch: desc.and_then(|d| d.platform.as_ref()?.architecture.clone()).unwrap_or_default(),
        },
        resources: resources(desc.and_then(|d| d.resources.as_ref())),
        version: version(n.version.as_ref()),
    })
}

/// A long-running service, or `None` for jobs (their tasks are meant to complete) and
/// malformed entries.
pub fn service(s: &b::Service) -> Option<Service> {
    let spec = s.spec.as_ref()?;
    let mode = spec.mode.as_ref();
    let mode = match mode {
        Some(m) if m.global.is_some() => Mode::Global,
        Some(m) if m.replicated_job.is_some() || m.global_job.is_some() => return None,
        Some(m) => Mode::Replicated {
            replicas: m.replicated.as_ref().and_then(|r| r.replicas).unwrap_or(1).max(0) as u64,
        },
        None => Mode::Replicated { replicas: 1 },
    };
    let template = spec.task_template.as_ref();
    let placement = template.and_then(|t| t.placement.as_ref());
    let host_ports = spec
        .endpoint_spec
        .as_ref()
        .and_then(|e| e.ports.as_ref())
        .into_iter()
        .flatten()
        .filter(|p| p.publish_mode == Some(b::EndpointPortConfigPublishModeEnum::HOST))
        .filter_map(|p| {
            Some(HostPort {
                port: u16::try_from(p.published_port?).ok()?,
                protocol: match p.protocol {
                    Some(b::EndpointPortConfigProtocolEnum::UDP) => "udp".into(),
                    Some(b::EndpointPortConfigProtocolEnum::SCTP) => "sctp".into(),
                    _ => "tcp".into(),
                },
            })
        })
        .collect();
    Some(Service {
        id: ServiceId(s.id.clone()?),
        name: spec.name.clone().unwrap_or_default(),
        mode,
        constraints: placement.and_then(|p| p.constraints.clone()).unwrap_or_default(),
        max_replicas_per_node: placement
            .and_then(|p| p.max_replicas)
            .filter(|m| *m > 0)
            .map(|m| m as u64),
        host_ports,
        reservations: resources(template.and_then(|t| t.resources.as_ref()?.reservations.as_ref())),
        update_state: s.update_status.as_ref().and_then(|u| match u.state? {
            b::ServiceUpdateStatusStateEnum::UPDATING => Some(UpdateState::Updating),
            b::ServiceUpdateStatusStateEnum::PAUSED => Some(UpdateState::Paused),
            b::ServiceUpdateStatusStateEnum::COMPLETED => Some(UpdateState::Completed),
            b::ServiceUpdateStatusStateEnum::ROLLBACK_STARTED => Some(UpdateState::RollbackStarted),
            b::ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => Some(UpdateState::RollbackPaused),
            b::ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => {
                Some(UpdateState::RollbackCompleted)
            }
            b::ServiceUpdateStatusStateEnum::EMPTY => None,
        }),
        version: version(s.version.as_ref()),
        downtime_accepted: spec
            .labels
            .as_ref()
            .and_then(|l| l.get(DOWNTIME_LABEL))
            .is_some_and(|v| v == DOWNTIME_ACCEPT),
    })
}

fn task_state(s: Option<b::TaskState>) -> TaskState {
    match s {
        Some(b::TaskState::NEW) | None => TaskState::New,
        Some(b::TaskState::ALLOCATED | b::TaskState::PENDING) => TaskState::Pending,
        Some(b::TaskState::ASSIGNED) => TaskState::Assigned,
        Some(b::TaskState::ACCEPTED) => TaskState::Accepted,
        Some(b::TaskState::PREPARING) => TaskState::Preparing,
        Some(b::TaskState::READY) => TaskState::Ready,
        Some(b::TaskState::STARTING) => TaskState::Starting,
        Some(b::TaskState::RUNNING) => TaskState::Running,
        Some(b::TaskState::COMPLETE) => TaskState::Complete,
        Some(b::TaskState::SHUTDOWN) => TaskState::Shutdown,
        Some(b::TaskState::FAILED) => TaskState::Failed,
        Some(b::TaskState::REJECTED) => TaskState::Rejected,
        Some(b::TaskState::REMOVE) => TaskState::Remove,
        Some(b::TaskState::ORPHANED) => TaskState::Orphaned,
    }
}

/// A task.
pub fn task(t: &b::Task) -> Option<Task> {
    Some(Task {
        id: t.id.clone()?,
        service: ServiceId(t.service_id.clone()?),
        slot: t.slot.filter(|s| *s > 0).map(|s| s as u64),
        node: t.node_id.clone().filter(|n| !n.is_empty()).map(NodeId),
        state: task_state(t.status.as_ref().and_then(|s| s.state)),
        desired: task_state(t.desired_state),
        error: t.status.as_ref().and_then(|s| s.err.clone()).filter(|e| !e.is_empty()),
    })
}

/// A partial cluster as read with filters (see [`crate::model::ClusterSnapshot::scoped`]):
/// every task kept, whatever its service; no cluster ID or autolock (not read).
pub fn parts(
    nodes: &[b::Node],
    services: &[b::Service],
    tasks: &[b::Task],
    now: jiff::Timestamp,
) -> ClusterSnapshot {
    ClusterSnapshot {
        taken_at: now,
        cluster_id: String::new(),
        nodes: nodes.iter().filter_map(node).collect(),
        services: services.iter().filter_map(service).collect(),
        tasks: tasks.iter().filter_map(task).collect(),
        agents: BTreeMap::new(),
        autolock: Autolock::Off,
    }
}

/// The whole snapshot (agent reports are added by the coordinator). Tasks of services that are
/// not kept (jobs) are left out too.
pub fn snapshot(
    swarm: &b::Swarm,
    nodes: &[b::Node],
    services: &[b::Service],
    tasks: &[b::Task],
    now: jiff::Timestamp,
) -> ClusterSnapshot {
    let mut snap = parts(nodes, services, tasks, now);
    let kept: std::collections::HashSet<&crate::model::ServiceId> =
        snap.services.iter().map(|s| &s.id).collect();
    let tasks = std::mem::take(&mut snap.tasks);
    snap.tasks = tasks.into_iter().filter(|t| kept.contains(&t.service)).collect();
    snap.cluster_id = swarm.id.clone().unwrap_or_default();
    // Whether we hold the key is the coordinator's to say.
    let autolocked = swarm
        .spec
        .as_ref()
        .and_then(|s| s.encryption_config.as_ref()?.auto_lock_managers)
        .unwrap_or(false);
    snap.autolock = if autolocked { Autolock::NoKey } else { Autolock::Off };
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{}/tests/fixtures/docker/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Captured from a real dockerd 20.10.24 in a one-node swarm (tests/fixtures/docker, join
    /// tokens redacted): a manager, a replicated service with a host-mode port, a constraint and
    /// a CPU reservation, and a global service.
    #[test]
    fn converts_what_a_real_engine_reports() {
        let swarm: b::Swarm = fixture("swarm");
        let snap = snapshot(
            &swarm,
            &fixture::<Vec<b::Node>>("nodes"),
            &fixture::<Vec<b::Service>>("services"),
            &fixture::<Vec<b::Task>>("tasks"),
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(snap.cluster_id, "qhrx2xdvnzr6u2wrqo4nat5zr");
        let n = &snap.nodes[0];
        assert_eq!(
            (n.role, n.availability, n.state),
            (Role::Manager, Availability::Active, NodeState::Ready)
        );
        assert_eq!(
            n.manager,
            Some(ManagerStatus {
                leader: true,
                reachability: Reachability::Reachable,
                addr: "127.0.0.1:2377".into()
            })
        );
        assert_eq!(n.engine_version.to_string(), "20.10.24");
        assert_eq!(n.addr, "127.0.0.1");
        assert!(n.resources.nano_cpus > 0 && n.resources.memory_bytes > 0);
        let solo = snap.services.iter().find(|s| s.name == "solo").unwrap();
        assert_eq!(solo.mode, Mode::Replicated { replicas: 1 });
        assert_eq!(solo.constraints, ["node.role==manager"]);
        assert_eq!(solo.host_ports, [HostPort { port: 8081, protocol: "tcp".into() }]);
        assert_eq!(solo.reservations.nano_cpus, 100_000_000);
        let glob = snap.services.iter().find(|s| s.name == "glob").unwrap();
        assert_eq!(glob.mode, Mode::Global);
        assert_eq!(snap.tasks.len(), 2);
        let t = snap.tasks.iter().find(|t| t.service == solo.id).unwrap();
        assert_eq!((t.slot, t.state, t.desired), (Some(1), TaskState::Running, TaskState::Running));
        assert!(
            snap.tasks.iter().any(|t| t.service == glob.id
                && t.slot.is_none()
                && t.node.as_ref() == Some(&n.id))
        );
        assert_eq!(crate::model::convergence::first_unconverged(&snap), None);
    }
}
