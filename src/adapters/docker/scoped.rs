//! A node's scope read with the Docker API's filters ([`ClusterSnapshot::scoped`] says what it
//! holds): the node, its tasks, the services asked for and those of its tasks, every task of the
//! replicated ones, the nodes those run on, and the global ones' tasks on those nodes. Up to six
//! requests whose answers grow with the node's services, not with the cluster.
//!
//! The engine resolves every value of a task filter (`service`, `node`) and answers 404 when one
//! is gone: only nodes and services just listed are filtered on, and a 404 (one removed between
//! two requests) is a reading to take again, not a failure.

use std::collections::{BTreeSet, HashMap};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models as b;
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};

use super::{convert, port_error};
use crate::model::{ClusterSnapshot, NodeId, ServiceId};
use crate::ports::PortError;

/// Filters (the API ORs the values of a key and ANDs the keys).
fn by(pairs: &[(&str, &[String])]) -> Option<HashMap<String, Vec<String>>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect())
}

/// Reads `node`'s scope over `services` (see the module's documentation).
pub(super) async fn read(
    docker: &Docker,
    node: &NodeId,
    services: &[ServiceId],
) -> Result<ClusterSnapshot, PortError> {
    let mut nodes = nodes_with_ids(docker, std::slice::from_ref(&node.0)).await?;
    let mut tasks = if nodes.is_empty() {
        Vec::new()
    } else {
        tasks_where(docker, &[("node", std::slice::from_ref(&node.0))]).await?
    };
    let mut wanted: BTreeSet<String> = services.iter().map(|s| s.0.clone()).collect();
    wanted.extend(tasks.iter().filter_map(|t| t.service_id.clone()));
    let svcs = services_with_ids(docker, &wanted.into_iter().collect::<Vec<_>>()).await?;
    let (global, replicated) = split_by_mode(&svcs);
    if !replicated.is_empty() {
        let theirs = tasks_where(docker, &[("service", &replicated)]).await?;
        let others: BTreeSet<String> = theirs
            .iter()
            .filter_map(|t| t.node_id.clone())
            .filter(|n| !n.is_empty() && *n != node.0)
            .collect();
        nodes.extend(nodes_with_ids(docker, &others.into_iter().collect::<Vec<_>>()).await?);
        tasks.extend(theirs);
    }
    let read: Vec<String> = nodes.iter().filter_map(|n| n.id.clone()).collect();
    if !global.is_empty() && !read.is_empty() {
        tasks.extend(tasks_where(docker, &[("service", &global), ("node", &read)]).await?);
    }
    let mut seen = BTreeSet::new();
    tasks.retain(|t| seen.insert(t.id.clone()));
    Ok(convert::parts(&nodes, &svcs, &tasks, jiff::Timestamp::now()))
}

/// The nodes with exactly these IDs (the API's filter matches prefixes); none asked, none read.
async fn nodes_with_ids(docker: &Docker, ids: &[String]) -> Result<Vec<b::Node>, PortError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    super::sent("list_nodes");
    let listed = docker
        .list_nodes(Some(ListNodesOptions { filters: by(&[("id", ids)]) }))
        .await
        .map_err(|e| port_error("listing the nodes of a node's scope", e))?;
    Ok(listed.into_iter().filter(|n| n.id.as_ref().is_some_and(|id| ids.contains(id))).collect())
}

/// The services with exactly these IDs; none asked, none read.
async fn services_with_ids(docker: &Docker, ids: &[String]) -> Result<Vec<b::Service>, PortError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let options = ListServicesOptions { filters: by(&[("id", ids)]), status: None };
    super::sent("list_services");
    let listed = docker
        .list_services(Some(options))
        .await
        .map_err(|e| port_error("listing the services of a node's scope", e))?;
    Ok(listed.into_iter().filter(|s| s.id.as_ref().is_some_and(|id| ids.contains(id))).collect())
}

/// The IDs of the global services, then of the others.
fn split_by_mode(svcs: &[b::Service]) -> (Vec<String>, Vec<String>) {
    let global = |s: &b::Service| {
        s.spec.as_ref().and_then(|s| s.mode.as_ref()).is_some_and(|m| m.global.is_some())
    };
    let ids = |want: bool| {
        svcs.iter().filter(|s| global(s) == want).filter_map(|s| s.id.clone()).collect()
    };
    (ids(true), ids(false))
}

/// The tasks the filters select; a node or service gone meanwhile (404) is read again later.
async fn tasks_where(
    docker: &Docker,
    filters: &[(&str, &[String])],
) -> Result<Vec<b::Task>, PortError> {
    super::sent("list_tasks");
    match docker.list_tasks(Some(ListTasksOptions { filters: by(filters) })).await {
        Ok(tasks) => Ok(tasks),
        Err(BollardError::DockerResponseServerError { status_code: 404, message }) => {
            Err(PortError::Unavailable(format!(
                "a node or service of the scope went away while it was read ({message}); reading again"
            )))
        }
        Err(e) => Err(port_error("listing the tasks of a node's scope", e)),
    }
}
