//! The engine masked for the time of a rollback's package work (see `HostBackend::rollback`),
//! with a marker so that an agent that died in between lifts the mask when it starts again,
//! instead of leaving the engine unable to start until the next boot. Both live in `/run`: a
//! runtime mask and its marker end together at the next boot.

use std::path::Path;

use crate::adapters::systemd::{Systemd, UnitError};

/// Marks that this agent masked the engine.
const MARKER: &str = "/run/swarm-upgrade/engine-masked";
/// The unit masked.
const UNIT: &str = "docker.service";

/// Masks the engine until [`release`], the marker written first.
pub(crate) async fn hold(systemd: &Systemd) -> Result<(), UnitError> {
    let marker = Path::new(MARKER);
    if let Some(dir) = marker.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(marker, UNIT)
        .map_err(|e| UnitError::Bus(format!("cannot write {MARKER}: {e}")))?;
    systemd.mask_for_now(UNIT).await?;
    // A full copy of the unit in /etc/systemd/system takes precedence over a runtime mask.
    if systemd.file_state(UNIT).await.ok().as_deref() != Some("masked-runtime") {
        tracing::warn!(
            "docker.service could not be masked (a copy in /etc/systemd/system takes precedence): a maintainer script may start the engine while it is rolled back"
        );
    }
    Ok(())
}

/// Lifts the mask, then the marker.
pub(crate) async fn release(systemd: &Systemd) -> Result<(), UnitError> {
    systemd.unmask_for_now(UNIT).await?;
    let _ = std::fs::remove_file(MARKER);
    Ok(())
}

/// At the agent's start: lifts a mask an earlier run of the agent left (it died mid-rollback).
pub(crate) async fn release_left_over() {
    if !Path::new(MARKER).exists() {
        return;
    }
    tracing::warn!("the engine was left masked by an interrupted rollback: unmasking it");
    let result = match Systemd::system().await {
        Ok(systemd) => release(&systemd).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot unmask docker.service: `systemctl unmask --runtime docker.service` on this node");
    }
}
