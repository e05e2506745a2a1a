//! The Docker adapter and the Raft-backed store against a real dockerd in a real (one-node)
//! swarm: snapshot, node and service writes fenced by the version they were decided on (refused
//! by the engine once the object moved on), scaling, and the lock's compare-and-swap under two
//! writers and under a swarm version that moves on its own.

mod common;

use std::collections::BTreeMap;

use common::dockerd::Dockerd;
use swarm_upgrade::adapters::docker::DockerSwarm;
use swarm_upgrade::adapters::docker::raw::Endpoint;
use swarm_upgrade::adapters::docker::store::{RUN_LABEL, STATE_LABEL, SwarmLabelStore};
use swarm_upgrade::lock::{LEASE_MARGIN, LockError, SCHEMA, Sighting, StoreDoc};
use swarm_upgrade::machine::Phase;
use swarm_upgrade::model::NodeId;
use swarm_upgrade::model::{Availability, Mode, NodeState, Role, TaskState};
use swarm_upgrade::ports::{PortError, StateStore, Swarm};
use swarm_upgrade::store_layout::{SHARD_NODES, WRITE_BUDGET};
use swarm_upgrade::wire::error::NodeError;

/// Read-modify-write with compare-and-swap, as the coordinator does it.
async fn update<T>(store: &SwarmLabelStore, mut f: impl FnMut(&mut StoreDoc) -> T) -> (T, u32) {
    for conflicts in 0..100 {
        let mut current = store.load().await.unwrap();
        let out = f(&mut current.doc);
        match store.save(&current.doc, &current.version).await {
            Ok(()) => return (out, conflicts),
            Err(PortError::Conflict) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store never accepted the write");
}

/// One look of a contender whose wall clock runs ten minutes ahead: it sights the lock (an
/// earlier sighting of the same, unrenewed lock keeps its start) and tries to take it.
async fn contend(
    store: &SwarmLabelStore,
    target: &swarm_upgrade::model::Target,
    earlier: Option<Sighting>,
    start: std::time::Instant,
) -> (Sighting, Result<u64, LockError>) {
    let short = std::time::Duration::from_secs(2);
    let mono = start.elapsed();
    let seen = store.load().await.unwrap().doc.lock.expect("a lock is held");
    let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
    assert!(seen.expired(ahead), "by the contender's clock the lease has run out");
    let sighting = Sighting::of(&seen, earlier, mono);
    let (took, _) = update(store, |d| {
        d.acquire("manager2/42", "rd", target, short, ahead, Some((&sighting, mono)))
    })
    .await;
    (sighting, took)
}

async fn wait_for(
    swarm: &DockerSwarm,
    what: &str,
    ok: impl Fn(&swarm_upgrade::model::ClusterSnapshot) -> bool,
) {
    for _ in 0..120 {
        if ok(&swarm.snapshot().await.unwrap()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}: {:?}", swarm.snapshot().await.unwrap());
}

#[tokio::test]
async fn adapter_and_store_against_a_real_swarm() {
    let d = Dockerd::start("adapter");
    d.cli(&[
        "service",
        "create",
        "-q",
        "--detach",
        "--name",
        "solo",
        "--constraint",
        "node.role==manager",
        "su-busybox:1",
        "/bin/sleep",
        "100000",
    ])
    .unwrap();
    let docker = d.client().negotiate_version().await.unwrap();
    let swarm = DockerSwarm::new(
        docker.clone(),
        Endpoint::Unix(d.host.trim_start_matches("unix://").into()),
    );
    let store = SwarmLabelStore::new(docker.clone());

    // Snapshot: our own types, as the engine sees the swarm.
    wait_for(&swarm, "solo running", |s| s.tasks.iter().any(|t| t.state == TaskState::Running))
        .await;
    let snap = swarm.snapshot().await.unwrap();
    let node = snap.nodes[0].clone();
    assert_eq!(
        (node.role, node.state, node.availability),
        (Role::Manager, NodeState::Ready, Availability::Active)
    );
    assert!(node.manager.as_ref().unwrap().leader);
    let solo = snap.services.iter().find(|s| s.name == "solo").unwrap().clone();
    scoped_reads_hold_what_the_whole_snapshot_scopes(&d, &swarm, &node.id, &solo.id).await;

    // Writes are fenced by the version they were decided on. An operator's write between our
    // reading and our write (a label) makes the engine refuse ours, changing nothing; decided
    // again on a fresh reading, it lands and keeps the operator's label.
    let at = node.version;
    assert!(at > 0, "the engine reports the node's version");
    d.cli(&["node", "update", "--label-add", "ops=1", &node.id.0]).unwrap();
    assert_eq!(
        swarm.set_availability(&node.id, at, Availability::Drain).await,
        Err(PortError::Conflict)
    );
    assert_eq!(swarm.snapshot().await.unwrap().nodes[0].availability, Availability::Active);
    let fresh = swarm.snapshot().await.unwrap().nodes[0].clone();
    assert!(fresh.version > at);
    swarm.set_availability(&node.id, fresh.version, Availability::Drain).await.unwrap();
    let snap = swarm.snapshot().await.unwrap();
    assert_eq!(snap.nodes[0].availability, Availability::Drain);
    assert_eq!(snap.nodes[0].labels, BTreeMap::from([("ops".to_string(), "1".to_string())]));
    // The same for labels: a write decided before the drain is refused.
    assert_eq!(
        swarm.set_label(&node.id, fresh.version, "late", Some("x")).await,
        Err(PortError::Conflict)
    );
    let drained = swarm.snapshot().await.unwrap().nodes[0].clone();
    swarm.set_label(&node.id, drained.version, "ops", None).await.unwrap();
    wait_for(&swarm, "solo stopped by the drain", |s| {
        !s.tasks.iter().any(|t| t.state == TaskState::Running)
    })
    .await;
    let now = swarm.snapshot().await.unwrap().nodes[0].clone();
    assert!(now.labels.is_empty(), "{:?}", now.labels);
    swarm.set_availability(&node.id, now.version, Availability::Active).await.unwrap();
    wait_for(&swarm, "solo running again", |s| {
        s.tasks.iter().any(|t| t.state == TaskState::Running && t.desired == TaskState::Running)
    })
    .await;

    // Services too: a scale decided on a reading older than an operator's update is refused.
    // Scale is absolute, so repeating it is harmless.
    let at = swarm.snapshot().await.unwrap().service(&solo.id).unwrap().version;
    d.cli(&["service", "update", "-q", "--detach", "--label-add", "ops=1", "solo"]).unwrap();
    assert_eq!(swarm.scale(&solo.id, at, 2).await, Err(PortError::Conflict));
    let version = |s: &swarm_upgrade::model::ClusterSnapshot| s.service(&solo.id).unwrap().version;
    let snap = swarm.snapshot().await.unwrap();
    assert_eq!(snap.service(&solo.id).unwrap().mode, Mode::Replicated { replicas: 1 });
    swarm.scale(&solo.id, version(&snap), 2).await.unwrap();
    let snap = swarm.snapshot().await.unwrap();
    swarm.scale(&solo.id, version(&snap), 2).await.unwrap();
    let snap = swarm.snapshot().await.unwrap();
    assert_eq!(snap.service(&solo.id).unwrap().mode, Mode::Replicated { replicas: 2 });
    swarm.scale(&solo.id, version(&snap), 1).await.unwrap();
    assert!(swarm.join_token(Role::Worker).await.unwrap().0.starts_with("SWMTKN-1-"));

    // Two writers on the compare-and-swap store: 2 x 15 increments, no write lost.
    let ((_, c1), (_, c2)) = tokio::join!(
        async {
            let mut conflicts = 0;
            for _ in 0..15 {
                conflicts += update(&store, |d| d.last_token += 1).await.1;
            }
            ((), conflicts)
        },
        async {
            let mut conflicts = 0;
            for _ in 0..15 {
                conflicts += update(&store, |d| d.last_token += 1).await.1;
            }
            ((), conflicts)
        }
    );
    assert!(c1 + c2 > 0, "the two writers did interleave");
    assert_eq!(
        store.load().await.unwrap().doc.last_token,
        30,
        "no increment lost ({} conflicts retried)",
        c1 + c2
    );

    // The swarm's version moves on its own (an operator's `docker swarm update`): our stale write
    // is refused, and after re-reading, both changes are kept.
    let stale = store.load().await.unwrap();
    d.cli(&["swarm", "update", "--task-history-limit", "7"]).unwrap();
    let mut doc = stale.doc.clone();
    doc.last_token += 1;
    assert_eq!(store.save(&doc, &stale.version).await, Err(PortError::Conflict));
    update(&store, |d| d.last_token += 1).await;
    let info = docker.inspect_swarm().await.unwrap();
    assert_eq!(
        info.spec.as_ref().unwrap().orchestration.as_ref().unwrap().task_history_retention_limit,
        Some(7)
    );
    assert!(info.spec.unwrap().labels.unwrap().contains_key(STATE_LABEL));
    assert_eq!(store.load().await.unwrap().doc.last_token, 31);

    // A document an older swarm-upgrade wrote (layout 1, no `schema` key: an interrupted run) is
    // read and upgraded; one a newer swarm-upgrade wrote is refused, naming the fix.
    let kept = store.load().await.unwrap().doc;
    let put = |text: String| {
        let docker = docker.clone();
        async move {
            let swarm = docker.inspect_swarm().await.unwrap();
            let mut spec = swarm.spec.unwrap();
            spec.labels.get_or_insert_with(Default::default).insert(STATE_LABEL.into(), text);
            let version = swarm.version.unwrap().index.unwrap() as i64;
            let options =
                bollard::query_parameters::UpdateSwarmOptions { version, ..Default::default() };
            docker.update_swarm(spec, options).await.unwrap();
        }
    };
    put(include_str!("fixtures/store/v1-interrupted.json").into()).await;
    let old = store.load().await.unwrap().doc;
    assert_eq!((old.schema, old.run.unwrap().id.as_str()), (SCHEMA, "run-1"));
    let mut newer = serde_json::to_value(&kept).unwrap();
    newer["schema"] = (SCHEMA + 1).into();
    put(newer.to_string()).await;
    match store.load().await {
        Err(PortError::Failed(m)) => {
            assert!(m.contains("upgrade the swarm-upgrade package"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    put(serde_json::to_string(&kept).unwrap()).await;
    assert_eq!(store.load().await.unwrap().doc.last_token, 31);

    // Two coordinators race for the lock through the real store: exactly one wins.
    let target = "5:28.5.2-1~debian.13~trixie".parse().unwrap();
    let now = jiff::Timestamp::now();
    let lease = std::time::Duration::from_secs(60);
    let (a, b) = tokio::join!(
        update(&store, |d| d.acquire("manager1/1", "ra", &target, lease, now, None)),
        update(&store, |d| d.acquire("manager2/2", "rb", &target, lease, now, None)),
    );
    let results = [a.0, b.0];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let loser = results.iter().find_map(|r| r.clone().err()).unwrap();
    assert!(matches!(loser, LockError::Held { .. }), "{loser}");
    assert!(loser.to_string().starts_with("locked by manager"), "{loser}");
    assert_eq!(store.load().await.unwrap().doc.lock.unwrap().token, 32);

    // The operator's commands on the real swarm, through the binary.
    let bin = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
            .args(args)
            .env("DOCKER_HOST", &d.host)
            .env("SWARM_UPGRADE_CONFIG", "/dev/null")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = bin(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("Lock: held by manager"), "{out}");
    let (code, out, _) = bin(&["unlock", "--force"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("broke the lock held by manager"), "{out}");
    let (_, out, _) = bin(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (status["lock"].clone(), status["last_token"].clone()),
        (serde_json::Value::Null, serde_json::json!(32))
    );
    let (code, out, _) = bin(&["abort"]);
    assert_eq!((code, out.trim()), (Some(0), "no run in progress; nothing to abort"));
    // The same commands for programs (`--output json`).
    update(&store, |d| d.acquire("manager3/3", "rc", &target, lease, jiff::Timestamp::now(), None))
        .await
        .0
        .unwrap();
    let (code, out, err) = bin(&["--output", "json", "unlock", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    let broken: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        (broken["broken"]["holder"].as_str(), broken["broken"]["token"].as_u64()),
        (Some("manager3/3"), Some(33)),
        "{out}"
    );
    let (_, out, _) = bin(&["--output", "json", "unlock", "--force"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["broken"],
        serde_json::Value::Null,
        "{out}"
    );
    let (code, out, _) = bin(&["--output", "json", "abort"]);
    let aborted: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((code, aborted["run"].clone()), (Some(0), serde_json::Value::Null), "{out}");

    // A contender whose wall clock runs ten minutes ahead, through the real store: the holder's
    // lease looks run out by that clock, yet the contender takes over only once it has watched
    // the lock unrenewed for a whole lease plus the margin on its own monotonic clock, and a
    // renewal starts its watch again.
    let short = std::time::Duration::from_secs(2);
    let now = jiff::Timestamp::now;
    let holder =
        update(&store, |d| d.acquire("manager1/41", "rd", &target, short, now(), None)).await.0;
    let holder = holder.unwrap();
    let start = std::time::Instant::now();
    let (first, took) = contend(&store, &target, None, start).await;
    assert!(matches!(took, Err(LockError::Held { .. })), "{took:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    update(&store, |d| d.renew(holder, short, now())).await.0.unwrap();
    // Past a whole watch since the first sighting, but the lock was renewed meanwhile.
    tokio::time::sleep(short + LEASE_MARGIN + std::time::Duration::from_millis(500)).await;
    let (second, took) = contend(&store, &target, Some(first), start).await;
    assert!(matches!(took, Err(LockError::Held { .. })), "renewed: {took:?}");
    // The holder is gone (no renewal): a whole watch later the contender takes over.
    tokio::time::sleep(short + LEASE_MARGIN + std::time::Duration::from_millis(500)).await;
    let (_, took) = contend(&store, &target, Some(second), start).await;
    assert_eq!(took, Ok(holder + 1));
    update(&store, |d| d.release(holder + 1)).await;
    // The agent's default identity is the swarm's own node certificate: the real files, key
    // headers and all, serve mutual TLS, and the manager's certificate passes authorization.
    let dir = d.certificates();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let key =
        swarm_upgrade::wire::auth::strip_pem_headers("swarm-node.key", &read("swarm-node.key"))
            .unwrap();
    let (cert, ca) = (read("swarm-node.crt"), read("swarm-root-ca.crt"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
    let me = swarm_upgrade::wire::auth::authorize(Some(&pem.contents), &snap.cluster_id).unwrap();
    assert_eq!(
        (me.node_id.as_str(), me.role.as_str()),
        (snap.nodes[0].id.0.as_str(), "swarm-manager")
    );
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&cert, &key))
        .client_ca_root(tonic::transport::Certificate::from_pem(&ca));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = swarm_upgrade::agent::service::AgentService::new(
        NoWork(me.node_id.clone()),
        snap.cluster_id.clone(),
        false,
    );
    let server =
        tokio::spawn(swarm_upgrade::agent::service::serve(service, listener, Some(tls), async {
            let _ = stopped.await;
        }));
    let client_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .identity(tonic::transport::Identity::from_pem(&cert, &key))
        .domain_name(snap.nodes[0].id.0.clone());
    let channel = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(client_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = swarm_upgrade::wire::pb::agent_client::AgentClient::new(channel)
        .health(swarm_upgrade::wire::pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.cluster_id, snap.cluster_id);
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // End to end on real parts: `swarm-upgrade agent` on this node (its swarm certificate, real
    // apt and dpkg, the real engine), and a live `swarm-upgrade plan` through the Docker API and
    // the agent over mutual TLS. The node's engine package here is Debian's docker.io.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = std::env::temp_dir().join(format!("su-live-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "[packages]\nengine = [\"docker.io\"]\ncompanions = [\"containerd\", \"runc\"]\n[agent]\nport = {port}\ncertificates_dir = \"{}\"\nstate_dir = \"{}\"\n",
            dir.display(),
            dir.join("agent-state").display()
        ),
    )
    .unwrap();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args(["--config", cfg.to_str().unwrap(), "agent"])
        .env("DOCKER_HOST", &d.host)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "the agent did not listen");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let installed = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "docker.io"])
        .output()
        .unwrap();
    let installed = String::from_utf8(installed.stdout).unwrap();
    let live_plan = |to: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
            .args(["--config", cfg.to_str().unwrap(), "plan", "--allow-single-manager", "--to", to])
            .env("DOCKER_HOST", &d.host)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = live_plan(&installed);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("Nothing to do") && out.contains(&format!("(already at {installed})")),
        "{out}"
    );
    let (code, _, err) = live_plan("99.0-1");
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "docker.io 99.0-1 is not in the repository on {}",
            snap.nodes[0].hostname
        )),
        "{err}"
    );
    // A snapshot carries the agents' reports, so planning it offline gives the same answer.
    let file = std::env::temp_dir().join(format!("su-snapshot-{}.json", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args(["--config", cfg.to_str().unwrap(), "snapshot", "--out", file.to_str().unwrap()])
        .env("DOCKER_HOST", &d.host)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: swarm_upgrade::model::ClusterSnapshot =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(saved.services.iter().any(|s| s.name == "solo"));
    let report =
        saved.agent_report(&saved.nodes[0].id).expect("the agent's report is in the snapshot");
    assert_eq!(
        report.installed.get("docker.io").map(ToString::to_string).as_deref(),
        Some(installed.as_str())
    );
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "plan",
            "--snapshot",
            file.to_str().unwrap(),
            "--allow-single-manager",
            "--to",
            &installed,
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&offline.stdout).contains("Nothing to do"),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    std::fs::remove_file(&file).unwrap();
    std::process::Command::new("kill").args(["-TERM", &agent.id().to_string()]).status().unwrap();
    let status = agent.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "the agent stops cleanly on SIGTERM: {status:?}\n{log}");
    assert!(log.contains("agent listening"), "{log}");
    std::fs::remove_file(&cfg).unwrap();

    a_fleet_sized_record(&store, &docker, &bin).await;
}

/// The binary run with arguments: exit code, stdout, stderr.
type Bin<'a> = dyn Fn(&[&str]) -> (Option<i32>, String, String) + 'a;

/// The shard configs of a run, as (ID, version index, bytes of labels).
async fn shards_of(docker: &bollard::Docker, run: &str) -> Vec<(String, u64, usize)> {
    let filter = format!("{RUN_LABEL}={run}");
    let options = bollard::query_parameters::ListConfigsOptions {
        filters: Some([("label".to_string(), vec![filter])].into()),
    };
    let mut out: Vec<_> = docker
        .list_configs(Some(options))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            let labels = c.spec.unwrap().labels.unwrap();
            let bytes = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
            (c.id.unwrap(), c.version.unwrap().index.unwrap(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// A 2,500-node run record through the real store: every write within the budget, read back
/// whole (by the binary too), resumed from by another coordinator with only the header and one
/// shard rewritten, and its shards removed when the next run starts.
async fn a_fleet_sized_record(store: &SwarmLabelStore, docker: &bollard::Docker, bin: &Bin<'_>) {
    let mut run = StoreDoc::from_json(include_str!("fixtures/store/v1-interrupted.json"))
        .unwrap()
        .run
        .unwrap();
    let like = run.nodes.clone();
    run.id = "fleet-2500".into();
    run.nodes = (0..2500)
        .map(|i| {
            let mut n = like[i % like.len()].clone();
            n.hostname = format!("worker{i:04}");
            n.node = NodeId(format!("{i:025}"));
            n
        })
        .collect();
    // Its coordinator is gone (the lock broken), as after a crash and `unlock --force`.
    update(store, |d| {
        d.lock = None;
        d.run = Some(run.clone());
    })
    .await;
    let written = shards_of(docker, "fleet-2500").await;
    assert_eq!(written.len(), 2500usize.div_ceil(SHARD_NODES));
    let largest = written.iter().map(|s| s.2).max().unwrap();
    let swarm = docker.inspect_swarm().await.unwrap();
    let header = swarm.spec.unwrap().labels.unwrap()[STATE_LABEL].len();
    assert!(largest <= WRITE_BUDGET && header <= WRITE_BUDGET, "{largest} and {header} bytes");
    eprintln!(
        "2,500-node record: header {header} bytes, {} shards, the largest {largest} bytes",
        written.len()
    );
    let read = store.load().await.unwrap().doc;
    assert_eq!(read.run.as_ref().unwrap(), &run, "read back whole");
    let (code, out, err) = bin(&["status", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["run"]["nodes"].as_array().map(Vec::len), Some(2500));

    // Another coordinator resumes it: the lock and the node in progress are written, nothing else.
    let target = run.target.clone();
    let now = jiff::Timestamp::now();
    let resume = |d: &mut StoreDoc| {
        let token = d.acquire(
            "manager2/2",
            "fleet-2500",
            &target,
            std::time::Duration::from_secs(60),
            now,
            None,
        );
        let r = d.run.as_mut().unwrap();
        let n = r.nodes.iter_mut().find(|n| !n.phase.is_terminal() && n.phase != Phase::Pending);
        n.expect("the record has a node in progress").resumed(now);
        token
    };
    let mut expected = read.clone();
    let token = resume(&mut expected).unwrap();
    assert_eq!(update(store, resume).await.0, Ok(token));
    let after = shards_of(docker, "fleet-2500").await;
    let rewritten: Vec<_> = written.iter().zip(&after).filter(|(a, b)| a.1 != b.1).collect();
    assert_eq!(rewritten.len(), 1, "one shard rewritten: {rewritten:?}");
    assert_eq!(store.load().await.unwrap().doc, expected);
    read_once(store, docker).await;

    // The next run's first write removes this one's shards.
    update(store, |d| {
        let r = d.run.as_mut().unwrap();
        r.id = "next".into();
        r.nodes.truncate(3);
        d.lock = None;
    })
    .await;
    assert!(shards_of(docker, "fleet-2500").await.is_empty(), "the old run's shards are gone");
    assert_eq!(shards_of(docker, "next").await.len(), 1);
    assert_eq!(store.load().await.unwrap().doc.run.unwrap().nodes.len(), 3);
}

/// How many loads of the run record read `what` (`header` or `whole`), from this process's
/// metrics.
fn loads(what: &str) -> u64 {
    let line = format!("swarm_upgrade_store_loads_total{{read=\"{what}\"}} ");
    let text = swarm_upgrade::metrics::render();
    text.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.parse().unwrap())
}

/// The 2,500-node record is read once: while the header is the one this store last read or
/// wrote, a load reads only the header and gives what a fresh reader reads. A shard written by
/// another writer without the header (a coordinator that lost the lock and has not noticed) is
/// not seen until this store writes that shard: the write is refused, and its retry reads the
/// whole record again, so no write is lost. A header written by another is seen at once.
async fn read_once(store: &SwarmLabelStore, docker: &bollard::Docker) {
    let (header, whole) = (loads("header"), loads("whole"));
    let cached = store.load().await.unwrap();
    assert_eq!((loads("header"), loads("whole")), (header + 1, whole), "the header only");
    let other = SwarmLabelStore::new(docker.clone());
    let fresh = other.load().await.unwrap();
    assert_eq!(loads("whole"), whole + 1, "a new store reads the whole record");
    assert_eq!(cached.doc, fresh.doc, "what is known is what is stored");

    // The other writes node 0's shard only; this store then changes node 1 (the same shard).
    let mut stale = fresh.doc.clone();
    stale.run.as_mut().unwrap().nodes[0].hostname = "renamed-by-the-other".into();
    other.save(&stale, &fresh.version).await.unwrap();
    update(store, |d| d.run.as_mut().unwrap().nodes[1].hostname = "renamed-here".into()).await;
    let fresh = SwarmLabelStore::new(docker.clone());
    let both = fresh.load().await.unwrap().doc.run.unwrap();
    assert_eq!(both.nodes[0].hostname, "renamed-by-the-other", "the other's write is kept");
    assert_eq!(both.nodes[1].hostname, "renamed-here");

    // The other writes the header (an operator's abort): this store reads it at once.
    update(&other, |d| d.run.as_mut().unwrap().abort_requested = true).await;
    let whole = loads("whole");
    assert!(store.load().await.unwrap().doc.run.unwrap().abort_requested);
    assert_eq!(loads("whole"), whole + 1, "a header someone else wrote: the whole record read");
}

/// A backend for identity checks only: it does no node work; its swarm's one manager is named.
struct NoWork(String);

impl swarm_upgrade::agent::service::NodeBackend for NoWork {
    fn describe(
        &self,
        _: &[String],
        _: bool,
    ) -> Result<swarm_upgrade::model::AgentReport, NodeError> {
        Err(NodeError::Invalid("not used".into()))
    }
    fn prefetch(
        &self,
        _: &swarm_upgrade::model::PackageSet,
        _: &swarm_upgrade::ports::OpKey,
    ) -> Result<(), NodeError> {
        Err(NodeError::Invalid("not used".into()))
    }
    fn upgrade(
        &self,
        _: &swarm_upgrade::model::PackageSet,
        _: &swarm_upgrade::ports::OpKey,
        _: bool,
    ) -> Result<(), NodeError> {
        Err(NodeError::Invalid("not used".into()))
    }
    fn restart_engine(&self, _: &swarm_upgrade::ports::OpKey) -> Result<(), NodeError> {
        Err(NodeError::Invalid("not used".into()))
    }
    fn rollback(
        &self,
        _: &swarm_upgrade::model::PackageSet,
        _: &swarm_upgrade::ports::OpKey,
    ) -> Result<(), NodeError> {
        Err(NodeError::Invalid("not used".into()))
    }
    fn rejoin(&self, _: &swarm_upgrade::ports::Secret, _: &[String]) -> Result<String, NodeError> {
        Err(NodeError::Invalid("not used".into()))
    }
    fn hooks(&self) -> Vec<swarm_upgrade::model::hooks::HookStatus> {
        vec![]
    }
    fn run_hook(
        &self,
        _: swarm_upgrade::model::hooks::HookPoint,
        _: &[(String, String)],
    ) -> Result<Option<swarm_upgrade::model::hooks::HookRun>, NodeError> {
        Ok(None)
    }
    fn node_id(&self) -> String {
        "real-swarm-node".into()
    }
    fn managers(&self) -> Option<swarm_upgrade::agent::service::Managers> {
        Some(swarm_upgrade::agent::service::Managers {
            ids: [self.0.clone()].into(),
            addrs: Default::default(),
        })
    }
}

/// A node's scope read with the API's filters holds what the whole snapshot's scope holds, for a
/// replicated service, a global one, both, and none, on the node and on a node gone from the
/// swarm; an ID given as a prefix reads nothing.
async fn scoped_reads_hold_what_the_whole_snapshot_scopes(
    d: &Dockerd,
    swarm: &DockerSwarm,
    node: &swarm_upgrade::model::NodeId,
    solo: &swarm_upgrade::model::ServiceId,
) {
    use swarm_upgrade::model::{ClusterSnapshot, NodeId, ServiceId};
    let gone = NodeId("0123456789abcdefghijklmno".into());
    let args = ["--mode", "global", "su-busybox:1", "/bin/sleep", "100000"];
    d.cli(&[&["service", "create", "-q", "--detach", "--name", "glob"][..], &args].concat())
        .unwrap();
    wait_for(swarm, "glob running", |s| {
        s.tasks.iter().filter(|t| t.state == TaskState::Running).count() >= 2
    })
    .await;
    let glob = swarm
        .snapshot()
        .await
        .unwrap()
        .services
        .iter()
        .find(|s| s.name == "glob")
        .unwrap()
        .id
        .clone();
    let parts = |s: ClusterSnapshot| {
        let mut p = (s.nodes, s.services, s.tasks);
        p.0.sort_by(|a, b| a.id.cmp(&b.id));
        p.1.sort_by(|a, b| a.id.cmp(&b.id));
        p.2.sort_by(|a, b| a.id.cmp(&b.id));
        p
    };
    for services in
        [vec![solo.clone()], vec![glob.clone()], vec![solo.clone(), glob.clone()], vec![]]
    {
        let read = swarm.scoped(node, &services).await.unwrap();
        let whole = swarm.snapshot().await.unwrap();
        assert!(!read.tasks.is_empty() && !read.nodes.is_empty(), "{services:?}: {read:?}");
        assert_eq!(parts(read), parts(whole.scoped(node, &services)), "{services:?}");
        // A node gone from the swarm (one that rejoined under a new ID) is not filtered on: the
        // engine would answer 404 for it.
        let read = swarm.scoped(&gone, &services).await.unwrap();
        assert_eq!(parts(read), parts(whole.scoped(&gone, &services)), "gone, {services:?}");
    }
    let prefix = ServiceId(solo.0[..6].to_string());
    assert!(swarm.scoped(&gone, &[prefix]).await.unwrap().services.is_empty());
    d.cli(&["service", "rm", "glob"]).unwrap();
}
