//! The webhook: events POSTed as Slack-compatible JSON, in order, each retried with backoff, on a
//! task of its own so that a slow or absent receiver never holds up the run.
//!
//! HTTP is reqwest's: it honours `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (Slack from behind an
//! operator's proxy), speaks TLS with rustls over ring like the agent's gRPC, and trusts the
//! system's CA certificates.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::Url;

use crate::events::{Event, Sink};

/// Why a webhook could not be started or an event not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configured URL is not one we can POST to.
    #[error("{url}: {why}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The HTTP client could not be built (for https, usually: no CA certificates).
    #[error(
        "cannot set up the webhook's HTTP client: {} (an https webhook needs the system's CA \
         certificates: install ca-certificates)",
        chain(.0)
    )]
    Client(#[source] reqwest::Error),
    /// No answer: connecting, TLS, the proxy, or the receiver's silence.
    #[error("{}", chain(.0))]
    Send(#[source] reqwest::Error),
    /// The receiver answered, but not with a 2xx.
    #[error("the receiver answered {0}")]
    Status(reqwest::StatusCode),
}

/// An error and its causes on one line: reqwest's own text alone ("error sending request") does
/// not say what went wrong.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Parses a webhook URL: `http://` or `https://` with a host.
pub fn parse(url: &str) -> Result<Url, WebhookError> {
    let bad = |why: String| WebhookError::BadUrl { url: url.to_string(), why };
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("a webhook must be an http:// or https:// URL".into()));
    }
    Ok(parsed)
}

/// The sending task: the sink the coordinator sends to, and the task to wait for at the end.
pub struct Webhook {
    /// Where events go.
    pub sink: Sink,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts sending to `url` in the background.
    pub fn start(url: &str) -> Result<Webhook, WebhookError> {
        let url = parse(url)?;
        let client = client(url.scheme() == "https")?;
        let (sink, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let body = event.payload().to_string();
                let send = || post(&client, &url, &body);
                let backoff = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(5)
                    .with_jitter();
                match send.retry(backoff).await {
                    Ok(()) => tracing::debug!(event = %event.text(), "webhook delivered"),
                    Err(e) => {
                        tracing::warn!(error = %e, event = %event.text(), "webhook not delivered after retries")
                    }
                }
            }
        });
        Ok(Webhook { sink, task })
    }

    /// Closes the sink and waits up to `limit` for the events still queued to go out.
    pub async fn finish(self, limit: Duration) {
        drop(self.sink);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("webhook: events still queued at exit were dropped");
        }
    }
}

/// The client: proxies from the environment, the system's CAs for https.
pub(crate) fn client(https: bool) -> Result<reqwest::Client, WebhookError> {
    // reqwest's own provider would be aws-lc-rs (a C build, a second crypto library): ring is the
    // one the agent's TLS already uses. Err means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .user_agent("swarm-upgrade")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        // Events come minutes apart: a kept-alive connection would only be found closed.
        .pool_max_idle_per_host(0)
        // A redirect is a misconfigured URL, reported as such rather than followed.
        .redirect(reqwest::redirect::Policy::none());
    // A plain-http receiver needs no CA certificates: a host without ca-certificates still sends.
    let builder = if https { builder } else { builder.tls_certs_only([]) };
    builder.build().map_err(WebhookError::Client)
}

/// One POST; Ok on a 2xx answer.
async fn post(client: &reqwest::Client, url: &Url, body: &str) -> Result<(), WebhookError> {
    let answer = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(WebhookError::Send)?;
    match answer.status() {
        status if status.is_success() => Ok(()),
        status => Err(WebhookError::Status(status)),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn urls_parse_with_their_default_ports() {
        let slack = parse("https://hooks.slack.com/services/T/B/x").unwrap();
        assert_eq!(
            (slack.scheme(), slack.host_str(), slack.port_or_known_default(), slack.path()),
            ("https", Some("hooks.slack.com"), Some(443), "/services/T/B/x")
        );
        let plain = parse("http://10.0.0.1:8080/hook").unwrap();
        assert_eq!(
            (plain.scheme(), plain.host_str(), plain.port_or_known_default(), plain.path()),
            ("http", Some("10.0.0.1"), Some(8080), "/hook")
        );
        assert_eq!(parse("http://receiver").unwrap().path(), "/");
        assert!(parse("ftp://x").is_err());
        assert!(parse("http://:80/").is_err());
    }

    /// Against a real socket: the first attempt is refused with 500, the retry is delivered, in order.
    #[tokio::test]
    async fn events_are_delivered_in_order_and_retried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for attempt in 0..3 {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let mut got = String::new();
                // Until the body after the head is whole JSON.
                while got
                    .split_once("\r\n\r\n")
                    .is_none_or(|(_, b)| serde_json::from_str::<serde_json::Value>(b).is_err())
                {
                    let n = conn.read(&mut buf).await.unwrap();
                    got.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let status = if attempt == 0 { "500 Internal Server Error" } else { "200 OK" };
                conn.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                )
                .await
                .unwrap();
                if attempt > 0 {
                    bodies.push(got.split("\r\n\r\n").nth(1).unwrap().to_string());
                }
            }
            bodies
        });
        let hook = Webhook::start(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        hook.sink
            .send(Event::NodeDone { run: "r".into(), node: "worker1".into(), seconds: 30 })
            .unwrap();
        hook.sink
            .send(Event::RunFinished {
                run: "r".into(),
                outcome: "succeeded".into(),
                reason: "all done".into(),
            })
            .unwrap();
        hook.finish(Duration::from_secs(30)).await;
        let bodies = receiver.await.unwrap();
        let events: Vec<serde_json::Value> =
            bodies.iter().map(|b| serde_json::from_str(b).unwrap()).collect();
        assert_eq!(events[0]["swarm_upgrade"]["event"], "node-done");
        assert_eq!(events[0]["text"], "swarm-upgrade: worker1 done in 30s (run r)");
        assert_eq!(events[1]["swarm_upgrade"]["event"], "run-finished");
    }

    /// A failed attempt's warning says where and why, not only reqwest's "error sending request".
    #[tokio::test]
    async fn a_failure_names_the_receiver_and_the_cause() {
        let e = WebhookError::Status(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "the receiver answered 500 Internal Server Error");
        let url = parse("http://127.0.0.1:1/hook").unwrap();
        let e = post(&client(false).unwrap(), &url, "{}").await.unwrap_err().to_string();
        assert!(e.contains("127.0.0.1:1") && e.contains("refused"), "{e}");
    }
}
