//! `lab-web`, the lab workload's server (this tool, copied into the workload image): answers `/`
//! with its task and node, `/health` with 200 while serving. On SIGTERM it turns `/health` to 503
//! and keeps serving for a drain period, so the balancer's health checks take it out before its
//! port closes, then finishes the requests in flight and exits. It also serves the lab repository
//! as static files (busybox's httpd lingers 10 s on every connection apt opens).

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
    let who = format!(
        "task={} node={}\n",
        std::env::var("TASK").unwrap_or_default(),
        std::env::var("NODE").unwrap_or_default()
    );
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

/// Reads a request head; its method and path (None when the client closed first).
async fn request(conn: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf[len..]))
            .await
            .map_err(std::io::Error::other)??;
        if n == 0 {
            return Ok(None);
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]).to_string();
    let mut words = head.split_whitespace();
    Ok(Some((words.next().unwrap_or("GET").to_string(), words.next().unwrap_or("/").to_string())))
}

async fn answer(mut conn: TcpStream, who: &str, draining: bool) -> std::io::Result<()> {
    let Some((_, path)) = request(&mut conn).await? else { return Ok(()) };
    let (status, body) = match (path.as_str(), draining) {
        ("/health", true) => ("503 Service Unavailable", "draining\n"),
        ("/health", false) => ("200 OK", "ok\n"),
        _ => ("200 OK", who),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}

/// The container health check: `/health` on the local port answers 200.
pub async fn check(port: u16) -> bool {
    matches!(
        crate::http::get(&format!("127.0.0.1:{port}"), "/health", Duration::from_secs(2)).await,
        crate::http::Outcome::Status(200, _)
    )
}

/// Serves the files under `root` on `0.0.0.0:port` (GET and HEAD) until SIGTERM.
pub async fn serve_files(root: std::path::PathBuf, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let mut term = signal(SignalKind::terminate())?;
    eprintln!("lab-web: serving {} on :{port}", root.display());
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let root = root.clone();
                tokio::spawn(async move {
                    let _ = file(conn, &root).await;
                });
            }
        }
    }
}

async fn file(mut conn: TcpStream, root: &std::path::Path) -> std::io::Result<()> {
    let Some((method, path)) = request(&mut conn).await? else { return Ok(()) };
    let path = percent_decode(path.split('?').next().unwrap_or("/"));
    let full = root.join(path.trim_start_matches('/'));
    let found = if path.split('/').any(|p| p == "..") {
        None
    } else {
        tokio::fs::File::open(&full).await.ok()
    };
    let meta = match &found {
        Some(f) => f.metadata().await.ok().filter(|m| m.is_file()),
        None => None,
    };
    let (Some(mut f), Some(meta)) = (found, meta) else {
        let body = "not found\n";
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        return conn.shutdown().await;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        meta.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        tokio::io::copy(&mut f, &mut conn).await?;
    }
    conn.shutdown().await
}

/// Decodes `%XX` escapes (apt escapes `~` and `:` in file names).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            percent_decode("/a/docker-ce_28.5.2-1%7edebian.13%7etrixie_amd64.deb"),
            "/a/docker-ce_28.5.2-1~debian.13~trixie_amd64.deb"
        );
        assert_eq!(percent_decode("/x%2"), "/x%2", "a cut escape stays");
        assert_eq!(percent_decode("/%zz"), "/%zz");
    }
}
