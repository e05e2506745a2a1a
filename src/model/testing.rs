//! Small builders for unit tests.

use std::collections::BTreeMap;

use super::cluster::*;
use super::version::EngineVersion;

/// A Ready, active node at engine 26.1.5 whose ID is its host name.
pub fn node(name: &str, role: Role) -> Node {
    Node {
        id: NodeId(name.into()),
        hostname: name.into(),
        role,
        availability: Availability::Active,
        state: NodeState::Ready,
        addr: String::new(),
        manager: (role == Role::Manager).then_some(ManagerStatus {
            leader: false,
            reachability: Reachability::Reachable,
            addr: String::new(),
        }),
        engine_version: EngineVersion::parse_lenient("26.1.5"),
        labels: BTreeMap::new(),
        engine_labels: BTreeMap::new(),
        platform: Platform { os: "linux".into(), arch: "x86_64".into() },
        resources: Resources { nano_cpus: 2_000_000_000, memory_bytes: 4 << 30 },
        version: 1,
    }
}
