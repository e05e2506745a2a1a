//! An autolocked swarm through a local engine: the swarm's current unlock key (a manager's
//! `GET /swarm/unlockkey`), and unlocking an engine that came back locked after a restart
//! (`POST /swarm/unlock`). Bollard has neither call; both go through [`raw`](super::raw).

use serde_json::json;

use super::port_error;
use super::raw::Endpoint;
use crate::model::UnlockKey;
use crate::ports::PortError;

/// The swarm's current unlock key, asked of a manager (`None`: the swarm is not autolocked).
pub async fn current_key(raw: &Endpoint) -> Result<Option<UnlockKey>, PortError> {
    let (_, body) = raw
        .request("GET", "/swarm/unlockkey", None)
        .await
        .map_err(|e| port_error("reading the swarm's unlock key", e))?;
    let text = body.get("UnlockKey").and_then(|k| k.as_str()).unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    UnlockKey::parse(text)
        .map(Some)
        .map_err(|e| PortError::Failed(format!("the engine's unlock key: {e}")))
}

/// Unlocks the local engine of a manager that came back locked.
pub async fn unlock(raw: &Endpoint, key: &UnlockKey) -> Result<(), PortError> {
    raw.request("POST", "/swarm/unlock", Some(&json!({ "UnlockKey": key.as_str() })))
        .await
        .map(drop)
        .map_err(|e| port_error("unlocking the engine", e))
}
