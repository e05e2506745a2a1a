//! `lab-web`, the lab workload's server (this tool, copied into the workload image): answers `/`
//! with its task and node, `/health` with 200 while serving. On SIGTERM it turns `/health` to 503
//! and keeps serving for a drain period, so the balancer's health checks take it out before its
//! port closes, then finishes the requests in flight and exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

/// Serves on `0.0.0.0:port` until SIGTERM or SIGINT, then drains for `drain`.
pub async fn serve(port: u16, drain: Duration) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let who = format!("task={} node={}\n", std::env::var("TASK").unwrap_or_default(), std::env::var("NODE").unwrap_or_default());
    let who: Arc<str> = who.into();
    let draining = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    eprintln!("lab-web: serving on :{port}");
    let stop = async {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    };
    tokio::pin!(stop);
    let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            _ = &mut stop, if deadline.is_none() => {
                eprintln!("lab-web: SIGTERM, failing health checks for {drain:?} before closing");
                draining.store(true, Ordering::SeqCst);
                deadline = Some(Box::pin(tokio::time::sleep(drain)));
            }
            _ = async { deadline.as_mut().unwrap().await }, if deadline.is_some() => break,
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let (who, draining, in_flight) = (who.clone(), draining.clone(), in_flight.clone());
                in_flight.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = answer(conn, &who, draining.load(Ordering::SeqCst)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
    drop(listener);
    for _ in 0..50 {
        if in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("lab-web: stopped");
    Ok(())
}

async fn answer(mut conn: TcpStream, who: &str, draining: bool) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf[len..])).await.map_err(std::io::Error::other)??;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let path = String::from_utf8_lossy(&buf[..len]).split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = match (path.as_str(), draining) {
        ("/health", true) => ("503 Service Unavailable", "draining\n"),
        ("/health", false) => ("200 OK", "ok\n"),
        _ => ("200 OK", who),
    };
    let resp =
        format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}

/// The container health check: `/health` on the local port answers 200.
pub async fn check(port: u16) -> bool {
    matches!(crate::http::get(&format!("127.0.0.1:{port}"), "/health", Duration::from_secs(2)).await, crate::http::Outcome::Status(200, _))
}
