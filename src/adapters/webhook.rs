//! The webhook: events POSTed as Slack-compatible JSON, in order, each retried with backoff, on a
//! task of its own so that a slow or absent receiver never holds up the run.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::events::{Event, Sink};

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// TLS or not.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
}

/// Parses a webhook URL.
pub fn parse(url: &str) -> Result<Url, String> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", r)) => (false, r),
        Some(("https", r)) => (true, r),
        _ => return Err(format!("{url}: a webhook must be an http:// or https:// URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse().map_err(|_| format!("{url}: bad port {p}"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url { tls, host: host.to_string(), port, path: path.to_string() })
}

/// The sending task: the sink the coordinator sends to, and the task to wait for at the end.
pub struct Webhook {
    /// Where events go.
    pub sink: Sink,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts sending to `url` in the background.
    pub fn start(url: &str) -> Result<Webhook, String> {
        let url = Arc::new(parse(url)?);
        let tls = if url.tls { Some(Arc::new(client_config()?)) } else { None };
        let (sink, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let body = event.payload().to_string();
                let send = || post(&url, tls.clone(), &body);
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

fn client_config() -> Result<tokio_rustls::rustls::ClientConfig, String> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "no CA certificates found for the https webhook: install ca-certificates".into()
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One POST; Ok on a 2xx answer.
async fn post(
    url: &Url,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    body: &str,
) -> Result<(), String> {
    let limit = Duration::from_secs(10);
    let tcp =
        tokio::time::timeout(limit, tokio::net::TcpStream::connect((url.host.as_str(), url.port)))
            .await
            .map_err(|_| format!("connecting to {}:{} timed out", url.host, url.port))?
            .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: swarm-upgrade\r\nConnection: close\r\n\r\n",
        url.path,
        url.host,
        body.len()
    );
    let answer = match tls {
        None => tokio::time::timeout(limit, exchange(tcp, &head, body)).await,
        Some(config) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", url.host))?;
            tokio::time::timeout(limit, exchange(stream, &head, body)).await
        }
    }
    .map_err(|_| "the receiver did not answer in 10 s".to_string())?
    .map_err(|e| format!("webhook exchange: {e}"))?;
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", answer.lines().next().unwrap_or("")))
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    head: &str,
    body: &str,
) -> std::io::Result<String> {
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.flush().await?;
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_default_ports() {
        assert_eq!(
            parse("https://hooks.slack.com/services/T/B/x").unwrap(),
            Url {
                tls: true,
                host: "hooks.slack.com".into(),
                port: 443,
                path: "/services/T/B/x".into()
            }
        );
        assert_eq!(
            parse("http://10.0.0.1:8080/hook").unwrap(),
            Url { tls: false, host: "10.0.0.1".into(), port: 8080, path: "/hook".into() }
        );
        assert_eq!(parse("http://receiver").unwrap().path, "/");
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
}
