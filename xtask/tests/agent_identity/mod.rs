//! Issue 13, item 4, on the real swarm: a node's agent obeys only its swarm's current managers.
//! The calls go from this test process through the coordinator's own client (`GrpcAgents`: mutual
//! TLS, the agent named by its node ID) to worker1's real agent, with swarm node certificates
//! copied out of the node containers. The unit tests (tests/agent_grpc.rs) use generated CAs; here
//! the certificates, the engine's view of its managers and the join tokens are the swarm's own.

use std::time::{Duration, Instant};

use swarm_upgrade::adapters::agent_client::GrpcAgents;
use swarm_upgrade::model::PackageSet;
use swarm_upgrade::ports::{AgentTarget, Agents, JoinOrder, Lists, OpKey, PortError, Secret};
use swarm_upgrade::wire::join::{ca_digest, token_digest};
use swarm_upgrade::wire::tls::TlsMaterial;
use xtask::lab;
use xtask::scenario::LabGuard;

/// Where a node's swarm certificates are.
const CERTS: &str = "/var/lib/docker/swarm/certificates";
/// The agents' port (the packaged default).
const PORT: u16 = 7443;
/// The root CA of another swarm (a real engine's, kept for the join token unit tests).
const OTHER_CA: &str = include_str!("../../../tests/fixtures/swarm/swarm-root-ca.crt");
/// The agent's record of the newest fencing token (agent.state_dir).
const FENCE: &str = "cat /var/lib/swarm-upgrade/fence.json 2>/dev/null || true";

/// Refusals by worker1's real agent: an option-shaped package name in an order, a join token of
/// another swarm, and the certificate of a manager that was demoted, then removed (it comes back
/// as a manager under a new ID, Ready, Raft-reachable, its agent serving its new certificate).
/// The agents' words and when they said them are kept in the test's reports
/// (`agent-identity.txt`).
pub fn agents_obey_only_the_swarms_current_managers(l: &LabGuard) {
    let mut said = Said(Instant::now(), Vec::new());
    let worker1 = target(l, "worker1");
    let fence = l.sh("worker1", FENCE);
    // The agent's own newest token: admitted without moving it, so the order meets the package
    // check (which comes after the fence) and a later run's token 1 is not made stale.
    let token = serde_json::from_str::<serde_json::Value>(&fence)
        .ok()
        .and_then(|f| f["highest"].as_u64())
        .unwrap_or(0);
    let op =
        OpKey { run_id: "lab-agent-identity".into(), token, limit: Some(Duration::from_secs(30)) };
    let manager1 = agents(material(l, "manager1"));

    let option: PackageSet =
        PackageSet([("-oAPT::Get::Whatever=1".to_string(), "1.0".parse().unwrap())].into());
    match block_on(manager1.prefetch(&worker1, &option, &op)) {
        Err(PortError::Invalid(m)) if m.contains("is not a Debian package name") => {
            said.note("an option-shaped package name, by manager1", &m)
        }
        other => panic!("an option-shaped package name was not refused as such: {other:?}"),
    }

    // Rejoin: the lab's own worker token with the digest of another swarm's CA, at the real
    // managers' addresses; the unaltered token is the control (its digest is worker1's CA).
    let ca = file(l, "worker1", &format!("{CERTS}/swarm-root-ca.crt"));
    let real = l.sh(lab::MANAGER, "docker swarm join-token -q worker");
    assert_eq!(token_digest(&real), Some(ca_digest(&ca).as_str()), "the lab's token names its CA");
    let secret = real.rsplit('-').next().unwrap();
    let join = JoinOrder {
        token: Secret(format!("SWMTKN-1-{}-{secret}", ca_digest(OTHER_CA))),
        managers: l.nodes[..3].iter().map(|n| format!("{}:2377", n.ip)).collect(),
    };
    match block_on(manager1.rejoin(&worker1, &join, &op)) {
        Err(PortError::Invalid(m)) if m.contains("another root CA") => {
            said.note("a join token of another swarm, by manager1", &m)
        }
        other => panic!("a join token of another swarm was not refused as such: {other:?}"),
    }
    assert_eq!(target(l, "worker1").node_id, worker1.node_id, "worker1 stayed in its swarm");
    assert_eq!(l.sh("worker1", FENCE), fence, "refused orders moved no fence");

    demoted_and_removed_managers_are_refused(l, &worker1, &mut said);
    let text = said.1.join("\n");
    std::fs::write(l.reports.join("agent-identity.txt"), &text).unwrap();
    eprintln!("agent identity, on worker1's agent:\n{text}");
}

/// What the agents said, each line with the seconds since the start.
struct Said(Instant, Vec<String>);

impl Said {
    /// Notes `words` about `what`, now.
    fn note(&mut self, what: &str, words: &str) {
        self.1.push(format!("{:5.1} s  {what}: {words}", self.0.elapsed().as_secs_f64()));
    }
}

/// manager3's manager certificate, copied while it is one, is obeyed; refused once manager3 is
/// demoted (the certificate still chains to the swarm's CA and says `OU=swarm-manager`, but
/// worker1's engine no longer counts its CN among the managers); and still refused once manager3
/// has left, been removed and joined again as a manager under a new ID, so its old ID is in the
/// swarm no more: what a removed manager's certificate meets.
fn demoted_and_removed_managers_are_refused(l: &LabGuard, worker1: &AgentTarget, said: &mut Said) {
    let old_id = target(l, "manager3").node_id;
    let as_old_manager3 = agents(material(l, "manager3"));
    block_on(as_old_manager3.describe(worker1, Lists::AsTheyAre))
        .expect("manager3's certificate obeyed");
    said.note(&format!("manager3 ({old_id}) while a manager"), "obeyed (Describe)");
    l.sh(lab::MANAGER, "docker node demote manager3");
    let managers = "docker info --format '{{range .Swarm.RemoteManagers}}{{.NodeID}} {{end}}'";
    wait("worker1 no longer counts manager3 as a manager", || {
        !l.sh("worker1", managers).contains(&old_id)
    });
    let refused = |when: &str, said: &mut Said| match block_on(
        as_old_manager3.describe(worker1, Lists::AsTheyAre),
    ) {
        Err(PortError::Failed(m)) if m.contains("not among the swarm's managers now") => {
            said.note(&format!("manager3's old certificate {when}"), &m)
        }
        other => panic!("manager3's old certificate was not refused {when}: {other:?}"),
    };
    refused("after its demotion", said);

    // Removed, and back as a manager under a new ID, instead of promoted back: one step both
    // restores three managers and leaves a real removed manager's certificate behind (a removed
    // node's ID is gone from RemoteManagers as a demoted one's is, but also from `node ls`). The
    // cost is the wait for manager3's agent to reload its new certificate below.
    wait("manager3 is no manager any more", || {
        l.sh("manager3", "docker info --format '{{.Swarm.ControlAvailable}}'") == "false"
    });
    l.sh("manager3", "docker swarm leave >/dev/null");
    l.sh(lab::MANAGER, &format!("docker node rm --force {old_id} >/dev/null"));
    let token = l.sh(lab::MANAGER, "docker swarm join-token -q manager");
    let (first, me) = (&l.nodes[0].ip, &l.nodes[2].ip);
    l.sh(
        "manager3",
        &format!("docker swarm join --advertise-addr {me} --listen-addr {me}:2377 --token {token} {first}:2377 >/dev/null"),
    );
    let state = format!(
        "docker node inspect {} --format '{{{{.Status.State}}}} {{{{.ManagerStatus.Reachability}}}}'",
        l.node_id("manager3")
    );
    wait("manager3 is back, Ready and Raft-reachable", || {
        l.sh(lab::MANAGER, &state) == "ready reachable"
    });
    assert!(!l.sh(lab::MANAGER, "docker node ls -q").contains(&old_id), "{old_id} was removed");
    refused("after its removal", said);
    // Its agent reloads the new certificate (checked every 30 s); coordinators name it by the new ID.
    let manager3 = target(l, "manager3");
    let manager1 = agents(material(l, "manager1"));
    wait("manager3's agent serves its new certificate", || {
        block_on(manager1.describe(&manager3, Lists::AsTheyAre)).is_ok()
    });
    said.note(&format!("manager3 back as {}", manager3.node_id), "its agent answers");
}

/// Waits up to 60 s for `done`.
fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(60), "not within 60 s: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The coordinator's client, calling as the holder of `tls`.
fn agents(tls: TlsMaterial) -> GrpcAgents {
    GrpcAgents::new(Some(tls), PORT, Vec::new())
}

/// A node's agent as coordinators address it: its lab address, its current node ID.
fn target(l: &LabGuard, node: &str) -> AgentTarget {
    let addr = l.nodes.iter().find(|n| n.name == node).unwrap().ip.clone();
    let node_id = l.node_id(node);
    AgentTarget { hostname: node.to_string(), addr, node_id }
}

/// A node's swarm certificate, key and root CA as they are on its disk now, read by the agents'
/// and coordinators' own loader (from a copy, removed again).
fn material(l: &LabGuard, node: &str) -> TlsMaterial {
    let dir = std::env::temp_dir().join(format!("swarm-upgrade-lab-{node}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["swarm-node.crt", "swarm-node.key", "swarm-root-ca.crt"] {
        std::fs::write(dir.join(f), file(l, node, &format!("{CERTS}/{f}"))).unwrap();
    }
    let mut settings = swarm_upgrade::config::Settings::default().agent;
    settings.certificates_dir = dir.clone();
    let loaded = swarm_upgrade::wire::tls::load(&settings);
    std::fs::remove_dir_all(&dir).unwrap();
    loaded.unwrap_or_else(|e| panic!("{node}'s certificates: {e}"))
}

/// A file's exact bytes on a node (the CA digest is over them, final newline included).
fn file(l: &LabGuard, node: &str, path: &str) -> String {
    let out = l.engine.command(&["exec", node, "cat", path]).output().expect("docker exec");
    assert!(out.status.success(), "{node}:{path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a call of the async client to its end.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}
