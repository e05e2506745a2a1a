//! Fleet-sized clusters for the scale benchmark and tests: N nodes (three managers, the rest
//! workers in three zones), 2N services (constraints, max replicas per node, host ports, a few
//! global services), about a dozen tasks per node, placed as the swarm would (every service
//! converged), every node's agent reporting the old engine with the new one available.

use std::collections::{BTreeMap, BTreeSet};

use swarm_upgrade::model::*;

use super::{NEW, OLD, v};

/// The services of a fleet of `nodes` nodes: three global ones, then replicated ones.
pub fn fleet_services(nodes: usize) -> Vec<Service> {
    let mut out = vec![
        service("exporter", Mode::Global, &[], None, None),
        service("logs", Mode::Global, &["node.role==worker"], None, None),
        service("edge", Mode::Global, &["node.labels.zone==a"], None, Some(9100)),
    ];
    for i in 0..2 * nodes - 3 {
        let constraint: &[&str] = match i % 4 {
            0 => &["node.role==worker"],
            1 => {
                &[["node.labels.zone==a", "node.labels.zone==b", "node.labels.zone==c"][i / 4 % 3]]
            }
            _ => &[],
        };
        // One task per node only where a node is left to take each task of a drained one.
        let eligible = match i % 4 {
            0 => nodes - 3,
            1 => nodes / 3,
            _ => nodes,
        };
        let max = (i % 3 == 0 && i % 4 != 1).then_some(1);
        // Host ports only on services that also run one task per node, as such services must.
        let port = (i % 10 == 0 && max.is_some()).then(|| 10_000 + (i % 50_000) as u16);
        let replicas = if max.is_some() { (1 + i % 9).min(eligible - 1) } else { 1 + i % 9 } as u64;
        out.push(service(&format!("svc{i}"), Mode::Replicated { replicas }, constraint, max, port));
    }
    out
}

fn service(
    name: &str,
    mode: Mode,
    constraints: &[&str],
    max: Option<u64>,
    port: Option<u16>,
) -> Service {
    Service {
        id: ServiceId(format!("{name}-id")),
        name: name.to_string(),
        mode,
        constraints: constraints.iter().map(ToString::to_string).collect(),
        max_replicas_per_node: max,
        host_ports: port
            .map(|port| HostPort { port, protocol: "tcp".into() })
            .into_iter()
            .collect(),
        reservations: Resources::default(),
        update_state: None,
        version: 1,
        downtime_accepted: false,
    }
}

/// The nodes of a fleet: `manager1..3` (manager1 leads), then `worker1..` in zones a, b, c.
pub fn fleet_nodes(nodes: usize) -> Vec<Node> {
    (0..nodes)
        .map(|i| {
            let (name, role) = if i < 3 {
                (format!("manager{}", i + 1), Role::Manager)
            } else {
                (format!("worker{}", i - 2), Role::Worker)
            };
            let addr = format!("10.{}.{}.{}", 64 + i / 65_536, i / 256 % 256, i % 256);
            Node {
                id: NodeId(format!("{name}-id")),
                hostname: name,
                role,
                availability: Availability::Active,
                state: NodeState::Ready,
                manager: (role == Role::Manager).then(|| ManagerStatus {
                    leader: i == 0,
                    reachability: Reachability::Reachable,
                    addr: format!("{addr}:2377"),
                }),
                addr,
                engine_version: v(OLD).engine_version(),
                labels: [("zone".to_string(), ["a", "b", "c"][i % 3].to_string())].into(),
                engine_labels: BTreeMap::new(),
                platform: Platform { os: "linux".into(), arch: "x86_64".into() },
                resources: Resources { nano_cpus: 2_000_000_000, memory_bytes: 4 << 30 },
                version: 1,
            }
        })
        .collect()
}

/// A converged fleet of `nodes` nodes (at least 5), with every agent's report.
pub fn fleet(nodes: usize) -> ClusterSnapshot {
    assert!(nodes >= 5, "a fleet has three managers and at least two workers");
    let nodes_list = fleet_nodes(nodes);
    let services = fleet_services(nodes);
    let tasks = place(&nodes_list, &services);
    let agents = nodes_list.iter().map(|n| (n.id.clone(), report(&n.id))).collect();
    ClusterSnapshot {
        taken_at: "2026-11-25T03:00:00Z".parse().unwrap(),
        cluster_id: "fleet".into(),
        nodes: nodes_list,
        services,
        tasks,
        agents,
        autolock: Autolock::Off,
    }
}

/// Running tasks for every service, spread round-robin over the nodes each may use.
fn place(nodes: &[Node], services: &[Service]) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut ports: BTreeSet<(usize, u16)> = BTreeSet::new();
    let mut cursor = 0usize;
    for s in services {
        let eligible: Vec<usize> = (0..nodes.len())
            .filter(|&i| constraint::satisfies_all(&s.constraints, &nodes[i]))
            .collect();
        let task = |slot: Option<u64>, node: &Node| Task {
            id: format!(
                "{}.{}",
                s.name,
                slot.map_or_else(|| node.hostname.clone(), |k| k.to_string())
            ),
            service: s.id.clone(),
            slot,
            node: Some(node.id.clone()),
            state: TaskState::Running,
            desired: TaskState::Running,
            error: None,
        };
        match s.mode {
            Mode::Global => tasks.extend(eligible.iter().map(|&i| task(None, &nodes[i]))),
            Mode::Replicated { replicas } => {
                let mut per: BTreeMap<usize, u64> = BTreeMap::new();
                for slot in 1..=replicas {
                    let fits = |i: &usize| {
                        s.max_replicas_per_node.is_none_or(|m| per.get(i).copied().unwrap_or(0) < m)
                            && s.host_ports.iter().all(|p| !ports.contains(&(*i, p.port)))
                    };
                    let start = cursor % eligible.len();
                    let Some(&at) =
                        eligible[start..].iter().chain(&eligible[..start]).find(|i| fits(i))
                    else {
                        break;
                    };
                    cursor += 1;
                    *per.entry(at).or_default() += 1;
                    ports.extend(s.host_ports.iter().map(|p| (at, p.port)));
                    tasks.push(task(Some(slot), &nodes[at]));
                }
            }
        }
    }
    tasks
}

fn report(id: &NodeId) -> AgentStatus {
    let offered = |old: &str, new: &str| vec![v(old), v(new)];
    AgentStatus::Reachable(Box::new(AgentReport {
        installed: [
            ("docker-ce".to_string(), v(OLD)),
            ("docker-ce-cli".to_string(), v(OLD)),
            ("containerd.io".to_string(), v("1.7.24-1")),
        ]
        .into(),
        available: [
            ("docker-ce".to_string(), offered(OLD, NEW)),
            ("docker-ce-cli".to_string(), offered(OLD, NEW)),
            ("containerd.io".to_string(), offered("1.7.24-1", "2.1.9-1")),
        ]
        .into(),
        disk_free_bytes: 20 << 30,
        engine_active: true,
        local_swarm: Some(LocalSwarm { node_id: id.0.clone(), state: LocalSwarmState::Active }),
        ..Default::default()
    }))
}
