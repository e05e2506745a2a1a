//! A minimal HTTP/1.1 client (one request per connection, as a browser behind a balancer would open
//! them), used by the load generator and the lab's checks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status (200 is the only success).
    Status(u16, String),
    /// The connection could not be made.
    Connect,
    /// No complete response within the time limit.
    Timeout,
    /// The connection broke or the response was not HTTP.
    Broken,
}

/// `GET http://{addr}{path}` with a time limit over the whole exchange.
pub async fn get(addr: &str, path: &str, limit: Duration) -> Outcome {
    match tokio::time::timeout(limit, exchange(addr, path)).await {
        Err(_) => Outcome::Timeout,
        Ok(o) => o,
    }
}

async fn exchange(addr: &str, path: &str) -> Outcome {
    let Ok(mut s) = TcpStream::connect(addr).await else { return Outcome::Connect };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: swarm-upgrade-lab\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return Outcome::Broken;
    }
    let mut buf = Vec::new();
    if s.read_to_end(&mut buf).await.is_err() {
        return Outcome::Broken;
    }
    parse(&buf)
}

/// Parses a whole response: its status and body.
pub fn parse(raw: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return Outcome::Broken };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse().ok());
    match status {
        Some(code) => Outcome::Status(code, body.to_string()),
        None => Outcome::Broken,
    }
}

/// Blocking `GET`, for the lab's checks.
pub fn get_blocking(addr: &str, path: &str, limit: Duration) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(get(addr, path, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nhi"), Outcome::Status(200, "hi".into()));
        assert_eq!(
            parse(b"HTTP/1.0 503 Service Unavailable\r\n\r\n"),
            Outcome::Status(503, String::new())
        );
        assert_eq!(parse(b""), Outcome::Broken, "an empty reply");
        assert_eq!(parse(b"garbage\r\n\r\n"), Outcome::Broken);
    }

    #[tokio::test]
    async fn refused_is_connect() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        assert_eq!(get(&addr, "/", Duration::from_secs(2)).await, Outcome::Connect);
    }
}
