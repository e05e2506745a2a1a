//! The lab's shape: its network, its machines (as many managers and workers as asked) and their
//! addresses, and the flags a systemd node container needs here. Shared by the lab's bring-up and
//! the workload on it.

use anyhow::{Result, bail};

use crate::engine::Engine;

/// Label on every container, network and volume the lab makes.
pub const LABEL: &str = "io.swarm-upgrade.lab";
/// The lab network.
pub const NETWORK: &str = "swarm-upgrade-lab";

/// An address on a slot's lab network: 10.213.64.x for slot 0, 10.213.65.x for slot 1, and so on.
fn ip(slot: u8, host: u32) -> String {
    format!("10.213.{}.{host}", 64 + u32::from(slot))
}

/// A slot's lab network's addresses (10.213.64.0/24 for slot 0).
pub fn subnet(slot: u8) -> String {
    ip(slot, 0) + "/24"
}

/// The host's own address on a slot's lab network (the nodes reach the machine here).
pub fn gateway(slot: u8) -> String {
    ip(slot, 1)
}
/// The manager the lab works from.
pub const MANAGER: &str = "manager1";

/// What a systemd node container needs on this kind of machine (../shared/LAB-NOTES.md):
/// `--privileged` fails here (no CAP_SYS_RESOURCE in the bounding set), so every other capability,
/// no seccomp or AppArmor confinement, all devices, and the host's cgroups.
pub const SYSTEMD_NODE_FLAGS: &[&str] = &[
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--cgroupns=host",
];

/// A lab machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Container and host name.
    pub name: String,
    /// Address on the lab network.
    pub ip: String,
}

impl Host {
    fn new(name: &str, ip: &str) -> Host {
        Host { name: name.to_string(), ip: ip.to_string() }
    }
}

/// Label on every node container: its role in the swarm (`manager` or `worker`).
pub const ROLE_LABEL: &str = "io.swarm-upgrade.lab.role";

/// The swarm's shape: `manager1..M` at 10.213.64.11.., `worker1..W` at 10.213.64.101.. (the
/// third number is 64 plus the lab's slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Managers (1 to 9).
    pub managers: u8,
    /// Workers (0 to 150).
    pub workers: u8,
}

impl Default for Shape {
    /// Three managers and two workers.
    fn default() -> Shape {
        Shape { managers: 3, workers: 2 }
    }
}

impl Shape {
    /// The most managers the lab's addresses hold (10.213.64.11-19).
    pub const MAX_MANAGERS: u8 = 9;
    /// The most workers the lab's addresses hold (10.213.64.101-250).
    pub const MAX_WORKERS: u8 = 150;

    /// A shape the lab's addresses can hold, or why not.
    pub fn new(managers: u8, workers: u8) -> Result<Shape, String> {
        if !(1..=Shape::MAX_MANAGERS).contains(&managers) {
            return Err(format!(
                "--managers {managers}: the lab holds 1 to {} managers (Docker advises an odd number such as 3 or 5)",
                Shape::MAX_MANAGERS
            ));
        }
        if workers > Shape::MAX_WORKERS {
            return Err(format!(
                "--workers {workers}: the lab holds at most {} workers",
                Shape::MAX_WORKERS
            ));
        }
        Ok(Shape { managers, workers })
    }

    /// The swarm's nodes in a slot's lab, managers first.
    pub fn nodes(&self, slot: u8) -> Vec<Host> {
        let managers = (1..=self.managers)
            .map(|i| Host::new(&format!("manager{i}"), &ip(slot, 10 + u32::from(i))));
        let workers = (1..=self.workers)
            .map(|i| Host::new(&format!("worker{i}"), &ip(slot, 100 + u32::from(i))));
        managers.chain(workers).collect()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        usize::from(self.managers) + usize::from(self.workers)
    }

    /// Never: a shape has a manager.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The shape of the nodes named `manager<i>` and `worker<i>` among `names` (a running lab's
    /// containers); anything else is ignored.
    pub fn of_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Shape {
        let (mut managers, mut workers) = (0u8, 0u8);
        for n in names {
            if n.strip_prefix("manager").is_some_and(|i| i.parse::<u8>().is_ok()) {
                managers += 1;
            } else if n.strip_prefix("worker").is_some_and(|i| i.parse::<u8>().is_ok()) {
                workers += 1;
            }
        }
        Shape { managers, workers }
    }
}

/// The balancer's container and host name.
pub const BALANCER: &str = "balancer";
/// The apt repository's container and host name.
pub const REPO: &str = "repo";

/// The balancer of a slot's lab.
pub fn balancer(slot: u8) -> Host {
    Host::new(BALANCER, &ip(slot, 30))
}

/// The apt repository of a slot's lab.
pub fn repository(slot: u8) -> Host {
    Host::new(REPO, &ip(slot, 31))
}

/// The running lab's swarm nodes on `engine`, managers first (read from its containers' role
/// labels).
pub fn running_nodes(engine: &Engine) -> Result<Vec<Host>> {
    let filter = format!("label={ROLE_LABEL}");
    let names = engine.docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &filter])?;
    let shape = Shape::of_names(names.lines());
    if shape.managers == 0 {
        bail!("no lab node runs: bring the lab up with `cargo xtask lab up`");
    }
    Ok(shape.nodes(engine.slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_shape_is_three_managers_and_two_workers_managers_first() {
        let names: Vec<String> = Shape::default().nodes(0).into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["manager1", "manager2", "manager3", "worker1", "worker2"]);
    }

    #[test]
    fn every_node_of_the_largest_shapes_has_its_own_address_outside_the_fixed_ones() {
        let mut ips = vec![];
        for slot in 0..crate::engine::SLOTS {
            let nodes = Shape::new(9, 150).unwrap().nodes(slot);
            assert!(nodes.iter().all(|h| h.ip.rsplit('.').next().unwrap().parse::<u8>().is_ok()));
            assert!(nodes.iter().all(|h| h.ip.starts_with(subnet(slot).trim_end_matches("0/24"))));
            ips.extend(nodes.into_iter().map(|h| h.ip));
            ips.extend([balancer(slot).ip, repository(slot).ip, gateway(slot)]);
        }
        let n = ips.len();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), n, "addresses collide");
        assert_eq!((subnet(0).as_str(), gateway(1).as_str()), ("10.213.64.0/24", "10.213.65.1"));
    }

    #[test]
    fn shapes_out_of_range_are_refused_with_the_limit() {
        assert!(Shape::new(0, 2).unwrap_err().contains("1 to 9 managers"));
        assert!(Shape::new(10, 2).unwrap_err().contains("1 to 9 managers"));
        assert!(Shape::new(3, 151).unwrap_err().contains("at most 150 workers"));
        assert_eq!(Shape::new(3, 12).unwrap().len(), 15);
    }

    #[test]
    fn a_running_labs_shape_is_read_from_its_container_names() {
        let names = ["repo", "manager2", "worker10", "manager1", "balancer", "worker1", "manager3"];
        assert_eq!(Shape::of_names(names), Shape { managers: 3, workers: 2 });
    }
}
