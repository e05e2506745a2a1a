//! The ordered search for a destination finds what a scan of every node finds.

use proptest::prelude::*;

use super::*;
use crate::model::testing::node;
use crate::model::{ClusterSnapshot, HostPort, Role, Service, ServiceId, Task};

/// The definition [`Load::best`] must meet: the minimum of (tasks of the service, tasks, host
/// name) over every other node that can take the task, the first such node on ties.
fn best_by_scan(ix: &Index, load: &Load, s: usize, from: usize) -> Option<usize> {
    let key = |n: usize| (load.tasks_of(n, s), load.on[n], &ix.snap.nodes[n].hostname);
    (0..ix.snap.nodes.len()).filter(|&n| n != from && load.why_not(ix, n, s).is_none()).fold(
        None,
        |best: Option<usize>, n| match best {
            Some(b) if key(b) <= key(n) => Some(b),
            _ => Some(n),
        },
    )
}

fn snapshot(
    nodes: &[(u8, bool, bool)],
    services: &[(u8, bool, bool)],
    tasks: &[(u8, u8)],
) -> ClusterSnapshot {
    let nodes: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, &(zone, drained, manager))| {
            // Host names repeat now and then, as a node that joined again leaves its old entry.
            let mut n =
                node(&format!("n{}", i % 7), if manager { Role::Manager } else { Role::Worker });
            n.id = NodeId(format!("id{i}"));
            n.labels.insert("zone".into(), ["a", "b"][usize::from(zone % 2)].into());
            if drained {
                n.availability = Availability::Drain;
            }
            n
        })
        .collect();
    let services = services
        .iter()
        .enumerate()
        .map(|(i, &(constraint, max_one, port))| Service {
            id: ServiceId(format!("s{i}")),
            name: format!("s{i}"),
            mode: crate::model::Mode::Replicated { replicas: 3 },
            constraints: match constraint % 3 {
                0 => vec![],
                1 => vec!["node.labels.zone==a".into()],
                _ => vec!["node.role==worker".into()],
            },
            max_replicas_per_node: max_one.then_some(1),
            host_ports: port
                .then(|| HostPort { port: 80, protocol: "tcp".into() })
                .into_iter()
                .collect(),
            reservations: Default::default(),
            update_state: None,
            version: 1,
            downtime_accepted: false,
        })
        .collect::<Vec<_>>();
    let tasks = tasks
        .iter()
        .enumerate()
        .map(|(i, &(s, n))| Task {
            id: format!("t{i}"),
            service: ServiceId(format!("s{}", usize::from(s) % services.len())),
            slot: Some(i as u64),
            node: Some(NodeId(format!("id{}", usize::from(n) % nodes.len()))),
            state: TaskState::Running,
            desired: TaskState::Running,
            error: None,
        })
        .collect();
    ClusterSnapshot {
        taken_at: "2026-11-25T03:00:00Z".parse().unwrap(),
        cluster_id: String::new(),
        nodes,
        services,
        tasks,
        agents: Default::default(),
        autolock: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_ordered_search_finds_what_a_scan_finds(
        nodes in prop::collection::vec((any::<u8>(), prop::bool::weighted(0.2), any::<bool>()), 1..12),
        services in prop::collection::vec((any::<u8>(), any::<bool>(), prop::bool::weighted(0.2)), 1..5),
        tasks in prop::collection::vec((any::<u8>(), any::<u8>()), 0..40),
        moves in prop::collection::vec((any::<u8>(), any::<u8>()), 1..8),
    ) {
        let snap = snapshot(&nodes, &services, &tasks);
        let ix = Index::new(&snap);
        let mut load = Load::from_snapshot(&ix);
        // The load changes between searches, as an evacuation changes it.
        for (s, from) in moves {
            let (s, from) = (usize::from(s) % snap.services.len(), usize::from(from) % snap.nodes.len());
            let found = load.best(&ix, s, from);
            prop_assert_eq!(found, best_by_scan(&ix, &load, s, from));
            if let Some(dest) = found {
                load.add(&ix, dest, (s, None));
            }
        }
    }

    #[test]
    fn a_failed_evacuation_leaves_the_load_as_it_was(
        nodes in prop::collection::vec((any::<u8>(), prop::bool::weighted(0.2), any::<bool>()), 1..8),
        services in prop::collection::vec((any::<u8>(), any::<bool>(), prop::bool::weighted(0.3)), 1..4),
        tasks in prop::collection::vec((any::<u8>(), any::<u8>()), 0..30),
        drained in prop::collection::vec(any::<u8>(), 1..4),
        surge in any::<bool>(),
    ) {
        let snap = snapshot(&nodes, &services, &tasks);
        let ix = Index::new(&snap);
        let mut load = Load::from_snapshot(&ix);
        let mut ids: Vec<NodeId> =
            drained.iter().map(|d| snap.nodes[usize::from(*d) % snap.nodes.len()].id.clone()).collect();
        ids.dedup();
        let state = |load: &Load| {
            let mut ports: Vec<_> = load.ports.iter().collect();
            ports.sort();
            let mut of: Vec<Vec<_>> = load.of.iter().map(|m| m.iter().collect()).collect();
            of.iter_mut().for_each(|m| m.sort());
            format!("{:?}", (&load.on, &load.open, ports, &load.reserved, of, &load.closed))
        };
        let before = state(&load);
        let alone = evacuate_batch(&ix, &mut load, &ids, false, surge);
        prop_assert_eq!(&before, &state(&load));
        let kept = evacuate_batch(&ix, &mut load, &ids, true, surge);
        prop_assert_eq!(&alone, &kept);
        if kept.is_err() {
            prop_assert_eq!(&before, &state(&load));
        } else {
            prop_assert!(load.closed.iter().all(|c| !c), "the batch's nodes take tasks again");
            for id in &ids {
                prop_assert!(load.placed[ix.node(id).unwrap()].iter().all(|(s, _)| snap.services[*s].mode == crate::model::Mode::Global));
            }
        }
    }

    /// Accepting every service's outage turns each task that cannot move into its node's
    /// outage and changes nothing else: an evacuation that succeeded without it is the same
    /// with it, and one fails only to keep two nodes running one such service apart; what
    /// stays on a node is global or an accepted outage.
    #[test]
    fn accepted_outages_turn_stuck_tasks_into_outages_and_change_nothing_else(
        nodes in prop::collection::vec((any::<u8>(), prop::bool::weighted(0.2), any::<bool>()), 1..8),
        services in prop::collection::vec((any::<u8>(), any::<bool>(), prop::bool::weighted(0.3)), 1..4),
        tasks in prop::collection::vec((any::<u8>(), any::<u8>()), 0..30),
        drained in prop::collection::vec(any::<u8>(), 1..4),
    ) {
        let snap = snapshot(&nodes, &services, &tasks);
        let mut ids: Vec<NodeId> =
            drained.iter().map(|d| snap.nodes[usize::from(*d) % snap.nodes.len()].id.clone()).collect();
        ids.sort();
        ids.dedup();
        let strict_ix = Index::new(&snap);
        let strict =
            evacuate_batch(&strict_ix, &mut Load::from_snapshot(&strict_ix), &ids, false, true);
        let names: Vec<String> = snap.services.iter().map(|s| s.name.clone()).collect();
        let ix = Index::new(&snap).accepting(&names);
        let mut load = Load::from_snapshot(&ix);
        let evs = match evacuate_batch(&ix, &mut load, &ids, true, true) {
            Ok(evs) => evs,
            Err(r) => {
                prop_assert!(ids.len() > 1, "{:?}", r);
                prop_assert!(r.iter().all(|r| r.reason.ends_with("they go in separate batches")), "{:?}", r);
                prop_assert!(strict.is_err(), "a stuck task made the strict evacuation fail");
                return Ok(());
            }
        };
        match strict {
            Ok(strict) => prop_assert_eq!(strict, evs.clone()),
            Err(_) => prop_assert!(evs.iter().any(|ev| !ev.downtime.is_empty())),
        }
        for (id, ev) in ids.iter().zip(&evs) {
            for (s, _) in &load.placed[ix.node(id).unwrap()] {
                let svc = &snap.services[*s];
                prop_assert!(
                    svc.mode == crate::model::Mode::Global
                        || ev.downtime.iter().any(|o| o.service == svc.id),
                    "{} stayed on {} without an outage", svc.name, id.0
                );
            }
        }
    }

    /// A batch's surge is the sum of its nodes' moves for each service, and each node's entry
    /// for a service says the batch's number.
    #[test]
    fn a_batch_surges_each_service_once_for_all_its_tasks(
        nodes in prop::collection::vec((any::<u8>(), prop::bool::weighted(0.1), any::<bool>()), 2..10),
        services in prop::collection::vec((any::<u8>(), any::<bool>(), prop::bool::weighted(0.1)), 1..4),
        tasks in prop::collection::vec((any::<u8>(), any::<u8>()), 0..30),
        drained in prop::collection::vec(any::<u8>(), 1..4),
    ) {
        let snap = snapshot(&nodes, &services, &tasks);
        let ix = Index::new(&snap);
        let mut load = Load::from_snapshot(&ix);
        let mut ids: Vec<NodeId> =
            drained.iter().map(|d| snap.nodes[usize::from(*d) % snap.nodes.len()].id.clone()).collect();
        ids.sort();
        ids.dedup();
        let Ok(evs) = evacuate_batch(&ix, &mut load, &ids, false, true) else { return Ok(()) };
        let mut moved: HashMap<String, u64> = HashMap::new();
        for ev in &evs {
            for m in &ev.moves {
                *moved.entry(m.split('.').next().unwrap().to_string()).or_default() += 1;
            }
        }
        for s in evs.iter().flat_map(|ev| &ev.surge) {
            prop_assert_eq!(s.to - s.from, moved[&s.name], "{}", s.name);
        }
    }
}
