//! The containers on a node that no swarm service owns: started with `docker run`, they are
//! not moved by a drain, and they stop while the node's engine restarts.

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::ListContainersOptions;

use crate::model::Standalone;

/// The label the swarm puts on every task's container.
const SERVICE_LABEL: &str = "com.docker.swarm.service.id";

/// The running containers of the local engine that no service owns, each with its restart
/// policy (one inspect each: the list does not carry it).
pub async fn running(docker: &Docker) -> Result<Vec<Standalone>, bollard::errors::Error> {
    let list = docker.list_containers(Some(ListContainersOptions::default())).await?;
    let mut out = Vec::new();
    for c in list.iter().filter(|c| !is_task(c)) {
        let Some(id) = c.id.as_deref() else { continue };
        // Gone between the list and the inspect: not running any more.
        let Ok(inspected) = docker.inspect_container(id, None).await else { continue };
        out.push(standalone(c, &inspected));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether a container is a swarm task's.
fn is_task(c: &ContainerSummary) -> bool {
    c.labels.as_ref().is_some_and(|l| l.contains_key(SERVICE_LABEL))
}

/// Our view of a standalone container from its summary and its inspection.
fn standalone(c: &ContainerSummary, inspected: &ContainerInspectResponse) -> Standalone {
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .or_else(|| c.id.as_ref().map(|id| id.chars().take(12).collect()))
        .unwrap_or_default();
    let restart = inspected
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|r| r.name)
        .map(|n| n.to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "no".into());
    Standalone { name, image: c.image.clone().unwrap_or_default(), restart }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary and an inspection as the engine's API answers them (fields we read only).
    fn container(
        labels: &[(&str, &str)],
        restart: Option<&str>,
    ) -> (ContainerSummary, ContainerInspectResponse) {
        let summary: ContainerSummary = serde_json::from_value(serde_json::json!({
            "Id": "0123456789abcdef0123",
            "Names": ["/cache"],
            "Image": "redis:7",
            "Labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::HashMap<_, _>>(),
        }))
        .unwrap();
        let host_config = match restart {
            Some(name) => {
                serde_json::json!({ "RestartPolicy": { "Name": name, "MaximumRetryCount": 0 } })
            }
            None => serde_json::json!({}),
        };
        let inspected =
            serde_json::from_value(serde_json::json!({ "HostConfig": host_config })).unwrap();
        (summary, inspected)
    }

    #[test]
    fn a_tasks_container_is_not_standalone() {
        let (task, _) =
            container(&[(SERVICE_LABEL, "svc1"), ("com.docker.swarm.task.id", "t1")], None);
        assert!(is_task(&task));
        let (own, _) = container(&[("maintainer", "ops")], None);
        assert!(!is_task(&own));
    }

    #[test]
    fn the_name_image_and_restart_policy_are_read() {
        let (c, i) = container(&[], Some("unless-stopped"));
        let s = standalone(&c, &i);
        assert_eq!(
            (s.name.as_str(), s.image.as_str(), s.restart.as_str()),
            ("cache", "redis:7", "unless-stopped")
        );
        assert!(s.comes_back());
        assert_eq!(s.to_string(), "cache (restart unless-stopped: comes back)");
        for (policy, shown) in
            [(Some(""), "no"), (None, "no"), (Some("on-failure"), "on-failure"), (Some("no"), "no")]
        {
            let (c, i) = container(&[], policy);
            let s = standalone(&c, &i);
            assert_eq!(s.restart, shown);
            assert!(!s.comes_back(), "{policy:?}");
        }
    }
}
