//! Rejoin on a real two-engine swarm (two private dockerds in their own network namespaces): the
//! worker loses its swarm state, as when /var/lib/docker/swarm is wiped, and comes back as a
//! stranger; its agent-side rejoin joins it again with a fresh token, and the coordinator-side
//! steps carry its labels to the new entry and remove the stale one.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::dockerd::{Dockerd, NetPair};
use swarm_upgrade::adapters::docker::DockerSwarm;
use swarm_upgrade::adapters::docker::raw::Endpoint;
use swarm_upgrade::adapters::docker::rejoin::rejoin;
use swarm_upgrade::model::{NodeId, NodeState, Role};
use swarm_upgrade::ports::Swarm;

async fn wait_for(
    swarm: &DockerSwarm,
    what: &str,
    ok: impl Fn(&swarm_upgrade::model::ClusterSnapshot) -> bool,
) {
    for _ in 0..120 {
        if ok(&swarm.snapshot().await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}: {:?}", swarm.snapshot().await.unwrap().nodes);
}

#[tokio::test]
async fn a_stranger_rejoins_with_its_labels_and_the_stale_entry_goes() {
    let net = NetPair::new();
    let a = Dockerd::bare("rejoin-a", Some(&net.names[0]));
    a.cli(&["swarm", "init", "--advertise-addr", "10.213.0.1"]).unwrap();
    let b = Dockerd::bare("rejoin-b", Some(&net.names[1]));
    let token = a.cli(&["swarm", "join-token", "-q", "worker"]).unwrap();
    b.cli(&[
        "swarm",
        "join",
        "--token",
        &token,
        "--advertise-addr",
        "10.213.0.2",
        "10.213.0.1:2377",
    ])
    .unwrap();
    let swarm = DockerSwarm::new(
        a.client().negotiate_version().await.unwrap(),
        Endpoint::Unix(a.host.trim_start_matches("unix://").into()),
    );
    wait_for(&swarm, "two Ready nodes", |s| {
        s.nodes.len() == 2 && s.nodes.iter().all(|n| n.state == NodeState::Ready)
    })
    .await;
    let old = NodeId(b.cli(&["info", "--format", "{{.Swarm.NodeID}}"]).unwrap());
    let labels = BTreeMap::from([("zone".to_string(), "b".to_string())]);
    let at = swarm.snapshot().await.unwrap().node(&old).unwrap().version;
    swarm.set_labels(&old, at, &labels).await.unwrap();

    // The worker loses its swarm state: the managers still list it, the engine knows nothing.
    b.cli(&["swarm", "leave", "--force"]).unwrap();
    assert_eq!(b.cli(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).unwrap(), "inactive");

    // Agent side: join again with a fresh token, advertising the same address.
    let b_docker = b.client().negotiate_version().await.unwrap();
    let token = swarm.join_token(Role::Worker).await.unwrap();
    let new = NodeId(rejoin(&b_docker, &token, &["10.213.0.1:2377".to_string()]).await.unwrap());
    assert_ne!(new, old);
    // Coordinator side: labels to the new entry, the stale one removed.
    let at = swarm.snapshot().await.unwrap().node(&new).unwrap().version;
    swarm.set_labels(&new, at, &labels).await.unwrap();
    wait_for(&swarm, "the stale entry down", |s| {
        s.node(&old).is_some_and(|n| n.state == NodeState::Down)
    })
    .await;
    swarm.remove_node(&old).await.unwrap();

    wait_for(&swarm, "the new entry Ready", |s| {
        s.node(&new).is_some_and(|n| n.state == NodeState::Ready)
    })
    .await;
    let snap = swarm.snapshot().await.unwrap();
    assert_eq!(snap.nodes.len(), 2, "{:?}", snap.nodes);
    assert!(snap.node(&old).is_none(), "the stale entry is gone");
    let n = snap.node(&new).unwrap();
    assert_eq!((n.role, n.addr.as_str(), n.labels.clone()), (Role::Worker, "10.213.0.2", labels));

    // Rejoining a node whose engine is still a member works the same (forced leave first).
    let token = swarm.join_token(Role::Worker).await.unwrap();
    let again = NodeId(rejoin(&b_docker, &token, &["10.213.0.1:2377".to_string()]).await.unwrap());
    assert_ne!(again, new);
}
