//! The lab's fixed shape: its network, its machines and their addresses, and the flags a systemd
//! node container needs here. Shared by the lab's bring-up and the workload on it.

/// Label on every container, network and volume the lab makes.
pub const LABEL: &str = "io.swarm-upgrade.lab";
/// The lab network.
pub const NETWORK: &str = "swarm-upgrade-lab";
/// The lab network's addresses.
pub const SUBNET: &str = "10.213.64.0/24";
/// The host's own address on the lab network (the nodes reach the machine here).
pub const GATEWAY: &str = "10.213.64.1";
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
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// Container and host name.
    pub name: &'static str,
    /// Address on the lab network.
    pub ip: &'static str,
}

/// The swarm's nodes, managers first.
pub const NODES: &[Host] = &[
    Host { name: "manager1", ip: "10.213.64.11" },
    Host { name: "manager2", ip: "10.213.64.12" },
    Host { name: "manager3", ip: "10.213.64.13" },
    Host { name: "worker1", ip: "10.213.64.21" },
    Host { name: "worker2", ip: "10.213.64.22" },
];
/// The balancer.
pub const BALANCER: Host = Host { name: "balancer", ip: "10.213.64.30" };
/// The apt repository.
pub const REPO: Host = Host { name: "repo", ip: "10.213.64.31" };
