//! The webhook goes through the proxy the environment names (`HTTP_PROXY`, `HTTPS_PROXY`), as an
//! operator behind one needs for Slack. A test binary of its own: it sets those variables for the
//! whole process.

use std::time::Duration;

use swarm_upgrade::adapters::webhook::Webhook;
use swarm_upgrade::events::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The request head a connection to the proxy opens with, after which it answers `status`.
async fn head(proxy: &tokio::net::TcpListener, status: &str) -> String {
    let accepted = tokio::time::timeout(Duration::from_secs(30), proxy.accept()).await;
    let (mut conn, _) = accepted.expect("nothing reached the proxy").unwrap();
    let (mut got, mut buf) = (String::new(), [0u8; 4096]);
    while !got.contains("\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before its head: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    conn.write_all(reply.as_bytes()).await.unwrap();
    got.lines().next().unwrap().to_string()
}

fn event() -> Event {
    Event::NodeDone { run: "r".into(), node: "worker1".into(), seconds: 30 }
}

#[tokio::test]
async fn http_and_https_webhooks_go_through_the_proxy_the_environment_names() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = format!("http://{}", proxy.local_addr().unwrap());
    // SAFETY: the only test in this binary, and its runtime has no other thread yet.
    unsafe {
        std::env::set_var("HTTP_PROXY", &at);
        std::env::set_var("HTTPS_PROXY", &at);
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let plain = Webhook::start("http://hooks.example.invalid/plain").unwrap();
    plain.sink.send(event()).unwrap();
    // Plain http is forwarded: the proxy is asked for the whole URL.
    let line = head(&proxy, "200 OK").await;
    assert_eq!(line, "POST http://hooks.example.invalid/plain HTTP/1.1");
    plain.finish(Duration::from_secs(5)).await;

    let tls = Webhook::start("https://hooks.example.invalid/tls").unwrap();
    tls.sink.send(event()).unwrap();
    // https is tunnelled: the proxy sees only where to, never the event.
    let line = head(&proxy, "403 Forbidden").await;
    assert_eq!(line, "CONNECT hooks.example.invalid:443 HTTP/1.1");
    tls.finish(Duration::from_millis(10)).await;
}
