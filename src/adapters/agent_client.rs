//! The `Agents` port over gRPC: the coordinator calls each node's agent with mutual TLS, as a
//! manager of the swarm (its own node certificate), naming the agent by its node ID (the DNS SAN
//! of swarm node certificates).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Status};

use crate::config::AgentSettings;
use crate::model::hooks::HookRun;
use crate::model::{AgentReport, NodeId, PackageSet};
use crate::ports::{
    AgentTarget, Agents, DESCRIBE_LIMIT, HookOrder, JoinOrder, Lists, OpKey, PortError,
};
use crate::wire::convert::report_from_pb;
use crate::wire::error::NodeError;
use crate::wire::pb::{self, agent_client::AgentClient};
use crate::wire::tls::TlsMaterial;

/// How often an idle or busy connection is pinged, and how long a ping may go unanswered.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// A request that the server gives up on (and says so) once `limit` has passed: tonic sends it as
/// the `grpc-timeout` header, which the agent also reads to bound its own work.
fn limited<T>(message: T, limit: Option<Duration>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(limit) = limit {
        req.set_timeout(limit.max(Duration::from_secs(1)));
    }
    req
}

/// Where the TLS material was read from, and when its files last changed.
#[derive(Debug)]
struct Source {
    settings: AgentSettings,
    stamp: Option<Vec<std::time::SystemTime>>,
}

/// Agents reached over gRPC on `port`.
#[derive(Clone, Debug)]
pub struct GrpcAgents {
    tls: Arc<Mutex<Option<TlsMaterial>>>,
    source: Option<Arc<Mutex<Source>>>,
    port: u16,
    /// Packages to describe.
    packages: Vec<String>,
}

impl GrpcAgents {
    /// Agents on `port`, with mutual TLS (`None`: plaintext, labs only).
    pub fn new(tls: Option<TlsMaterial>, port: u16, packages: Vec<String>) -> Self {
        GrpcAgents { tls: Arc::new(Mutex::new(tls)), source: None, port, packages }
    }

    /// Re-reads the TLS material from where `settings` name it whenever its files change: swarm
    /// node certificates rotate (every 90 days by default, at once on a CA rotation), and a run
    /// that kept the old ones would fail every later call.
    pub fn reloading(mut self, settings: &AgentSettings) -> Self {
        let stamp = crate::wire::tls::stamp(settings);
        self.source = Some(Arc::new(Mutex::new(Source { settings: settings.clone(), stamp })));
        self
    }

    /// The TLS material to call with now (reloaded if its files changed and load).
    fn material(&self) -> Option<TlsMaterial> {
        if let Some(source) = &self.source {
            let mut source = source.lock().expect("tls source lock");
            let stamp = crate::wire::tls::stamp(&source.settings);
            if stamp != source.stamp {
                match crate::wire::tls::load(&source.settings) {
                    Ok(m) => {
                        tracing::info!(
                            "this manager's certificates changed: calling agents with the new ones"
                        );
                        *self.tls.lock().expect("tls lock") = Some(m);
                        source.stamp = stamp;
                    }
                    // Half-written files: the old material until they load.
                    Err(e) => {
                        tracing::debug!(error = %e, "the certificates changed but do not load yet")
                    }
                }
            }
        }
        self.tls.lock().expect("tls lock").clone()
    }

    /// A client for `node`'s agent once connected, counting the call about to be made on it
    /// (`swarm_upgrade_agent_calls_total`).
    async fn client(
        &self,
        node: &AgentTarget,
        operation: &str,
    ) -> Result<AgentClient<Channel>, PortError> {
        let tls = self.material();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}:{}", node.addr, self.port);
        let unreachable = |e: &dyn std::fmt::Display| {
            PortError::Unavailable(format!(
                "agent on {} ({url}) unreachable: {e}; check `systemctl status swarm-upgrade-agent` there and the agent port",
                node.hostname
            ))
        };
        let mut endpoint = Channel::from_shared(url.clone())
            .map_err(|e| unreachable(&e))?
            .connect_timeout(Duration::from_secs(5))
            // A node that stops answering without closing the connection (paused, cut off) is
            // noticed within seconds, not at the end of a 15-minute order.
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true);
        if let Some(t) = &tls {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&t.ca))
                .identity(Identity::from_pem(&t.cert, &t.key))
                .domain_name(node.node_id.clone());
            endpoint = endpoint.tls_config(tls).map_err(|e| unreachable(&e))?;
        }
        let channel = endpoint.connect().await.map_err(|e| unreachable(&e))?;
        crate::metrics::inc(crate::metrics::AGENT_CALLS, &[("operation", operation)]);
        Ok(AgentClient::new(channel))
    }
}

/// A failed call as the coordinator acts on it: the agent's own kind when it named one; a
/// transport failure (no kind) is Unavailable, or Failed when the agent answered with another
/// code (an agent older than the kinds).
fn status(node: &AgentTarget, s: Status) -> PortError {
    let msg = format!("agent on {}: {}", node.hostname, s.message());
    match NodeError::from_status(&s) {
        Some(NodeError::Busy(_)) => PortError::Busy(msg),
        Some(NodeError::Stale(_)) => PortError::Stale(msg),
        Some(NodeError::Invalid(_)) => PortError::Invalid(msg),
        Some(NodeError::Failed(_) | NodeError::Unauthorized(_)) => PortError::Failed(msg),
        None => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown => {
                PortError::Unavailable(msg)
            }
            _ => PortError::Failed(msg),
        },
    }
}

fn order(set: &PackageSet, op: &OpKey) -> tonic::Request<pb::Order> {
    limited(crate::wire::convert::order(set, &op.run_id, op.token), op.limit)
}

/// Reads a progress stream to its end, or the failure.
async fn finish(
    node: &AgentTarget,
    stream: Result<tonic::Response<tonic::Streaming<pb::Progress>>, Status>,
) -> Result<(), PortError> {
    last_message(node, stream).await.map(drop)
}

/// Reads a progress stream to its end: the last message's text, or the failure.
async fn last_message(
    node: &AgentTarget,
    stream: Result<tonic::Response<tonic::Streaming<pb::Progress>>, Status>,
) -> Result<String, PortError> {
    let mut stream = stream.map_err(|s| status(node, s))?.into_inner();
    while let Some(p) = stream.message().await.map_err(|s| status(node, s))? {
        tracing::debug!(node = %node.hostname, message = %p.message, "agent progress");
        if p.done {
            return Ok(p.message);
        }
    }
    Err(PortError::Unavailable(format!(
        "agent on {} ended the operation without a result",
        node.hostname
    )))
}

impl Agents for GrpcAgents {
    async fn describe(&self, node: &AgentTarget, lists: Lists) -> Result<AgentReport, PortError> {
        let mut c = self.client(node, "describe").await?;
        let r = c
            .describe(limited(
                pb::DescribeRequest {
                    packages: self.packages.clone(),
                    refresh: lists == Lists::Refresh,
                },
                Some(DESCRIBE_LIMIT),
            ))
            .await
            .map_err(|s| status(node, s))?;
        Ok(report_from_pb(&r.into_inner()))
    }

    async fn prefetch(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError> {
        let mut c = self.client(node, "prefetch").await?;
        finish(node, c.prefetch(order(packages, op)).await).await
    }

    async fn upgrade(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
        backup: bool,
    ) -> Result<(), PortError> {
        let mut c = self.client(node, "upgrade").await?;
        let mut req = order(packages, op);
        req.get_mut().backup_swarm = backup;
        finish(node, c.upgrade(req).await).await
    }

    async fn restart_engine(&self, node: &AgentTarget, op: &OpKey) -> Result<(), PortError> {
        let mut c = self.client(node, "restart").await?;
        finish(node, c.restart_engine(order(&PackageSet::default(), op)).await).await
    }

    async fn restart_engine_again(&self, node: &AgentTarget, op: &OpKey) -> Result<(), PortError> {
        let mut c = self.client(node, "restart").await?;
        let mut req = order(&PackageSet::default(), op);
        req.get_mut().again = true;
        finish(node, c.restart_engine(req).await).await
    }

    async fn rollback(
        &self,
        node: &AgentTarget,
        previous: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError> {
        let mut c = self.client(node, "rollback").await?;
        finish(node, c.rollback(order(previous, op)).await).await
    }

    async fn run_hook(
        &self,
        node: &AgentTarget,
        hook: &HookOrder,
        op: &OpKey,
    ) -> Result<Option<HookRun>, PortError> {
        let mut c = self.client(node, "hook").await?;
        let req = pb::HookOrder {
            fence: Some(pb::Fence { run_id: op.run_id.clone(), token: op.token }),
            hook: hook.point.name().to_string(),
            target: hook.target.clone(),
            hostname: node.hostname.clone(),
            reason: hook.reason.clone(),
        };
        let text = match c.run_hook(limited(req, op.limit)).await {
            // An agent older than hooks has none configured.
            Err(s) if s.code() == Code::Unimplemented => return Ok(None),
            stream => last_message(node, stream).await?,
        };
        serde_json::from_str(&text).map_err(|e| {
            PortError::Failed(format!(
                "the agent on {} answered the hook with something else than its run ({e}): make the agents' version the coordinator's",
                node.hostname
            ))
        })
    }

    async fn rejoin(
        &self,
        node: &AgentTarget,
        join: &JoinOrder,
        op: &OpKey,
    ) -> Result<NodeId, PortError> {
        let mut c = self.client(node, "rejoin").await?;
        let req = pb::JoinOrder {
            fence: Some(pb::Fence { run_id: op.run_id.clone(), token: op.token }),
            join_token: join.token.0.clone(),
            managers: join.managers.clone(),
        };
        let r = c.rejoin(limited(req, op.limit)).await.map_err(|s| status(node, s))?;
        Ok(NodeId(r.into_inner().node_id))
    }
}
