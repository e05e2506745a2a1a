//! Raw JSON requests to the Docker API, for the one write bollard's typed model cannot round-trip:
//! its `TaskSpecContainerSpec` names the health check `HealthCheck` where the engine writes
//! `Healthcheck`, so a typed read-modify-write of a service silently drops the health check, and
//! the swarm then replaces every task of the service (a rolling update that can stall on host-mode
//! ports). Found in the lab. Services are therefore scaled on the engine's own JSON, untouched but
//! for the replica count.

use std::path::PathBuf;

use bollard::errors::Error as BollardError;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where the engine listens, as `DOCKER_HOST` says (the docker CLI's rules), for raw requests.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// Plain TCP `host:port` (no TLS).
    Tcp(String),
}

impl Endpoint {
    /// From `DOCKER_HOST`, else the local socket. TLS endpoints are not supported for raw requests.
    pub(crate) fn from_env() -> Result<Endpoint, String> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        if let Some(path) = host.strip_prefix("unix://") {
            Ok(Endpoint::Unix(PathBuf::from(path)))
        } else if let Some(addr) =
            host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://"))
        {
            if std::env::var_os("DOCKER_TLS_VERIFY").is_some() {
                return Err(format!(
                    "DOCKER_HOST={host} with TLS: run swarm-upgrade on a manager with its local socket"
                ));
            }
            Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_string()))
        } else {
            Err(format!(
                "DOCKER_HOST={host} is not unix:// or tcp://: run swarm-upgrade on a manager with its local socket"
            ))
        }
    }

    /// One HTTP/1.0 request (so the engine answers with a plain body and closes): status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), BollardError> {
        let first = path.split(['?', '/']).find(|s| !s.is_empty()).unwrap_or_default();
        super::sent(&format!("{method} /{first}"));
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let raw = match self {
            Endpoint::Unix(p) => {
                exchange(tokio::net::UnixStream::connect(p).await?, &head, &body).await?
            }
            Endpoint::Tcp(a) => {
                exchange(tokio::net::TcpStream::connect(a).await?, &head, &body).await?
            }
        };
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json: Value = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or(Value::String(body.into()))
        };
        if !(200..300).contains(&status) {
            let message = json
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| body.trim().to_string());
            return Err(BollardError::DockerResponseServerError { status_code: status, message });
        }
        Ok((status, json))
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    head: &str,
    body: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

/// The service's spec with only the replica count changed, and the version index it was read at.
pub(crate) fn scaled(service: &Value, replicas: u64) -> Result<(Value, u64), String> {
    let version = service
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .ok_or("the service has no version index")?;
    let mut spec = service.get("Spec").cloned().ok_or("the service has no spec")?;
    let mode = spec.pointer_mut("/Mode/Replicated").ok_or("only replicated services are scaled")?;
    mode["Replicas"] = Value::from(replicas);
    Ok((spec, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_changes_the_replicas_and_nothing_else() {
        let raw =
            std::fs::read_to_string("tests/fixtures/docker/service-with-healthcheck.json").unwrap();
        let service: Value = serde_json::from_str(&raw).unwrap();
        let (spec, version) = scaled(&service, 5).unwrap();
        assert_eq!(version, service["Version"]["Index"].as_u64().unwrap());
        let mut expected = service["Spec"].clone();
        expected["Mode"]["Replicated"]["Replicas"] = Value::from(5);
        assert_eq!(spec, expected);
        assert!(
            spec.pointer("/TaskTemplate/ContainerSpec/Healthcheck/Test").is_some(),
            "the health check is kept"
        );
        // The typed model loses it: the reason this module exists.
        let typed: bollard::models::ServiceSpec =
            serde_json::from_value(service["Spec"].clone()).unwrap();
        let back = serde_json::to_value(typed).unwrap();
        assert!(
            back.pointer("/TaskTemplate/ContainerSpec/Healthcheck").is_none(),
            "bollard still drops Healthcheck; if fixed, the raw path can go"
        );
    }

    #[test]
    fn global_services_are_not_scaled() {
        let service =
            serde_json::json!({"Version": {"Index": 3}, "Spec": {"Mode": {"Global": {}}}});
        assert!(scaled(&service, 2).is_err());
    }
}
