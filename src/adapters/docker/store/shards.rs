//! The run record's shards, each in the labels of a swarm config of its own.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use bollard::Docker;
use bollard::models::ConfigSpec;
use bollard::query_parameters::{ListConfigsOptions, UpdateConfigOptions};

use super::super::port_error;
use crate::ports::PortError;

/// The config label naming the run a shard belongs to.
pub const RUN_LABEL: &str = "io.swarm-upgrade.run";
/// The config label giving a shard's number.
const SHARD_LABEL: &str = "io.swarm-upgrade.shard";
/// The config label holding a shard's nodes (JSON).
const NODES_LABEL: &str = "io.swarm-upgrade.nodes";
/// What a shard config's data says (the data of a config cannot change; its labels can).
const DATA: &str = "swarm-upgrade: nodes of a run record, kept in this config's labels; see `swarm-upgrade status`\n";

/// A shard config's name: swarm object names are at most 64 characters, run IDs up to 128, so
/// the run is named by a stable digest of its ID (FNV-1a), the same from every build.
fn name(run: &str, k: usize) -> String {
    let digest = run.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("swarm-upgrade-{digest:016x}-{k}")
}

fn spec(run: &str, k: usize, text: &str) -> ConfigSpec {
    ConfigSpec {
        name: Some(name(run, k)),
        labels: Some(HashMap::from([
            (RUN_LABEL.to_string(), run.to_string()),
            (SHARD_LABEL.to_string(), k.to_string()),
            (NODES_LABEL.to_string(), text.to_string()),
        ])),
        data: Some(base64::engine::general_purpose::STANDARD.encode(DATA)),
        ..Default::default()
    }
}

/// A shard as stored: where, at which version, and its text.
#[derive(Clone, Debug)]
pub(super) struct Stored {
    /// The config's ID.
    pub id: String,
    /// Its version index.
    pub index: u64,
    /// The nodes, as JSON.
    pub text: String,
}

fn labelled(filter: String) -> ListConfigsOptions {
    ListConfigsOptions { filters: Some(HashMap::from([("label".to_string(), vec![filter])])) }
}

/// Every shard of `run`, by number.
pub(super) async fn read(docker: &Docker, run: &str) -> Result<BTreeMap<usize, Stored>, PortError> {
    super::super::sent("store list_configs");
    let configs = docker
        .list_configs(Some(labelled(format!("{RUN_LABEL}={run}"))))
        .await
        .map_err(|e| port_error("reading the run record's shards", e))?;
    Ok(configs
        .into_iter()
        .filter_map(|c| {
            let labels = c.spec?.labels?;
            let k = labels.get(SHARD_LABEL)?.parse().ok()?;
            let text = labels.get(NODES_LABEL)?.clone();
            Some((k, Stored { id: c.id?, index: c.version?.index?, text }))
        })
        .collect())
}

/// Writes shard `k` of `run`: updates the config `at` (its ID and the version it was read at),
/// or creates it. Says where it now is: its ID and new version index, read back (a write does
/// not return them), so that the next write needs no read of every shard.
pub(super) async fn write(
    docker: &Docker,
    run: &str,
    k: usize,
    text: &str,
    at: Option<(&str, u64)>,
) -> Result<(String, u64), PortError> {
    let what = format!("writing shard {k} of the run record");
    let conflict_or = |e: bollard::errors::Error| match e {
        // Created, written or removed meanwhile by another coordinator: read again.
        bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. } => {
            PortError::Conflict
        }
        e => port_error(&what, e),
    };
    let id = match at {
        Some((id, index)) => {
            let options = UpdateConfigOptions { version: index as i64 };
            super::super::sent("store update_config");
            docker.update_config(id, spec(run, k, text), options).await.map_err(conflict_or)?;
            id.to_string()
        }
        None => {
            super::super::sent("store create_config");
            docker.create_config(spec(run, k, text)).await.map_err(conflict_or)?.id
        }
    };
    super::super::sent("store inspect_config");
    let config = docker.inspect_config(&id).await.map_err(conflict_or)?;
    let ours = config
        .spec
        .and_then(|s| s.labels)
        .is_some_and(|l| l.get(NODES_LABEL).map(String::as_str) == Some(text));
    match config.version.and_then(|v| v.index) {
        // Written over already (by whom, the next read finds out).
        Some(index) if ours => Ok((id, index)),
        _ => Err(PortError::Conflict),
    }
}

/// Removes the shards of every run but `keep` (best effort: a leftover is harmless, and removed
/// again at the next run's start).
pub(super) async fn remove_others(docker: &Docker, keep: Option<&str>) {
    super::super::sent("store list_configs");
    let configs = match docker.list_configs(Some(labelled(RUN_LABEL.to_string()))).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "listing old run records' shards to remove them");
            return;
        }
    };
    for c in configs {
        let run = c.spec.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.get(RUN_LABEL));
        if run.map(String::as_str) == keep {
            continue;
        }
        if let Some(id) = c.id
            && let Err(e) = {
                super::super::sent("store delete_config");
                docker.delete_config(&id).await
            }
        {
            tracing::warn!(config = %id, error = %e, "removing an old run record's shard");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_names_are_valid_swarm_names_whatever_the_run_id() {
        let long = "r".repeat(crate::model::run_id::MAX_RUN_ID);
        for run in ["20261125T060000Z-manager1-4242", long.as_str(), "a"] {
            let n = super::name(run, 156);
            assert!(
                n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{n}"
            );
        }
        // FNV-1a of "a", as published: the name does not depend on the build.
        assert_eq!(super::name("a", 0), "swarm-upgrade-af63dc4c8601ec8c-0");
        assert_ne!(super::name("a", 0), super::name("b", 0));
    }
}
