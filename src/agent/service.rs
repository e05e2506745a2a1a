//! The agent's gRPC service over a node backend: every call is authorized (a manager of our own
//! swarm), every order fenced (a stale token is refused) and idempotent (an order already carried
//! out is answered from memory, not repeated). Long operations stream their progress.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Fence;
use super::error::AgentError;
use crate::model::hooks::{HookPoint, HookRun, HookStatus};
use crate::model::{AgentReport, PackageSet, check_run_id};
use crate::ports::{OpKey, Secret};
use crate::wire::auth::{AuthError, Caller, authorize};
use crate::wire::convert::{package_set, report_to_pb};
use crate::wire::error::NodeError;
use crate::wire::pb;

/// The node-local work behind the service. Blocking: called from blocking tasks.
pub trait NodeBackend: Send + Sync + 'static {
    /// Installed and available versions, repository health, disk, engine and swarm state.
    fn describe(&self, packages: &[String], refresh: bool) -> Result<AgentReport, NodeError>;
    /// Downloads the set. `op` names the order (its transient unit is named after it).
    fn prefetch(&self, set: &PackageSet, op: &OpKey) -> Result<(), NodeError>;
    /// Installs the set in one transaction and holds it; with `backup`, the engine's next start
    /// (the install's own restart, or the Restart phase's) first archives its swarm state (see
    /// [`super::backup`]).
    fn upgrade(&self, set: &PackageSet, op: &OpKey, backup: bool) -> Result<(), NodeError>;
    /// Restarts docker.service and waits for the job's result (at most `op.limit`).
    fn restart_engine(&self, op: &OpKey) -> Result<(), NodeError>;
    /// Restarts docker.service once more, even when it runs what was installed (a node that
    /// stays Down in the swarm's view after its restart).
    fn restart_engine_again(&self, op: &OpKey) -> Result<(), NodeError> {
        self.restart_engine(op)
    }
    /// Reinstalls `previous` and restarts the engine.
    fn rollback(&self, previous: &PackageSet, op: &OpKey) -> Result<(), NodeError>;
    /// Leaves the swarm and joins again; returns the new node ID.
    fn rejoin(&self, token: &Secret, managers: &[String]) -> Result<String, NodeError>;
    /// The hooks this node's configuration names now, each with why it cannot run, if it cannot.
    fn hooks(&self) -> Vec<HookStatus>;
    /// Runs the hook at `point` with `env` added to its environment; `None` when this node
    /// configures none there. A hook that ran and failed is a result, not an error.
    fn run_hook(
        &self,
        point: HookPoint,
        env: &[(String, String)],
    ) -> Result<Option<HookRun>, NodeError>;
    /// This node's ID.
    fn node_id(&self) -> String;
    /// The swarm's managers as the local engine sees them now; `None` when it cannot say (the
    /// engine restarting, or the node out of its swarm).
    fn managers(&self) -> Option<Managers>;
}

/// The swarm's current managers, as one node's engine sees them (`docker info`'s
/// `Swarm.RemoteManagers`, which workers see too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Managers {
    /// Their node IDs: the CN of their certificates.
    pub ids: std::collections::BTreeSet<String>,
    /// Their swarm addresses (`ip:2377`).
    pub addrs: std::collections::BTreeSet<String>,
}

/// How long an authorization waits for the local engine's view before it uses the last one.
const MANAGERS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type DoneKey = (&'static str, String, u64);

/// The service.
pub struct AgentService<B> {
    backend: Arc<B>,
    cluster: String,
    insecure: bool,
    fence: Mutex<Fence>,
    fence_file: Option<std::path::PathBuf>,
    done: Arc<Mutex<BTreeMap<DoneKey, Entry>>>,
    /// The packages orders may name (empty: any well-formed name).
    packages: std::collections::BTreeSet<String>,
    /// The swarm's managers when the engine last said: kept, so that orders given while the
    /// engine itself restarts (the Restart phase, a rollback) are still checked.
    managers: Mutex<Option<Managers>>,
    /// The root CA this node trusts (PEM): a join order must lead into its swarm.
    trusted_ca: Mutex<Option<String>>,
}

impl<B: NodeBackend> AgentService<B> {
    /// A service for the node of cluster `cluster`. `insecure` accepts callers without a
    /// certificate (plaintext labs only; the caller of this logs a warning).
    pub fn new(backend: B, cluster: impl Into<String>, insecure: bool) -> Self {
        AgentService {
            backend: Arc::new(backend),
            cluster: cluster.into(),
            insecure,
            fence: Mutex::default(),
            fence_file: None,
            done: Arc::default(),
            packages: Default::default(),
            managers: Mutex::default(),
            trusted_ca: Mutex::default(),
        }
    }

    /// Trusts `ca_pem` as the swarm's root CA from now on (the agent's TLS material, reloaded
    /// when the swarm rotates its CA).
    pub fn trust_ca(&self, ca_pem: &str) {
        *self.trusted_ca.lock().expect("ca lock") = Some(ca_pem.to_string());
    }

    /// A join order leads only into the swarm whose CA this node trusts, at addresses of its
    /// managers (as the node last saw them): never into another swarm, whatever a caller sends.
    fn check_join(&self, order: &pb::JoinOrder) -> Result<(), Status> {
        let Some(ca) = self.trusted_ca.lock().expect("ca lock").clone() else {
            return Ok(()); // Plaintext labs: no CA, and any caller is obeyed anyway.
        };
        let known = self.managers.lock().expect("managers lock").clone().unwrap_or_default();
        crate::wire::join::check(&order.join_token, &ca, &order.managers, &known.addrs)
            .map_err(|e| NodeError::Invalid(e.to_string()).into())
    }

    /// Obeys only orders and descriptions that name these packages (the node's configured engine,
    /// companion and plugin packages): a caller cannot make the agent install anything else.
    pub fn with_packages(mut self, packages: impl IntoIterator<Item = String>) -> Self {
        self.packages = packages.into_iter().collect();
        self
    }

    /// Refuses a name that is not a Debian package name (an apt option, say) or not ours.
    fn check_packages<'n>(
        &self,
        names: impl IntoIterator<Item = &'n String>,
    ) -> Result<(), Status> {
        for name in names {
            if !crate::model::is_package_name(name) {
                return Err(NodeError::Invalid(format!(
                    "{name:?} is not a Debian package name: refused"
                ))
                .into());
            }
            if !self.packages.is_empty() && !self.packages.contains(name) {
                let ours: Vec<&str> = self.packages.iter().map(String::as_str).collect();
                return Err(NodeError::Invalid(format!(
                    "package {name} is not one this agent upgrades ({}): make packages.engine, packages.companions and packages.plugins the same on the coordinator's manager and on this node (and the agents' version the coordinator's)",
                    ours.join(", ")
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Keeps the newest fencing token in `file`, so an agent restart does not let a coordinator
    /// that lost the lock back in. An unreadable file is an error: guessing 0 would undo fencing.
    pub fn with_fence_file(
        mut self,
        file: impl Into<std::path::PathBuf>,
    ) -> Result<Self, AgentError> {
        let file = file.into();
        let path = file.display().to_string();
        let fence = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| AgentError::FenceRecord { path, why: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Fence::default(),
            Err(e) => return Err(AgentError::State { what: "read", path, why: e.to_string() }),
        };
        self.fence = Mutex::new(fence);
        self.fence_file = Some(file);
        Ok(self)
    }

    /// The caller, if its certificate names a manager of our swarm and the swarm still counts it
    /// among its managers: a manager demoted or removed keeps its certificate for up to 90 days.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Option<Caller>, Status> {
        let certs = req.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let caller = match (leaf, self.insecure) {
            (None, true) => return Ok(None),
            (leaf, _) => authorize(leaf, &self.cluster)
                .map_err(|e| NodeError::Unauthorized(e.to_string()))?,
        };
        let managers = self.current_managers().await.ok_or_else(|| {
            NodeError::Busy(
                "this node cannot see its swarm's managers yet (its engine does not answer, or it is out of its swarm): ask again".into(),
            )
        })?;
        if !managers.ids.contains(&caller.node_id) {
            return Err(NodeError::Unauthorized(format!(
                "caller {} holds a manager certificate but is not among the swarm's managers now (demoted or removed): refused",
                caller.node_id
            ))
            .into());
        }
        Ok(Some(caller))
    }

    /// The managers as the local engine sees them now, or as it last did.
    async fn current_managers(&self) -> Option<Managers> {
        let backend = self.backend.clone();
        let fresh = tokio::time::timeout(
            MANAGERS_WAIT,
            tokio::task::spawn_blocking(move || backend.managers()),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
        let mut cached = self.managers.lock().expect("managers lock");
        if fresh.is_some() {
            *cached = fresh;
        }
        cached.clone()
    }

    fn admit(&self, fence: Option<&pb::Fence>) -> Result<(String, u64), Status> {
        let f = fence.ok_or_else(|| {
            NodeError::Invalid("the order carries no fence (run id and token)".into())
        })?;
        // Checked before the token counts: the run ID names this order's transient units, and a
        // coordinator resuming a run from the store sends whatever a manager wrote there.
        check_run_id(&f.run_id).map_err(|e| {
            NodeError::Invalid(format!(
                "{e}; the order is refused: swarm-upgrade makes valid run IDs, so look at the run in the swarm's store (`swarm-upgrade status`)"
            ))
        })?;
        let mut fence = self.fence.lock().expect("fence lock");
        let mut admitted = fence.clone();
        admitted.admit(f.token).map_err(|e| match e {
            super::FenceError::Stale { .. } => NodeError::Stale(e.to_string()),
            super::FenceError::TooFar { .. } => NodeError::Invalid(e.to_string()),
        })?;
        if let (Some(file), true) = (&self.fence_file, admitted != *fence) {
            // Written before the order is carried out, and before the token counts here: a crash
            // after it cannot forget the token, and a failed write leaves nothing admitted.
            let text = serde_json::to_string(&admitted).expect("fences serialize");
            super::durable::replace(file, text.as_bytes()).map_err(|e| {
                NodeError::Busy(format!(
                    "cannot record the fencing token in {}: {e}",
                    file.display()
                ))
            })?;
        }
        *fence = admitted;
        Ok((f.run_id.clone(), f.token))
    }

    /// Runs `work` once per (operation, run, token) and streams its progress. The same order
    /// given again while it runs (a fetch-ahead and the node's own prefetch, a retry after a
    /// lost stream) waits for its result instead of running it twice: two transactions named
    /// after one order would collide on their transient unit's name.
    fn order(
        &self,
        op: &'static str,
        run: String,
        token: u64,
        work: impl FnOnce(&B) -> Result<String, NodeError> + Send + 'static,
    ) -> ProgressStream {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let key = (op, run, token);
        let done = self.done.clone();
        let backend = self.backend.clone();
        tokio::spawn(async move {
            let result = match Order::of(&done, &key) {
                Order::Done(r) => r,
                Order::Running(mut running) => {
                    let _ = tx.send(Ok(progress(format!("{op} already running: waiting")))).await;
                    match running.wait_for(Option::is_some).await {
                        Ok(r) => r.clone().expect("waited for a result"),
                        Err(_) => Err(NodeError::Busy(format!("{op} was cut short: ask again"))),
                    }
                }
                Order::New(finished) => {
                    let finishing = Finishing { done, key, finished, result: None };
                    let _ = tx.send(Ok(progress(format!("{op} started")))).await;
                    let r = tokio::task::spawn_blocking(move || work(&backend))
                        .await
                        .unwrap_or_else(|e| Err(NodeError::Failed(format!("{op} panicked: {e}"))));
                    count(op, &r);
                    finishing.finish(r)
                }
            };
            let last = match result {
                Ok(m) => Ok(pb::Progress { message: m, done: true }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.send(last).await;
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// Records a running order's result when it ends, however it ends: one whose task ended without
/// a result (a panic) is "cut short", to be asked again, never left running.
struct Finishing {
    done: Arc<Mutex<BTreeMap<DoneKey, Entry>>>,
    key: DoneKey,
    finished: tokio::sync::watch::Sender<Option<Outcome>>,
    result: Option<Outcome>,
}

impl Finishing {
    /// The order ended with `r`.
    fn finish(mut self, r: Outcome) -> Outcome {
        self.result = Some(r.clone());
        r
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        let r = self.result.take().unwrap_or_else(|| {
            Err(NodeError::Busy(format!("{} was cut short: ask again", self.key.0)))
        });
        let mut done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if remembered(self.key.0, &r) {
            done.insert(self.key.clone(), Entry::Done(r.clone()));
        } else {
            done.remove(&self.key);
        }
        self.finished.send_replace(Some(r));
    }
}

/// Whether an order's result is kept and given again to the same order: not when the node was
/// busy (nothing ran), nor a failed download (it changed nothing, and the next prefetch, the
/// node's own after a fetch-ahead, must ask the repository again).
fn remembered(op: &str, r: &Outcome) -> bool {
    match r {
        Ok(_) => true,
        Err(NodeError::Busy(_)) => false,
        Err(_) => op != "prefetch",
    }
}

/// A progress message that is not the last.
fn progress(message: String) -> pb::Progress {
    pb::Progress { message, done: false }
}

/// An order's result, or where it will appear while the order runs.
enum Entry {
    /// Running: its result is sent here when it ends.
    Running(tokio::sync::watch::Receiver<Option<Outcome>>),
    /// Carried out.
    Done(Outcome),
}

/// What an order came to.
type Outcome = Result<String, NodeError>;

/// What to do with an order, looked up (and, when new, marked running) under one lock.
enum Order {
    /// Answer from memory.
    Done(Outcome),
    /// Wait for the same order already running.
    Running(tokio::sync::watch::Receiver<Option<Outcome>>),
    /// Carry it out, then send its result here.
    New(tokio::sync::watch::Sender<Option<Outcome>>),
}

impl Order {
    fn of(done: &Mutex<BTreeMap<DoneKey, Entry>>, key: &DoneKey) -> Order {
        let mut done = done.lock().expect("done lock");
        match done.get(key) {
            Some(Entry::Done(r)) => Order::Done(r.clone()),
            Some(Entry::Running(rx)) => Order::Running(rx.clone()),
            None => {
                let (tx, rx) = tokio::sync::watch::channel(None);
                done.insert(key.clone(), Entry::Running(rx));
                Order::New(tx)
            }
        }
    }
}

impl<B: NodeBackend> AgentService<B> {
    /// The path every package order takes: authorize the caller, admit its fence, read its
    /// package set, then carry out `work` once per (operation, run, token).
    async fn package_order(
        &self,
        req: Request<pb::Order>,
        op: &'static str,
        work: impl FnOnce(&B, &PackageSet, &OpKey) -> Result<String, NodeError> + Send + 'static,
    ) -> Result<Response<ProgressStream>, Status> {
        self.caller(&req).await?;
        let limit = crate::wire::deadline::of(&req);
        let order = req.into_inner();
        let (run, token) = self.admit(order.fence.as_ref())?;
        let set = package_set(&order.packages).map_err(|e| NodeError::Invalid(e.to_string()))?;
        self.check_packages(set.0.keys())?;
        let key = OpKey { run_id: run.clone(), token, limit };
        Ok(Response::new(self.order(op, run, token, move |b| work(b, &set, &key))))
    }
}

/// Counts an operation by its result: `ok`, or the error's kind.
fn count<T>(op: &str, r: &Result<T, NodeError>) {
    let result = r.as_ref().map_or_else(NodeError::kind, |_| "ok");
    crate::metrics::inc(crate::metrics::AGENT_OPS, &[("operation", op), ("result", result)]);
}

/// A hook's environment: what it is told of the run and the node.
fn hook_env(
    point: HookPoint,
    run: &str,
    order: &pb::HookOrder,
    node_id: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("SWARM_UPGRADE_PHASE", point.name().to_string()),
        ("SWARM_UPGRADE_RUN", run.to_string()),
        ("SWARM_UPGRADE_NODE", order.hostname.clone()),
        ("SWARM_UPGRADE_NODE_ID", node_id.to_string()),
        ("SWARM_UPGRADE_TARGET", order.target.clone()),
    ];
    if point == HookPoint::OnFailure {
        env.push(("SWARM_UPGRADE_REASON", order.reason.clone()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A stream of progress messages.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::Progress, Status>> + Send>>;

#[tonic::async_trait]
impl<B: NodeBackend> pb::agent_server::Agent for AgentService<B> {
    type PrefetchStream = ProgressStream;
    type UpgradeStream = ProgressStream;
    type RestartEngineStream = ProgressStream;
    type RunHookStream = ProgressStream;
    type RollbackStream = ProgressStream;

    async fn describe(
        &self,
        req: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::NodeReport>, Status> {
        self.caller(&req).await?;
        let pb::DescribeRequest { packages, refresh } = req.into_inner();
        self.check_packages(&packages)?;
        let backend = self.backend.clone();
        let report = tokio::task::spawn_blocking(move || backend.describe(&packages, refresh))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        count("describe", &report);
        let report = report?;
        Ok(Response::new(report_to_pb(&report)))
    }

    async fn prefetch(&self, req: Request<pb::Order>) -> Result<Response<ProgressStream>, Status> {
        self.package_order(req, "prefetch", |b, set, op| {
            b.prefetch(set, op).map(|_| format!("downloaded {set}"))
        })
        .await
    }

    async fn upgrade(&self, req: Request<pb::Order>) -> Result<Response<ProgressStream>, Status> {
        let backup = req.get_ref().backup_swarm;
        self.package_order(req, "upgrade", move |b, set, op| {
            b.upgrade(set, op, backup).map(|_| format!("installed {set}"))
        })
        .await
    }

    async fn restart_engine(
        &self,
        req: Request<pb::Order>,
    ) -> Result<Response<ProgressStream>, Status> {
        // (A restart again under the same fence is an order of its own, not answered from
        // the memory of the first.)
        let again = req.get_ref().again;
        let name = if again { "restart-again" } else { "restart" };
        self.package_order(req, name, move |b, _, op| {
            let restarted = if again { b.restart_engine_again(op) } else { b.restart_engine(op) };
            restarted.map(|_| "docker.service restarted".to_string())
        })
        .await
    }

    async fn rollback(&self, req: Request<pb::Order>) -> Result<Response<ProgressStream>, Status> {
        self.package_order(req, "rollback", |b, set, op| {
            b.rollback(set, op).map(|_| format!("rolled back to {set}"))
        })
        .await
    }

    async fn rejoin(
        &self,
        req: Request<pb::JoinOrder>,
    ) -> Result<Response<pb::RejoinReply>, Status> {
        self.caller(&req).await?;
        let order = req.into_inner();
        self.check_join(&order)?;
        self.admit(order.fence.as_ref())?;
        let (token, managers) = (Secret(order.join_token), order.managers);
        let backend = self.backend.clone();
        let node_id = tokio::task::spawn_blocking(move || backend.rejoin(&token, &managers))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        count("rejoin", &node_id);
        let node_id = node_id?;
        Ok(Response::new(pb::RejoinReply { node_id }))
    }

    async fn run_hook(
        &self,
        req: Request<pb::HookOrder>,
    ) -> Result<Response<ProgressStream>, Status> {
        self.caller(&req).await?;
        let order = req.into_inner();
        let point = HookPoint::from_name(&order.hook).ok_or_else(|| {
            NodeError::Invalid(format!(
                "{:?} is no hook point this agent knows (before-drain, after-verify, on-failure): upgrade the agent to the coordinator's version",
                order.hook
            ))
        })?;
        let (run, token) = self.admit(order.fence.as_ref())?;
        let env = hook_env(point, &run, &order, &self.backend.node_id());
        // (Once per order: the same order again, a retry after a lost stream, gets this result.)
        Ok(Response::new(self.order(point.name(), run, token, move |b| {
            let ran = b.run_hook(point, &env)?;
            Ok(serde_json::to_string(&ran).expect("hook runs serialize"))
        })))
    }

    async fn health(
        &self,
        req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthReply>, Status> {
        self.caller(&req).await?;
        Ok(Response::new(pb::HealthReply {
            node_id: self.backend.node_id(),
            cluster_id: self.cluster.clone(),
        }))
    }
}

/// Serves on `listener` until `shutdown` resolves (a signal in production, a test's own future
/// in tests). With `tls`, clients must present a certificate chaining to its CA.
pub async fn serve<B: NodeBackend>(
    service: AgentService<B>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_shared(Arc::new(service), listener, tls, shutdown).await
}

/// [`serve`] for a service that outlives one server (its fence and completed orders are kept
/// when the server restarts with new certificates).
pub(crate) async fn serve_shared<B: NodeBackend>(
    service: Arc<AgentService<B>>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // A coordinator that vanished mid-order (its manager cut off) is noticed, and its calls end.
    let keepalive = std::time::Duration::from_secs(10);
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    builder
        .add_service(pb::agent_server::AgentServer::from_arc(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves on `addr` until `stop` resolves, reloading the TLS material whenever `stamp` changes
/// (checked every `every`): swarm node certificates rotate (every 90 days by default, and at
/// once on a CA rotation), and an agent that kept the old ones would refuse the managers.
pub async fn serve_reloading<B: NodeBackend>(
    service: Arc<AgentService<B>>,
    addr: std::net::SocketAddr,
    load: impl Fn() -> Result<crate::wire::tls::TlsMaterial, AuthError>,
    stamp: impl Fn() -> Option<Vec<std::time::SystemTime>>,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(stop);
    loop {
        let material = load()?;
        service.trust_ca(&material.ca);
        let seen = stamp();
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&material.cert, &material.key))
            .client_ca_root(tonic::transport::Certificate::from_pem(&material.ca));
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| AgentError::listen(addr, e))?;
        crate::sd_notify::ready(&format!("serving on {addr} with mutual TLS"));
        let (rotated_tx, rotated_rx) = tokio::sync::oneshot::channel::<()>();
        let server = serve_shared(service.clone(), listener, Some(tls), async {
            let _ = rotated_rx.await;
        });
        tokio::pin!(server);
        let mut tick = tokio::time::interval(every);
        let reload = loop {
            tokio::select! {
                r = &mut server => return Ok(r?),
                _ = &mut stop => break false,
                // Files that changed but do not load (a node whose swarm state was just wiped,
                // waiting to rejoin) leave the server as it is: it must still take that order.
                _ = tick.tick() => if stamp() != seen && load().is_ok() { break true },
            }
        };
        let _ = rotated_tx.send(());
        server.await?;
        if !reload {
            return Ok(());
        }
        tracing::info!("the node's certificates changed: serving with the new ones");
    }
}
