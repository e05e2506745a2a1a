//! The agent's gRPC service in-process on 127.0.0.1:0 over mutual TLS, with certificates shaped
//! like swarm node certificates (`O=<cluster>, OU=swarm-manager|swarm-worker, CN=<node id>`,
//! ECDSA P-256, DNS SANs role and node id): a manager of the same swarm is obeyed; a worker, a
//! manager of another cluster and a certificate from another swarm's CA are refused; a stale
//! fencing token is refused; a repeated order is not carried out twice; an order whose run ID is
//! no safe file name is refused.

use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use swarm_upgrade::adapters::agent_client::GrpcAgents;
use swarm_upgrade::agent::service::{AgentService, Managers, NodeBackend, serve};
use swarm_upgrade::model::hooks::{HookPoint, HookRun, HookStatus};
use swarm_upgrade::model::{AgentReport, PackageSet};
use swarm_upgrade::ports::{AgentTarget, Agents, HookOrder, Lists, OpKey, PortError, Secret};
use swarm_upgrade::wire::error::NodeError;
use swarm_upgrade::wire::pb::agent_client::AgentClient;
use swarm_upgrade::wire::pb::{self, Fence, Order};
use swarm_upgrade::wire::tls::TlsMaterial;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};

struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca { cert_pem: cert.pem(), issuer: Issuer::new(p, key) }
}

/// A swarm node certificate: (cert PEM, key PEM).
fn node_cert(ca: &Ca, cluster: &str, role: &str, node: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![role.to_string(), node.to_string()]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, cluster);
    p.distinguished_name.push(DnType::OrganizationalUnitName, role);
    p.distinguished_name.push(DnType::CommonName, node);
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Recorder {
    calls: Arc<Mutex<Vec<String>>>,
    /// How many rollbacks from now find apt's lock held.
    busy_rollbacks: Arc<Mutex<u32>>,
    /// The swarm's managers as the node's engine sees them (`None`: it cannot say).
    managers: Arc<Mutex<Option<Managers>>>,
    /// How long a prefetch takes.
    prefetch_takes: std::time::Duration,
    /// How many prefetches from now fail (a mirror down for a while).
    failed_prefetches: Arc<Mutex<u32>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            calls: Arc::default(),
            busy_rollbacks: Arc::default(),
            managers: Arc::new(Mutex::new(Some(managers(&["manager1-id"])))),
            prefetch_takes: std::time::Duration::ZERO,
            failed_prefetches: Arc::default(),
        }
    }
}

fn managers(ids: &[&str]) -> Managers {
    Managers {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        addrs: ["10.0.0.1:2377".to_string()].into(),
    }
}

impl NodeBackend for Recorder {
    fn describe(&self, _: &[String], refresh: bool) -> Result<AgentReport, NodeError> {
        self.calls.lock().unwrap().push(format!("describe refresh={refresh}"));
        Ok(AgentReport { engine_active: true, disk_free_bytes: 42, ..Default::default() })
    }
    fn prefetch(&self, set: &PackageSet, _: &OpKey) -> Result<(), NodeError> {
        self.calls.lock().unwrap().push(format!("prefetch {set}"));
        std::thread::sleep(self.prefetch_takes);
        let mut failing = self.failed_prefetches.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return Err(NodeError::Failed("E: Failed to fetch docker-ce.deb  503".into()));
        }
        Ok(())
    }
    fn upgrade(&self, set: &PackageSet, op: &OpKey, backup: bool) -> Result<(), NodeError> {
        let backup = if backup { " after a backup" } else { "" };
        self.calls.lock().unwrap().push(format!("upgrade {set} within {:?}{backup}", op.limit));
        Ok(())
    }
    fn restart_engine(&self, _: &swarm_upgrade::ports::OpKey) -> Result<(), NodeError> {
        self.calls.lock().unwrap().push("restart".into());
        Err(NodeError::Failed("job for docker.service failed (result: failed)".into()))
    }
    fn rollback(&self, _: &PackageSet, _: &OpKey) -> Result<(), NodeError> {
        self.calls.lock().unwrap().push("rollback".into());
        let mut busy = self.busy_rollbacks.lock().unwrap();
        if *busy > 0 {
            *busy -= 1;
            return Err(NodeError::Busy(
                "E: Could not get lock /var/lib/dpkg/lock-frontend".into(),
            ));
        }
        Ok(())
    }
    fn rejoin(&self, _: &Secret, _: &[String]) -> Result<String, NodeError> {
        Ok("new-id".into())
    }
    fn hooks(&self) -> Vec<HookStatus> {
        vec![]
    }
    fn run_hook(
        &self,
        point: HookPoint,
        env: &[(String, String)],
    ) -> Result<Option<HookRun>, NodeError> {
        if point == HookPoint::OnFailure {
            return Ok(None);
        }
        let told: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.calls.lock().unwrap().push(format!("hook {}", point.name()));
        Ok(Some(HookRun {
            point,
            command: "/etc/swarm-upgrade/hooks/lb".into(),
            exit: Some(if point == HookPoint::AfterVerify { 2 } else { 0 }),
            timed_out: false,
            signal: None,
            millis: 5,
            output: told.join("\n"),
        }))
    }
    fn node_id(&self) -> String {
        "worker1-id".into()
    }
    fn managers(&self) -> Option<Managers> {
        self.managers.lock().unwrap().clone()
    }
}

async fn client(
    port: u16,
    ca: &Ca,
    cert: &(String, String),
) -> Result<AgentClient<Channel>, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert_pem))
        .identity(Identity::from_pem(&cert.0, &cert.1))
        .domain_name("worker1-id");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AgentClient::new(channel))
}

fn order(token: u64) -> Order {
    Order {
        fence: Some(Fence { run_id: "run-1".into(), token }),
        packages: vec![pb::Package {
            name: "docker-ce".into(),
            version: "5:28.5.2-1~debian.13~trixie".into(),
        }],
        backup_swarm: false,
        again: false,
    }
}

async fn last(mut s: tonic::Streaming<pb::Progress>) -> Result<pb::Progress, tonic::Status> {
    let mut last = None;
    while let Some(m) = s.message().await? {
        last = Some(m);
    }
    Ok(last.expect("the stream ends with a message"))
}

#[tokio::test]
async fn only_managers_of_the_same_swarm_are_obeyed_and_tokens_fence_orders() {
    let swarm_ca = ca("swarm-ca");
    let other_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let backend = Recorder::default();
    let calls = backend.calls.clone();
    *backend.busy_rollbacks.lock().unwrap() = 1;
    let service = AgentService::new(backend, "cluster-a", false);
    let (port, stop, server) = start(service, &agent_cert, &swarm_ca).await;

    // A manager of the same swarm is obeyed.
    let manager = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id");
    let mut m = client(port, &swarm_ca, &manager).await.unwrap();
    let health = m.health(pb::HealthRequest {}).await.unwrap().into_inner();
    assert_eq!((health.node_id.as_str(), health.cluster_id.as_str()), ("worker1-id", "cluster-a"));
    assert_eq!(
        m.describe(pb::DescribeRequest { packages: vec![], refresh: false })
            .await
            .unwrap()
            .into_inner()
            .disk_free_bytes,
        42
    );
    let done = last(m.upgrade(order(5)).await.unwrap().into_inner()).await.unwrap();
    assert!(done.done && done.message.starts_with("installed docker-ce="), "{done:?}");

    // The same order again is answered, not carried out twice.
    last(m.upgrade(order(5)).await.unwrap().into_inner()).await.unwrap();
    assert_eq!(calls.lock().unwrap().iter().filter(|c| c.starts_with("upgrade")).count(), 1);

    // A failed operation streams its failure.
    let e = last(m.restart_engine(order(5)).await.unwrap().into_inner()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Aborted);
    assert!(e.message().contains("docker.service failed"), "{e}");
    // The same restart again is answered from memory; a restart *again* (a node that stays
    // Down) is carried out.
    let restarts = || calls.lock().unwrap().iter().filter(|c| *c == "restart").count();
    let _ = last(m.restart_engine(order(5)).await.unwrap().into_inner()).await;
    assert_eq!(restarts(), 1);
    let again = Order { again: true, ..order(5) };
    let _ = last(m.restart_engine(again).await.unwrap().into_inner()).await;
    assert_eq!(restarts(), 2);

    // A newer coordinator took over: the old token is refused, the backend not called.
    last(m.prefetch(order(6)).await.unwrap().into_inner()).await.unwrap();
    let e = m.upgrade(order(5)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("stale fencing token 5"), "{e}");
    assert_eq!(calls.lock().unwrap().iter().filter(|c| c.starts_with("upgrade")).count(), 1);

    // A worker of the same swarm is refused.
    let worker = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker2-id");
    let e = client(port, &swarm_ca, &worker)
        .await
        .unwrap()
        .health(pb::HealthRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("worker2-id is a swarm-worker, not a swarm-manager"), "{e}");

    // A manager certificate naming another cluster is refused.
    let stranger = node_cert(&swarm_ca, "cluster-b", "swarm-manager", "manager9-id");
    let e = client(port, &swarm_ca, &stranger)
        .await
        .unwrap()
        .health(pb::HealthRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        e.message().contains("belongs to cluster cluster-b, not to this node's cluster cluster-a"),
        "{e}"
    );

    // A manager of another swarm (another root CA) does not get through the TLS handshake.
    let foreign = node_cert(&other_ca, "cluster-a", "swarm-manager", "manager1-id");
    let refused = match client(port, &swarm_ca, &foreign).await {
        Err(_) => true,
        Ok(mut c) => c.health(pb::HealthRequest {}).await.is_err(),
    };
    assert!(refused, "a certificate from another swarm's CA must be refused");

    // The coordinator's side: the `Agents` port over gRPC maps outcomes to what the coordinator
    // acts on (Failed ends the node's phase, Unavailable is retried).
    let material = manager1_material(&manager, &swarm_ca);
    let agents = GrpcAgents::new(Some(material.clone()), port, vec!["docker-ce".into()]);
    let target = AgentTarget {
        hostname: "worker1".into(),
        addr: "127.0.0.1".into(),
        node_id: "worker1-id".into(),
    };
    calls.lock().unwrap().retain(|c| !c.starts_with("describe"));
    assert_eq!(agents.describe(&target, Lists::AsTheyAre).await.unwrap().disk_free_bytes, 42);
    agents.describe(&target, Lists::Refresh).await.unwrap();
    assert_eq!(
        calls.lock().unwrap().drain(..).filter(|c| c.starts_with("describe")).collect::<Vec<_>>(),
        ["describe refresh=false", "describe refresh=true"],
        "whether to refresh the lists reaches the agent"
    );
    let op = |token| OpKey { run_id: "run-2".into(), token, limit: None };
    let set = PackageSet(
        [("docker-ce".to_string(), "5:28.5.2-1~debian.13~trixie".parse().unwrap())].into(),
    );
    // The order's time limit travels as gRPC's deadline; the agent keeps a margin to answer.
    let limited = OpKey { limit: Some(std::time::Duration::from_secs(60)), ..op(7) };
    agents.upgrade(&target, &set, &limited, false).await.unwrap();
    let upgraded = calls.lock().unwrap().last().cloned().unwrap();
    assert!(upgraded.ends_with("within Some(55s)"), "{upgraded}");
    // A manager's backup is asked for in the order itself.
    let another = OpKey { run_id: "run-3".into(), ..limited.clone() };
    agents.upgrade(&target, &set, &another, true).await.unwrap();
    let upgraded = calls.lock().unwrap().last().cloned().unwrap();
    assert!(upgraded.ends_with("within Some(55s) after a backup"), "{upgraded}");
    match agents.restart_engine(&target, &op(7)).await {
        Err(PortError::Failed(m)) => {
            assert!(m.starts_with("agent on worker1: job for docker.service failed"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // A busy node is a kind of its own, and its order is carried out again when retried (a
    // failure is remembered, a busy node changed nothing).
    match agents.rollback(&target, &set, &op(7)).await {
        Err(PortError::Busy(m)) => {
            assert!(m.starts_with("agent on worker1: E: Could not get lock"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    agents.rollback(&target, &set, &op(7)).await.unwrap();
    assert_eq!(calls.lock().unwrap().iter().filter(|c| *c == "rollback").count(), 2);
    match agents.prefetch(&target, &set, &op(6)).await {
        Err(PortError::Stale(m)) => assert!(m.contains("stale fencing token 6"), "{m}"),
        other => panic!("{other:?}"),
    }
    let closed = GrpcAgents::new(Some(material), free_port(), vec![]);
    match closed.describe(&target, Lists::AsTheyAre).await {
        Err(PortError::Unavailable(m)) => {
            assert!(
                m.contains("agent on worker1")
                    && m.contains("systemctl status swarm-upgrade-agent"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

type Server = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Serves `service` on 127.0.0.1:0 with `cert`, trusting `ca` for clients; the port, the stop
/// switch and the server task.
async fn start(
    service: AgentService<Recorder>,
    cert: &(String, String),
    ca: &Ca,
) -> (u16, tokio::sync::oneshot::Sender<()>, Server) {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert.0, &cert.1))
        .client_ca_root(Certificate::from_pem(&ca.cert_pem));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(service, listener, Some(tls), async {
        let _ = stopped.await;
    }));
    (port, stop, server)
}

/// manager1's TLS material in cluster-a, for the coordinator's side.
fn manager1_material(manager: &(String, String), swarm_ca: &Ca) -> TlsMaterial {
    TlsMaterial {
        cert: manager.0.clone(),
        key: manager.1.clone(),
        ca: swarm_ca.cert_pem.clone(),
        cluster: "cluster-a".into(),
        node_id: "manager1-id".into(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn the_fencing_token_survives_an_agent_restart() {
    let swarm_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let manager = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id");
    let file = std::env::temp_dir().join(format!("su-fence-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    for (token, accepted) in [(9, true), (8, false)] {
        // A fresh service each time: the agent restarted in between.
        let service = AgentService::new(Recorder::default(), "cluster-a", false)
            .with_fence_file(&file)
            .unwrap();
        let (port, stop, server) = start(service, &agent_cert, &swarm_ca).await;
        let result = client(port, &swarm_ca, &manager).await.unwrap().prefetch(order(token)).await;
        assert_eq!(result.is_ok(), accepted, "token {token}: {:?}", result.err());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
    // A token that cannot be recorded is not admitted: the order is busy, and the next order
    // with a lower token is judged against what was recorded, not refused as stale.
    let dir = std::env::temp_dir().join(format!("su-fence-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let service = AgentService::new(Recorder::default(), "cluster-a", false)
        .with_fence_file(dir.join("fence.json"))
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let (port, stop, server) = start(service, &agent_cert, &swarm_ca).await;
    let mut m = client(port, &swarm_ca, &manager).await.unwrap();
    for token in [9, 8] {
        let e = m.prefetch(order(token)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "token {token}: {e}");
        assert!(e.message().contains("cannot record the fencing token"), "{e}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    std::fs::write(&file, "garbage").unwrap();
    let e = AgentService::new(Recorder::default(), "cluster-a", false)
        .with_fence_file(&file)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a fence record"), "{e}");
    std::fs::remove_file(&file).unwrap();
}

/// A run ID names files and units on the node, and comes from a store any manager can write: one
/// that is no safe name is refused as an invalid order, before its token counts or is recorded.
#[tokio::test]
async fn an_order_whose_run_id_is_no_safe_name_is_refused_before_it_is_fenced() {
    let swarm_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let manager = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id");
    let file = std::env::temp_dir().join(format!("su-fence-runid-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let backend = Recorder::default();
    let calls = backend.calls.clone();
    let service = AgentService::new(backend, "cluster-a", false).with_fence_file(&file).unwrap();
    let (port, stop, server) = start(service, &agent_cert, &swarm_ca).await;
    let mut m = client(port, &swarm_ca, &manager).await.unwrap();
    for bad in ["../../etc/cron.d/x", "", ".hidden", "a b"] {
        let mut o = order(9);
        o.fence.as_mut().unwrap().run_id = bad.into();
        let e = m.upgrade(o).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}: {e}");
        assert!(e.message().contains(&format!("run ID {bad:?} ")), "{e}");
        let join = pb::JoinOrder {
            fence: Some(Fence { run_id: bad.into(), token: 9 }),
            ..Default::default()
        };
        assert_eq!(m.rejoin(join).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
    assert!(calls.lock().unwrap().is_empty(), "nothing was carried out");
    assert!(!file.exists(), "token 9 was not recorded");
    // Nor did it count: an order with a lower token and a valid run ID is obeyed.
    last(m.prefetch(order(3)).await.unwrap().into_inner()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"highest\":3}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn a_rotated_certificate_is_picked_up_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("su-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let install = |ca: &Ca| {
        let (cert, key) = node_cert(ca, "cluster-a", "swarm-worker", "worker1-id");
        std::fs::write(dir.join("swarm-node.crt"), cert).unwrap();
        std::fs::write(dir.join("swarm-node.key"), key).unwrap();
        std::fs::write(dir.join("swarm-root-ca.crt"), &ca.cert_pem).unwrap();
    };
    let (old_ca, new_ca) = (ca("swarm-ca"), ca("swarm-ca"));
    install(&old_ca);
    let mut settings = swarm_upgrade::config::Settings::default().agent;
    settings.certificates_dir = dir.clone();
    let port = free_port();
    let service = Arc::new(AgentService::new(Recorder::default(), "cluster-a", false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s2 = settings.clone();
    let server = tokio::spawn(async move {
        let load = || swarm_upgrade::wire::tls::load(&s2);
        let stamp = || swarm_upgrade::wire::tls::stamp(&s2);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        swarm_upgrade::agent::service::serve_reloading(
            service,
            addr,
            load,
            stamp,
            std::time::Duration::from_millis(100),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    let healthy = |ca: &'static Ca| async move {
        let manager = node_cert(ca, "cluster-a", "swarm-manager", "manager1-id");
        for _ in 0..50 {
            if let Ok(mut c) = client(port, ca, &manager).await
                && c.health(pb::HealthRequest {}).await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    let (old_ca, new_ca): (&'static Ca, &'static Ca) =
        (Box::leak(Box::new(old_ca)), Box::leak(Box::new(new_ca)));
    assert!(healthy(old_ca).await, "serves on the first certificate");
    // A CA rotation: new node certificate, new root.
    install(new_ca);
    assert!(healthy(new_ca).await, "serves on the rotated certificate");
    let manager = node_cert(old_ca, "cluster-a", "swarm-manager", "manager1-id");
    let stale = match client(port, old_ca, &manager).await {
        Err(_) => true,
        Ok(mut c) => c.health(pb::HealthRequest {}).await.is_err(),
    };
    assert!(stale, "the old root is no longer trusted");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Another swarm's root CA.
fn other_swarm_ca() -> Ca {
    ca("swarm-ca")
}

/// An order naming these packages.
fn order_of(token: u64, names: &[&str]) -> Order {
    Order {
        fence: Some(Fence { run_id: "run-1".into(), token }),
        packages: names
            .iter()
            .map(|n| pb::Package { name: n.to_string(), version: "1.0".into() })
            .collect(),
        backup_swarm: false,
        again: false,
    }
}

/// A manager certificate is not enough: the caller must be among the swarm's managers as the
/// node's engine sees them now (the last view is kept while the engine cannot say); and orders
/// name only the node's configured packages, never an apt option.
#[tokio::test]
async fn only_current_managers_are_obeyed_and_only_for_our_packages() {
    let swarm_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let backend = Recorder::default();
    let (calls, view) = (backend.calls.clone(), backend.managers.clone());
    let service = AgentService::new(backend, "cluster-a", false)
        .with_packages(["docker-ce".to_string(), "containerd.io".to_string()]);
    service.trust_ca(&swarm_ca.cert_pem);
    let (port, stop, server) = start(service, &agent_cert, &swarm_ca).await;
    let manager1 = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id");
    // Demoted or removed: its certificate still says swarm-manager for up to 90 days.
    let former = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager2-id");
    let mut m = client(port, &swarm_ca, &manager1).await.unwrap();
    let mut f = client(port, &swarm_ca, &former).await.unwrap();
    m.health(pb::HealthRequest {}).await.unwrap();
    let refused = |e: tonic::Status| {
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        assert!(
            e.message().contains(
                "manager2-id holds a manager certificate but is not among the swarm's managers now"
            ),
            "{e}"
        );
    };
    refused(f.health(pb::HealthRequest {}).await.unwrap_err());
    refused(f.upgrade(order(3)).await.unwrap_err());

    // The engine restarting cannot say: its last view still decides.
    *view.lock().unwrap() = None;
    m.health(pb::HealthRequest {}).await.unwrap();
    refused(f.health(pb::HealthRequest {}).await.unwrap_err());
    // manager2 promoted again: obeyed once the engine says so.
    *view.lock().unwrap() = Some(managers(&["manager1-id", "manager2-id"]));
    f.health(pb::HealthRequest {}).await.unwrap();

    // Package names: an apt option, or a package that is not ours, is refused before anything.
    let invalid = |e: tonic::Status, needle: &str| {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains(needle), "{needle}: {e}");
    };
    invalid(
        m.upgrade(order_of(4, &["docker-ce", "-oAPT::Get::Foo=1"])).await.unwrap_err(),
        "\"-oAPT::Get::Foo=1\" is not a Debian package name",
    );
    invalid(
        m.prefetch(order_of(4, &["vim"])).await.unwrap_err(),
        "package vim is not one this agent upgrades (containerd.io, docker-ce)",
    );
    invalid(
        m.describe(pb::DescribeRequest { packages: vec!["--option=x".into()], refresh: false })
            .await
            .unwrap_err(),
        "is not a Debian package name",
    );
    assert!(calls.lock().unwrap().is_empty(), "nothing was carried out: {:?}", calls.lock());
    let done =
        last(m.upgrade(order_of(4, &["docker-ce", "containerd.io"])).await.unwrap().into_inner())
            .await
            .unwrap();
    assert!(done.done, "{done:?}");

    // One order with a huge token would make every real coordinator stale from then on.
    invalid(
        m.upgrade(order_of(u64::MAX, &["docker-ce"])).await.unwrap_err(),
        "refused as implausible",
    );

    // Rejoin: only into the swarm whose CA this node trusts, at its known managers' addresses.
    let join = |ca_pem: &str, managers: &[&str]| pb::JoinOrder {
        fence: Some(Fence { run_id: "run-1".into(), token: 4 }),
        join_token: format!(
            "SWMTKN-1-{}-{}",
            swarm_upgrade::wire::join::ca_digest(ca_pem),
            "1".repeat(25)
        ),
        managers: managers.iter().map(|m| m.to_string()).collect(),
    };
    invalid(
        m.rejoin(join(&other_swarm_ca().cert_pem, &["10.0.0.1:2377"])).await.unwrap_err(),
        "belongs to a swarm with another root CA",
    );
    invalid(
        m.rejoin(join(&swarm_ca.cert_pem, &["203.0.113.9:2377"])).await.unwrap_err(),
        "203.0.113.9:2377 is not a manager address of this node's swarm",
    );
    let joined = m.rejoin(join(&swarm_ca.cert_pem, &["10.0.0.1:2377"])).await.unwrap();
    assert_eq!(joined.into_inner().node_id, "new-id");
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // A fresh agent whose engine cannot say yet: asked to try again, not obeyed blindly.
    let backend = Recorder::default();
    *backend.managers.lock().unwrap() = None;
    let (port, stop, server) =
        start(AgentService::new(backend, "cluster-a", false), &agent_cert, &swarm_ca).await;
    let e = client(port, &swarm_ca, &manager1).await.unwrap().health(pb::HealthRequest {}).await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::Unavailable);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A coordinator whose certificate rotates mid-run calls with the new one from its next call
/// (here: a node promoted to manager, whose worker certificate is replaced by a manager's).
#[tokio::test]
async fn the_coordinator_calls_with_its_rotated_certificate() {
    let swarm_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let service = AgentService::new(Recorder::default(), "cluster-a", false);
    let (port, stop, server) = start(service, &agent_cert, &swarm_ca).await;
    let dir = std::env::temp_dir().join(format!("su-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |cert: &(String, String)| {
        std::fs::write(dir.join("node.crt"), &cert.0).unwrap();
        std::fs::write(dir.join("node.key"), &cert.1).unwrap();
        std::fs::write(dir.join("ca.crt"), &swarm_ca.cert_pem).unwrap();
    };
    write(&node_cert(&swarm_ca, "cluster-a", "swarm-worker", "manager1-id"));
    let mut settings = swarm_upgrade::config::Settings::default().agent;
    settings.custom_tls = Some(swarm_upgrade::config::CustomTls {
        cert: dir.join("node.crt"),
        key: dir.join("node.key"),
        ca: dir.join("ca.crt"),
    });
    let material = swarm_upgrade::wire::tls::load(&settings).unwrap();
    let agents =
        GrpcAgents::new(Some(material), port, vec!["docker-ce".into()]).reloading(&settings);
    let target = AgentTarget {
        hostname: "worker1".into(),
        addr: "127.0.0.1".into(),
        node_id: "worker1-id".into(),
    };
    match agents.describe(&target, Lists::AsTheyAre).await {
        Err(PortError::Failed(m)) => assert!(m.contains("not a swarm-manager"), "{m}"),
        other => panic!("a worker's certificate is refused: {other:?}"),
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id"));
    assert_eq!(agents.describe(&target, Lists::AsTheyAre).await.unwrap().disk_free_bytes, 42);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_same_order_given_while_it_runs_waits_for_it_and_a_failed_download_is_tried_again() {
    let swarm_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let backend =
        Recorder { prefetch_takes: std::time::Duration::from_millis(500), ..Recorder::default() };
    let (calls, failing) = (backend.calls.clone(), backend.failed_prefetches.clone());
    let (port, stop, server) =
        start(AgentService::new(backend, "cluster-a", false), &agent_cert, &swarm_ca).await;
    let manager = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id");
    let (mut a, mut b) = (
        client(port, &swarm_ca, &manager).await.unwrap(),
        client(port, &swarm_ca, &manager).await.unwrap(),
    );

    // A fetch-ahead and the node's own prefetch, under one fence: both answered, run once.
    let (first, second) = tokio::join!(
        async { last(a.prefetch(order(3)).await.unwrap().into_inner()).await },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            last(b.prefetch(order(3)).await.unwrap().into_inner()).await
        }
    );
    assert_eq!(first.unwrap().message, second.unwrap().message);
    let prefetches = || calls.lock().unwrap().iter().filter(|c| c.starts_with("prefetch")).count();
    assert_eq!(prefetches(), 1);

    // Another token is another order.
    last(a.prefetch(order(4)).await.unwrap().into_inner()).await.unwrap();
    assert_eq!(prefetches(), 2);

    // A failed download is not given again to the same order: the repository is asked again.
    *failing.lock().unwrap() = 1;
    let e = last(a.prefetch(order(5)).await.unwrap().into_inner()).await.unwrap_err();
    assert!(e.message().contains("Failed to fetch"), "{e}");
    last(b.prefetch(order(5)).await.unwrap().into_inner()).await.unwrap();
    assert_eq!(prefetches(), 4);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A hook over gRPC: its environment from the order, its run back as the coordinator's own type,
/// once per order (a retry is answered from memory), a failed one a result, none configured
/// `None`, and a stale token refused.
#[tokio::test]
async fn hooks_are_run_once_per_order_and_their_runs_come_back_whole() {
    let swarm_ca = ca("swarm-ca");
    let agent_cert = node_cert(&swarm_ca, "cluster-a", "swarm-worker", "worker1-id");
    let backend = Recorder::default();
    let calls = backend.calls.clone();
    let (port, stop, server) =
        start(AgentService::new(backend, "cluster-a", false), &agent_cert, &swarm_ca).await;
    let manager = node_cert(&swarm_ca, "cluster-a", "swarm-manager", "manager1-id");
    let mut c = client(port, &swarm_ca, &manager).await.unwrap();
    let hook = |name: &str, token| pb::HookOrder {
        fence: Some(Fence { run_id: "run-1".into(), token }),
        hook: name.into(),
        target: "28.5.2".into(),
        hostname: "worker1".into(),
        reason: String::new(),
    };
    let text = last(c.run_hook(hook("before-drain", 3)).await.unwrap().into_inner()).await.unwrap();
    let ran: Option<HookRun> = serde_json::from_str(&text.message).unwrap();
    let ran = ran.expect("a configured hook ran");
    assert!(ran.succeeded());
    for told in [
        "SWARM_UPGRADE_PHASE=before-drain",
        "SWARM_UPGRADE_RUN=run-1",
        "SWARM_UPGRADE_NODE=worker1",
        "SWARM_UPGRADE_NODE_ID=worker1-id",
        "SWARM_UPGRADE_TARGET=28.5.2",
    ] {
        assert!(ran.output.lines().any(|l| l == told), "{told} in {}", ran.output);
    }
    assert!(!ran.output.contains("SWARM_UPGRADE_REASON"), "only on-failure is told a reason");
    // The same order again: answered from memory.
    last(c.run_hook(hook("before-drain", 3)).await.unwrap().into_inner()).await.unwrap();
    let hooks = || calls.lock().unwrap().iter().filter(|c| c.starts_with("hook")).count();
    assert_eq!(hooks(), 1);
    let e = c.run_hook(hook("before_drain", 3)).await.unwrap_err();
    assert!(e.message().contains("no hook point this agent knows"), "{e}");
    let e = c.run_hook(hook("after-verify", 2)).await.unwrap_err();
    assert!(e.message().starts_with("stale fencing token 2"), "{e}");

    // Through the coordinator's adapter: a failed hook is a result; none configured is None.
    let agents = GrpcAgents::new(
        Some(manager1_material(&manager, &swarm_ca)),
        port,
        vec!["docker-ce".into()],
    );
    let target = AgentTarget {
        hostname: "worker1".into(),
        addr: "127.0.0.1".into(),
        node_id: "worker1-id".into(),
    };
    let op = OpKey { run_id: "run-1".into(), token: 4, limit: None };
    let order = |point| HookOrder { point, target: "28.5.2".into(), reason: "broken".into() };
    let ran = agents.run_hook(&target, &order(HookPoint::AfterVerify), &op).await.unwrap();
    let ran = ran.expect("configured");
    assert_eq!((ran.exit, ran.succeeded()), (Some(2), false));
    assert!(ran.output.contains("SWARM_UPGRADE_PHASE=after-verify"), "{}", ran.output);
    let none = agents.run_hook(&target, &order(HookPoint::OnFailure), &op).await.unwrap();
    assert_eq!(none, None);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
