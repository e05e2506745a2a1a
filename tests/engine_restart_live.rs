//! The agent's engine restart, whole, on a real node: a systemd node container running Debian's
//! docker.io. Through the agent's own code path (daemon.json check, docker.service restarted over
//! the node's D-Bus and awaited to its job's result, then dockerd must answer): a bad daemon.json
//! is refused before anything restarts; a restart gives a new dockerd that answers; an engine
//! that cannot start is reported as the failed job it is; one that never becomes ready is given
//! up at the order's limit, its job cancelled.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dockerd::Dockerd;
use common::node::{ENGINE, Node};
use swarm_upgrade::adapters::docker::DockerSwarm;
use swarm_upgrade::adapters::docker::raw::Endpoint;
use swarm_upgrade::agent::host::HostBackend;
use swarm_upgrade::agent::service::NodeBackend;
use swarm_upgrade::model::{Autolock, UnlockKey};
use swarm_upgrade::ports::OpKey;
use swarm_upgrade::ports::Swarm;
use swarm_upgrade::wire::error::NodeError;

fn main_pid(node: &Node<'_>) -> String {
    node.exec("systemctl show -p MainPID --value docker.service").unwrap()
}

/// The restart, its failure as the text an operator reads (a failure, never a busy node).
async fn restart(backend: &Arc<HostBackend>) -> Result<(), String> {
    restart_within(backend, None).await
}

/// The restart under an order's time limit.
async fn restart_within(backend: &Arc<HostBackend>, limit: Option<Duration>) -> Result<(), String> {
    let b = backend.clone();
    let op = OpKey { run_id: "run-1".into(), token: 1, limit };
    tokio::task::spawn_blocking(move || b.restart_engine(&op)).await.unwrap().map_err(|e| {
        assert!(matches!(e, NodeError::Failed(_)), "{e:?}");
        e.to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_engine_restart_on_a_real_node() {
    let engine = Dockerd::bare("restart", None);
    let node = Node::start(&engine, "node1", ENGINE);
    let t0 = Instant::now();
    while node.exec("systemctl is-active docker.service").as_deref() != Ok("active") {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "docker.service did not start in the node: {:?}",
            node.exec("systemctl status docker.service")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let socket = node.run.join("docker.sock");
    let docker = bollard::Docker::connect_with_unix(
        socket.to_str().unwrap(),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
    .negotiate_version()
    .await
    .unwrap();
    let check_file = node.run.with_extension("daemon.json");
    let backend = Arc::new(
        HostBackend::new(docker.clone(), "node1".into(), Duration::from_secs(120))
            .with_node_paths(node.system_bus(), check_file.clone()),
    );

    // A daemon.json dockerd would refuse in swarm mode: nothing is restarted.
    std::fs::write(&check_file, r#"{"live-restore": true}"#).unwrap();
    let before = main_pid(&node);
    let e = restart(&backend).await.unwrap_err();
    assert!(e.contains("live-restore"), "{e}");
    assert_eq!(main_pid(&node), before, "dockerd was not restarted");

    // A good configuration: a new dockerd, and it answers.
    std::fs::write(&check_file, r#"{"log-level": "info"}"#).unwrap();
    restart(&backend).await.unwrap();
    assert_ne!(main_pid(&node), before, "a new dockerd runs");
    docker.ping().await.unwrap();

    // An engine that cannot start (here: an option dockerd refuses) is the failed job it is.
    node.exec(r#"echo '{"no-such-option": true}' > /etc/docker/daemon.json"#).unwrap();
    let e = restart(&backend).await.unwrap_err();
    assert!(e.contains("docker.service") && e.contains("failed"), "{e}");
    assert_ne!(node.exec("systemctl is-active docker.service").as_deref(), Ok("active"));

    // An engine that never becomes ready (here: a start that hangs before dockerd runs) under an
    // order's limit: the restart gives up at the limit and cancels its job, so nothing stays
    // queued behind it; once the cause is gone, the next restart works.
    node.exec(
        "rm /etc/docker/daemon.json && mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\nExecStartPre=/bin/sleep 600\\n' > /etc/systemd/system/docker.service.d/hang.conf && systemctl daemon-reload",
    )
    .unwrap();
    let e = restart_within(&backend, Some(Duration::from_secs(3))).await.unwrap_err();
    assert!(e.contains("timed out after 3s and was cancelled"), "{e}");
    assert_eq!(node.exec("systemctl list-jobs --no-legend").unwrap().trim(), "", "no job left");
    node.exec("rm -r /etc/systemd/system/docker.service.d && systemctl daemon-reload").unwrap();
    restart(&backend).await.unwrap();
    docker.ping().await.unwrap();

    autolocked_manager(&node, &docker, &backend, &check_file).await;
    let _ = std::fs::remove_file(&check_file);
}

/// An autolocked swarm's manager: the swarm says it is autolocked and gives its key; a restart
/// leaves the engine locked, which an agent without the key reports (the order fails) and an
/// agent with it unlocks and checks; the manager's encrypted node key decrypts with it into the
/// TLS identity, and without it is refused, naming the setting.
async fn autolocked_manager(
    node: &Node<'_>,
    docker: &bollard::Docker,
    keyless: &Arc<HostBackend>,
    check_file: &std::path::Path,
) {
    let state = || node.exec("docker info --format '{{.Swarm.LocalNodeState}}'").unwrap();
    node.exec(
        "docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null",
    )
    .unwrap();
    let printed = node
        .exec("docker swarm update --autolock=true >/dev/null && docker swarm unlock-key -q")
        .unwrap();
    let key = UnlockKey::parse(&printed).unwrap();
    let raw = Endpoint::Unix(node.run.join("docker.sock"));
    let swarm = DockerSwarm::new(docker.clone(), raw.clone());
    assert_eq!(swarm.snapshot().await.unwrap().autolock, Autolock::NoKey);
    assert_eq!(swarm.unlock_key().await.unwrap(), Some(key.clone()));

    let e = restart(keyless).await.unwrap_err();
    assert!(e.contains("came back locked") && e.contains("agent.unlock_key_file"), "{e}");
    assert_eq!(state(), "locked");

    let keyed = Arc::new(
        HostBackend::new(docker.clone(), "node1".into(), Duration::from_secs(120))
            .with_node_paths(node.system_bus(), check_file.to_path_buf())
            .with_unlock_key(Some(key.clone()), raw),
    );
    restart(&keyed).await.unwrap();
    assert_eq!(state(), "active", "unlocked by the agent");

    // The node's own TLS material, copied out of the node as it is on its disk.
    let dir = node.run.with_extension("certs");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["swarm-node.crt", "swarm-node.key", "swarm-root-ca.crt"] {
        let text = node.exec(&format!("cat /var/lib/docker/swarm/certificates/{f}")).unwrap();
        std::fs::write(dir.join(f), text + "\n").unwrap();
    }
    let key_pem = std::fs::read_to_string(dir.join("swarm-node.key")).unwrap();
    assert!(key_pem.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{key_pem}");
    let mut agent = swarm_upgrade::config::Settings::default().agent;
    agent.certificates_dir = dir.clone();
    let e = swarm_upgrade::wire::tls::load(&agent).unwrap_err();
    assert!(e.to_string().contains("agent.unlock_key_file"), "{e}");
    let key_file = dir.join("unlock.key");
    std::fs::write(&key_file, key.as_str()).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    agent.unlock_key_file = Some(key_file);
    let material = swarm_upgrade::wire::tls::load(&agent).unwrap();
    assert!(material.key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(material.node_id, node.exec("docker info --format '{{.Swarm.NodeID}}'").unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
