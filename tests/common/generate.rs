//! Random clusters for property tests, placed by the fake scheduler so they start converged.

use std::collections::BTreeMap;

use proptest::prelude::*;
use swarm_upgrade::model::*;

use super::world::{Host, World};
use super::{BROKEN, NEW, OLD, v};

/// The shape of a random service.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub global: bool,
    pub replicas: u64,
    pub max_one: bool,
    pub port: Option<u16>,
    pub constraint: Option<&'static str>,
}

/// The shape of a random cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub managers: usize,
    pub workers: usize,
    pub unreachable: Vec<bool>,
    pub down: Vec<bool>,
    pub services: Vec<ServiceSpec>,
}

fn service() -> impl Strategy<Value = ServiceSpec> {
    (
        prop::bool::weighted(0.2),
        1u64..5,
        any::<bool>(),
        prop::option::weighted(0.3, prop::sample::select(vec![8080u16, 8081])),
        prop::option::weighted(
            0.3,
            prop::sample::select(vec![
                "node.role==worker",
                "node.role==manager",
                "node.labels.zone==a",
            ]),
        ),
    )
        .prop_map(|(global, replicas, max_one, port, constraint)| ServiceSpec {
            global,
            replicas,
            max_one,
            port,
            constraint,
        })
}

/// Any cluster, healthy or not (for the planner's refusals).
pub fn any_cluster() -> impl Strategy<Value = ClusterSpec> {
    (1usize..6, 0usize..4)
        .prop_flat_map(|(m, w)| {
            (
                Just(m),
                Just(w),
                prop::collection::vec(prop::bool::weighted(0.15), m),
                prop::collection::vec(prop::bool::weighted(0.1), m + w),
                prop::collection::vec(service(), 0..4),
            )
        })
        .prop_map(|(managers, workers, unreachable, down, services)| ClusterSpec {
            managers,
            workers,
            unreachable,
            down,
            services,
        })
}

/// A healthy cluster of 3 or 5 managers (for full runs).
pub fn healthy_cluster() -> impl Strategy<Value = ClusterSpec> {
    (prop::sample::select(vec![3usize, 5]), 0usize..3, prop::collection::vec(service(), 0..4))
        .prop_map(|(managers, workers, services)| ClusterSpec {
            managers,
            workers,
            unreachable: vec![false; managers],
            down: vec![false; managers + workers],
            services,
        })
}

/// A healthy cluster of 3 managers and 2 to 5 workers (for runs in batches).
pub fn batch_cluster() -> impl Strategy<Value = ClusterSpec> {
    (2usize..6, prop::collection::vec(service(), 0..5)).prop_map(|(workers, services)| {
        ClusterSpec {
            managers: 3,
            workers,
            unreachable: vec![false; 3],
            down: vec![false; 3 + workers],
            services,
        }
    })
}

fn versions() -> BTreeMap<String, Vec<DebVersion>> {
    let engine = vec![v(OLD), v(NEW), v(BROKEN)];
    BTreeMap::from([
        ("docker-ce".to_string(), engine.clone()),
        ("docker-ce-cli".to_string(), engine),
        ("containerd.io".to_string(), vec![v("1.7.24-1"), v("2.1.9-1")]),
    ])
}

/// Builds the world: nodes, hosts at the old version, services placed by the scheduler.
pub fn build(spec: &ClusterSpec) -> World {
    let mut nodes = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..spec.managers + spec.workers {
        let manager = i < spec.managers;
        let hostname = if manager {
            format!("manager{}", i + 1)
        } else {
            format!("worker{}", i - spec.managers + 1)
        };
        let id = NodeId(format!("{hostname}-id"));
        let addr = format!("10.0.0.{}", i + 10);
        let mut labels = BTreeMap::new();
        if i % 2 == 0 {
            labels.insert("zone".to_string(), "a".to_string());
        }
        nodes.push(Node {
            id: id.clone(),
            hostname: hostname.clone(),
            role: if manager { Role::Manager } else { Role::Worker },
            availability: Availability::Active,
            state: NodeState::Ready,
            addr: addr.clone(),
            manager: manager.then(|| ManagerStatus {
                leader: i == 0,
                reachability: if spec.unreachable[i] {
                    Reachability::Unreachable
                } else {
                    Reachability::Reachable
                },
                addr: format!("{addr}:2377"),
            }),
            engine_version: v(OLD).engine_version(),
            labels,
            engine_labels: BTreeMap::new(),
            platform: Platform { os: "linux".into(), arch: "x86_64".into() },
            resources: Resources { nano_cpus: 2_000_000_000, memory_bytes: 4 << 30 },
            version: 1,
        });
        let installed = PackageSet(BTreeMap::from([
            ("docker-ce".to_string(), v(OLD)),
            ("docker-ce-cli".to_string(), v(OLD)),
            ("containerd.io".to_string(), v("1.7.24-1")),
        ]));
        hosts.push(Host {
            hostname,
            addr,
            installed,
            available: versions(),
            engine_active: true,
            agent_up: true,
            local_id: Some(id),
            down_ticks: 0,
            standalone: Vec::new(),
            swarm_backups: Vec::new(),
            hooks: BTreeMap::new(),
        });
    }
    let services = spec
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| Service {
            id: ServiceId(format!("svc{i}-id")),
            name: format!("svc{i}"),
            mode: if s.global { Mode::Global } else { Mode::Replicated { replicas: s.replicas } },
            constraints: s.constraint.map(|c| vec![c.to_string()]).unwrap_or_default(),
            max_replicas_per_node: s.max_one.then_some(1),
            host_ports: s
                .port
                .map(|p| vec![HostPort { port: p, protocol: "tcp".into() }])
                .unwrap_or_default(),
            reservations: Resources::default(),
            update_state: None,
            version: 1,
            downtime_accepted: false,
        })
        .collect();
    let mut world = super::world_from(&ClusterSnapshot {
        taken_at: jiff::Timestamp::UNIX_EPOCH,
        cluster_id: "gen".into(),
        nodes,
        services,
        tasks: Vec::new(),
        agents: BTreeMap::new(),
        autolock: Autolock::Off,
    });
    for (h, host) in world.hosts.iter_mut().zip(hosts) {
        *h = host;
    }
    world.settle(3);
    for (n, down) in world.nodes.iter_mut().zip(&spec.down) {
        if *down {
            n.state = NodeState::Down;
        }
    }
    world
}

/// The snapshot a coordinator would observe, with every host's agent report.
pub fn observed(world: &World) -> ClusterSnapshot {
    let mut snap = world.snapshot(jiff::Timestamp::UNIX_EPOCH);
    for h in &world.hosts {
        let Some(id) = &h.local_id else { continue };
        snap.agents.insert(
            id.clone(),
            AgentStatus::Reachable(Box::new(AgentReport {
                installed: h.installed.0.clone(),
                available: h.available.clone(),
                repository_error: None,
                disk_free_bytes: 20 << 30,
                engine_active: h.engine_active,
                local_swarm: Some(LocalSwarm {
                    node_id: id.0.clone(),
                    state: LocalSwarmState::Active,
                }),
                dpkg_interrupted: None,
                engine_config: None,
                standalone: h.standalone.clone(),
                swarm_backups: Vec::new(),
                hooks: Vec::new(),
                backup_room: None,
            })),
        );
    }
    snap
}
