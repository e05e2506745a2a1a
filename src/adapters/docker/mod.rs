//! The swarm through a manager's Docker API (bollard).
//!
//! Every node or service write is fenced: it carries the version index of the reading it was
//! decided on (`at`), and the engine refuses it ("update out of sequence", HTTP 500, here
//! [`PortError::Conflict`]) if anyone wrote the object since, a coordinator that took the lock
//! over included. It is not retried here: the caller reads again and decides again. The spec
//! sent is the whole inspected one (the engine replaces specs wholesale). Node specs go back
//! through bollard's typed model (checked to round-trip against engine 26 in the lab); service
//! specs do not round-trip (bollard drops the health check, see `raw.rs`), so services are scaled
//! on the engine's own JSON.

pub mod autolock;
pub mod convert;
pub mod raw;
pub mod rejoin;
pub mod scoped;
pub mod standalone;
pub mod store;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models as b;
use bollard::query_parameters::{DeleteNodeOptions, UpdateNodeOptions};
use std::collections::BTreeMap;

use crate::model::{Availability, ClusterSnapshot, NodeId, Role, ServiceId, UnlockKey};
use crate::ports::{PortError, Secret, Swarm};

/// A manager's Docker API.
#[derive(Clone, Debug)]
pub struct DockerSwarm {
    docker: Docker,
    raw: raw::Endpoint,
}

/// Whether an engine error says a write lost against a newer version.
pub(crate) fn out_of_sequence(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code: 500, message } if message.contains("update out of sequence"))
}

/// Whether an engine error comes from the swarm's Raft while it has no leader: a leader election
/// answers writes with HTTP 500 "raft: failed to process the request: node lost leader status"
/// (measured in the lab: every swarm write on a follower for about 7 s after the leader's engine
/// restarts) or with a gRPC Unavailable or deadline. The write did not land, or may land; either
/// way it is retried after re-reading.
pub(crate) fn leaderless(e: &BollardError) -> bool {
    const SIGNS: [&str; 5] = [
        "node lost leader status",
        "does not have a leader",
        "code = Unavailable",
        "code = DeadlineExceeded",
        "context deadline exceeded",
    ];
    matches!(e, BollardError::DockerResponseServerError { status_code: 500, message } if SIGNS.iter().any(|s| message.contains(s)))
}

/// Counts one request sent to the Docker API (`swarm_upgrade_docker_requests_total`), so a run's
/// cost can be read from its metrics and held against the scale simulation's.
pub(crate) fn sent(request: &str) {
    crate::metrics::inc(crate::metrics::DOCKER_REQUESTS, &[("request", request)]);
}

/// Maps an engine error into a port error that says what failed and what to check.
pub(crate) fn port_error(what: &str, e: BollardError) -> PortError {
    match e {
        ref e if out_of_sequence(e) => PortError::Conflict,
        BollardError::DockerResponseServerError { status_code: 503, message } => {
            PortError::Unavailable(format!(
                "{what}: the swarm has no leader or this node is not a manager ({message}); check `docker node ls` on a manager"
            ))
        }
        ref e if leaderless(e) => PortError::Unavailable(format!(
            "{what}: the swarm is electing a leader ({e}); if this lasts, check `docker node ls` on a manager"
        )),
        BollardError::DockerResponseServerError { status_code, message } => {
            PortError::Failed(format!("{what}: HTTP {status_code}: {message}"))
        }
        other => PortError::Unavailable(format!(
            "{what}: cannot reach the Docker API ({other}); check that docker.service runs and DOCKER_HOST"
        )),
    }
}

impl DockerSwarm {
    /// Connects as the docker CLI does (`DOCKER_HOST`, else the local socket) and negotiates the
    /// API version, so older engines (20.10 speaks 1.41) are understood.
    pub async fn connect() -> Result<Self, PortError> {
        let docker = Docker::connect_with_defaults().map_err(|e| {
            PortError::Unavailable(format!(
                "cannot connect to the Docker API: {e}; check DOCKER_HOST or /var/run/docker.sock"
            ))
        })?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| port_error("negotiating the Docker API version", e))?;
        let raw = raw::Endpoint::from_env().map_err(PortError::Failed)?;
        Ok(DockerSwarm { docker, raw })
    }

    /// Uses an existing client, and `raw` (the same engine) for service writes.
    pub fn new(docker: Docker, raw: raw::Endpoint) -> Self {
        DockerSwarm { docker, raw }
    }

    /// The underlying client (for the store in the same swarm).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Applies `change` to a node's spec, written at version `at` (refused if the node moved on).
    async fn update_node(
        &self,
        node: &NodeId,
        at: u64,
        change: impl Fn(&mut b::NodeSpec),
    ) -> Result<(), PortError> {
        let attempt = async {
            sent("inspect_node");
            let current = self.docker.inspect_node(&node.0).await?;
            let mut spec = current.spec.unwrap_or_default();
            change(&mut spec);
            sent("update_node");
            self.docker.update_node(&node.0, spec, UpdateNodeOptions { version: at as i64 }).await
        };
        attempt.await.map_err(|e| port_error(&format!("updating node {node}"), e))
    }
}

impl Swarm for DockerSwarm {
    async fn snapshot(&self) -> Result<ClusterSnapshot, PortError> {
        let ctx = |what: &'static str| move |e| port_error(what, e);
        sent("inspect_swarm");
        let swarm = self.docker.inspect_swarm().await.map_err(ctx("inspecting the swarm"))?;
        sent("list_nodes");
        let nodes = self.docker.list_nodes(None).await.map_err(ctx("listing nodes"))?;
        sent("list_services");
        let services = self.docker.list_services(None).await.map_err(ctx("listing services"))?;
        sent("list_tasks");
        let tasks = self.docker.list_tasks(None).await.map_err(ctx("listing tasks"))?;
        Ok(convert::snapshot(&swarm, &nodes, &services, &tasks, jiff::Timestamp::now()))
    }

    async fn scoped(
        &self,
        node: &NodeId,
        services: &[ServiceId],
    ) -> Result<ClusterSnapshot, PortError> {
        scoped::read(&self.docker, node, services).await
    }

    async fn set_availability(
        &self,
        node: &NodeId,
        at: u64,
        availability: Availability,
    ) -> Result<(), PortError> {
        let value = match availability {
            Availability::Active => b::NodeSpecAvailabilityEnum::ACTIVE,
            Availability::Pause => b::NodeSpecAvailabilityEnum::PAUSE,
            Availability::Drain => b::NodeSpecAvailabilityEnum::DRAIN,
        };
        self.update_node(node, at, |spec| spec.availability = Some(value)).await
    }

    async fn scale(&self, service: &ServiceId, at: u64, replicas: u64) -> Result<(), PortError> {
        let attempt = async {
            let (_, current) =
                self.raw.request("GET", &format!("/services/{}", service.0), None).await?;
            let (spec, _) = raw::scaled(&current, replicas).map_err(|message| {
                BollardError::DockerResponseServerError { status_code: 400, message }
            })?;
            self.raw
                .request(
                    "POST",
                    &format!("/services/{}/update?version={at}", service.0),
                    Some(&spec),
                )
                .await
                .map(|_| ())
        };
        attempt.await.map_err(|e| port_error(&format!("scaling service {service}"), e))
    }

    async fn set_labels(
        &self,
        node: &NodeId,
        at: u64,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        let labels: std::collections::HashMap<String, String> =
            labels.clone().into_iter().collect();
        self.update_node(node, at, |spec| spec.labels = Some(labels.clone())).await
    }

    async fn set_label(
        &self,
        node: &NodeId,
        at: u64,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), PortError> {
        self.update_node(node, at, |spec| {
            let labels = spec.labels.get_or_insert_default();
            match value {
                Some(v) => labels.insert(key.to_string(), v.to_string()),
                None => labels.remove(key),
            };
        })
        .await
    }

    async fn remove_node(&self, node: &NodeId) -> Result<(), PortError> {
        sent("delete_node");
        self.docker
            .delete_node(&node.0, Some(DeleteNodeOptions { force: true }))
            .await
            .map_err(|e| port_error(&format!("removing node {node}"), e))
    }

    async fn unlock_key(&self) -> Result<Option<UnlockKey>, PortError> {
        autolock::current_key(&self.raw).await
    }

    async fn join_token(&self, role: Role) -> Result<Secret, PortError> {
        sent("inspect_swarm");
        let swarm = self
            .docker
            .inspect_swarm()
            .await
            .map_err(|e| port_error("reading the join tokens", e))?;
        let tokens = swarm.join_tokens.unwrap_or_default();
        let token = match role {
            Role::Manager => tokens.manager,
            Role::Worker => tokens.worker,
        };
        token.map(Secret).ok_or_else(|| {
            PortError::Failed("the swarm returned no join token: is this node a manager?".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError { status_code, message: message.into() }
    }

    #[test]
    fn an_election_is_a_wait_not_a_failure() {
        // What a follower's engine answered to swarm updates while the leader's engine restarted.
        let lost = server(
            500,
            "rpc error: code = Unknown desc = raft: failed to process the request: node lost leader status",
        );
        assert!(
            matches!(port_error("writing", lost), PortError::Unavailable(m) if m.contains("electing a leader"))
        );
        let no_leader = server(503, "The swarm does not have a leader.");
        assert!(matches!(port_error("reading", no_leader), PortError::Unavailable(_)));
        assert!(matches!(
            port_error(
                "writing",
                server(500, "rpc error: code = DeadlineExceeded desc = context deadline exceeded")
            ),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            port_error("writing", server(500, "update out of sequence")),
            PortError::Conflict
        ));
        assert!(matches!(port_error("writing", server(500, "invalid spec")), PortError::Failed(_)));
        assert!(matches!(
            port_error("writing", server(400, "code = Unavailable")),
            PortError::Failed(_)
        ));
    }
}
