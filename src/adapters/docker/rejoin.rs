//! The node's side of a rejoin, on its own engine: leave the swarm (forced: the node is a stranger
//! to it already) and join again with the token the coordinator passed, advertising the same
//! address as before. The coordinator then carries the labels over and removes the stale entry.

use std::time::Duration;

use bollard::Docker;
use bollard::models::SwarmJoinRequest;
use bollard::query_parameters::LeaveSwarmOptions;

use super::port_error;
use crate::ports::{PortError, Secret};

/// Leaves and joins again; returns the node's new ID. The token is never logged.
pub async fn rejoin(
    docker: &Docker,
    token: &Secret,
    managers: &[String],
) -> Result<String, PortError> {
    if managers.is_empty() {
        return Err(PortError::Failed(
            "no manager address to join: the coordinator must pass at least one".into(),
        ));
    }
    let info = docker.info().await.map_err(|e| port_error("reading the local swarm state", e))?;
    let advertise = info.swarm.as_ref().and_then(|s| s.node_addr.clone()).filter(|a| !a.is_empty());
    // "Not part of a swarm" is fine: the node may already have lost its state.
    if let Err(e) = docker.leave_swarm(Some(LeaveSwarmOptions { force: true })).await {
        let text = e.to_string();
        if !text.contains("not part of a swarm") {
            return Err(port_error("leaving the swarm", e));
        }
    }
    let request = SwarmJoinRequest {
        listen_addr: Some("0.0.0.0:2377".into()),
        advertise_addr: advertise,
        remote_addrs: Some(managers.to_vec()),
        join_token: Some(token.0.clone()),
        ..Default::default()
    };
    docker.join_swarm(request).await.map_err(|e| port_error("joining the swarm again", e))?;
    for _ in 0..60 {
        let info =
            docker.info().await.map_err(|e| port_error("reading the local swarm state", e))?;
        let swarm = info.swarm.unwrap_or_default();
        let active = swarm.local_node_state.map(|s| s.to_string()) == Some("active".into());
        match swarm.node_id.filter(|id| !id.is_empty()) {
            Some(id) if active => return Ok(id),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Err(PortError::Unavailable(
        "joined, but the engine did not report an active swarm membership within 30 s".into(),
    ))
}
