//! The alert gate's source: Prometheus' HTTP API (`GET <url>/api/v1/alerts`), whose answer lists
//! every alert of its rules with its state; only `firing` ones are kept (a `pending` alert has
//! not held for its rule's `for:` yet). HTTP is reqwest's, as the webhook's (proxies from the
//! environment, rustls over ring, the system's CA certificates for https).

use std::collections::BTreeMap;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::Url;
use serde::Deserialize;

use super::webhook::{chain, client};
use crate::model::alerts::Alert;
use crate::ports::{Alerts, PortError};

/// A Prometheus server's alerts.
pub struct Prometheus {
    base: String,
    url: Url,
    client: reqwest::Client,
}

impl Prometheus {
    /// The server at `base` (`http://prometheus:9090`, or with a path prefix
    /// `http://monitor/prometheus`); refused when it is no http(s) URL.
    pub fn new(base: &str) -> Result<Prometheus, PortError> {
        let bad = |why: String| {
            PortError::Invalid(format!(
                "gates.prometheus_url {base:?} is not usable: {why}; write Prometheus' base URL, e.g. \"http://prometheus:9090\""
            ))
        };
        let mut url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("it must be an http:// or https:// URL with a host".into()));
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let url = url.join("api/v1/alerts").map_err(|e| bad(e.to_string()))?;
        let client = client(url.scheme() == "https").map_err(|e| {
            PortError::Invalid(format!(
                "cannot set up the HTTP client for gates.prometheus_url ({}): an https URL needs the system's CA certificates (install ca-certificates)",
                chain(&e)
            ))
        })?;
        Ok(Prometheus { base: base.to_string(), url, client })
    }

    async fn ask(&self) -> Result<Vec<Alert>, PortError> {
        let unavailable = |why: String| {
            PortError::Unavailable(format!(
                "cannot read the firing alerts from {}: {why}",
                self.url
            ))
        };
        let answer =
            self.client.get(self.url.clone()).send().await.map_err(|e| unavailable(chain(&e)))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(unavailable(format!("it answered {status}")));
        }
        let body = answer.bytes().await.map_err(|e| unavailable(chain(&e)))?;
        parse(&body).map_err(unavailable)
    }
}

impl Alerts for Prometheus {
    fn source(&self) -> &str {
        &self.base
    }

    fn firing(&self) -> BoxFuture<'_, Result<Vec<Alert>, PortError>> {
        self.ask().boxed()
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    alerts: Vec<WireAlert>,
}

#[derive(Deserialize)]
struct WireAlert {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    state: String,
}

/// The firing alerts of an `/api/v1/alerts` answer, or why it is not one.
fn parse(body: &[u8]) -> Result<Vec<Alert>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("its answer is not Prometheus' alerts API ({e})"))?;
    if answer.status != "success" {
        return Err(format!(
            "it answered {}: {}",
            answer.status,
            answer.error.unwrap_or_else(|| "no error given".into())
        ));
    }
    let alerts = answer.data.ok_or("its answer has no data")?.alerts;
    Ok(alerts
        .into_iter()
        .filter(|a| a.state == "firing")
        .map(|a| {
            let name = a.labels.get("alertname").cloned().unwrap_or_else(|| "(unnamed)".into());
            let instance = a.labels.get("instance").or_else(|| a.labels.get("job"));
            Alert { name, instance: instance.cloned().unwrap_or_default() }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn only_firing_alerts_are_kept_with_their_place() {
        let body = br#"{"status":"success","data":{"alerts":[
            {"labels":{"alertname":"LabAlarm","instance":"10.0.0.1:9701","job":"a"},"state":"firing","activeAt":"2026-12-05T07:00:00Z","value":"1e+00"},
            {"labels":{"alertname":"Slow","job":"b"},"state":"pending"},
            {"labels":{"alertname":"Watchdog"},"state":"firing"}]}}"#;
        assert_eq!(
            parse(body).unwrap(),
            vec![
                Alert { name: "LabAlarm".into(), instance: "10.0.0.1:9701".into() },
                Alert { name: "Watchdog".into(), instance: String::new() },
            ]
        );
        assert!(parse(br#"{"status":"error","error":"bad"}"#).unwrap_err().contains("bad"));
        assert!(parse(b"<html>").unwrap_err().contains("not Prometheus' alerts API"));
    }

    #[test]
    fn urls_keep_their_path_prefix() {
        let p = Prometheus::new("http://monitor:9090/prometheus").unwrap();
        assert_eq!(p.url.as_str(), "http://monitor:9090/prometheus/api/v1/alerts");
        let p = Prometheus::new("http://10.0.0.1:9090/").unwrap();
        assert_eq!(p.url.as_str(), "http://10.0.0.1:9090/api/v1/alerts");
        assert!(Prometheus::new("prometheus:9090").is_err());
    }

    /// Against a real socket: the request's path, and a refused connection as unavailable.
    #[tokio::test]
    async fn asks_the_alerts_api_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap();
            let body = r#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"X"},"state":"firing"}]}}"#;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            conn.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let p = Prometheus::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let alerts = p.firing().await.unwrap();
        assert_eq!(alerts[0].name, "X");
        assert!(server.await.unwrap().starts_with("GET /api/v1/alerts HTTP/1.1"));
        let dead = Prometheus::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = dead.firing().await.unwrap_err();
        assert!(matches!(e, PortError::Unavailable(_)), "{e}");
    }
}
