//! Prometheus metrics of the agent and the coordinator: a small in-process registry rendered in
//! the text exposition format and served on `GET /metrics`. A coordinator is a batch job, so it
//! also leaves its final figures in a file for node_exporter's textfile collector.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// Runs by outcome (coordinator).
pub const RUNS: &str = "swarm_upgrade_runs_total";
/// Time each node spent in each phase (coordinator).
pub const PHASE_SECONDS: &str = "swarm_upgrade_node_phase_duration_seconds";
/// The phase each node is in: 1 for its current phase (coordinator).
pub const CURRENT_PHASE: &str = "swarm_upgrade_current_phase";
/// Whether this coordinator holds the cluster-wide lock (coordinator).
pub const LOCK_HELD: &str = "swarm_upgrade_lock_held";
/// Nodes rolled back to their previous packages (coordinator).
pub const ROLLBACKS: &str = "swarm_upgrade_rollbacks_total";
/// Agent operations by operation and result (agent).
pub const AGENT_OPS: &str = "swarm_upgrade_agent_operations_total";

const HELP: &[(&str, &str, &str)] = &[
    (RUNS, "counter", "Runs ended, by outcome."),
    (PHASE_SECONDS, "histogram", "Seconds a node spent in a phase of its upgrade."),
    (CURRENT_PHASE, "gauge", "1 for the phase each node of the run is in."),
    (LOCK_HELD, "gauge", "1 while this coordinator holds the cluster-wide lock."),
    (ROLLBACKS, "counter", "Nodes rolled back to their previous packages."),
    (
        AGENT_OPS,
        "counter",
        "Operations this agent carried out, by operation and result (ok, or the kind of failure: busy, failed, invalid, stale, unauthorized).",
    ),
];

/// Upper bounds of the phase duration histogram, in seconds.
pub const PHASE_BUCKETS: [f64; 12] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

type Key = (&'static str, String);

#[derive(Default)]
struct Registry {
    values: BTreeMap<Key, f64>,
    histograms: BTreeMap<Key, (Vec<u64>, f64, u64)>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect::<Vec<_>>().join(",")
}

/// Adds one to a counter.
pub fn inc(name: &'static str, pairs: &[(&str, &str)]) {
    *registry().values.entry((name, labels(pairs))).or_default() += 1.0;
}

/// Sets a gauge.
pub fn set(name: &'static str, pairs: &[(&str, &str)], value: f64) {
    registry().values.insert((name, labels(pairs)), value);
}

/// Sets the one-hot current phase of `node`.
pub fn set_phase(node: &str, phase: &str) {
    let mut r = registry();
    let prefix = labels(&[("node", node)]) + ",";
    r.values.retain(|(n, l), _| !(*n == CURRENT_PHASE && l.starts_with(&prefix)));
    r.values.insert((CURRENT_PHASE, labels(&[("node", node), ("phase", phase)])), 1.0);
}

/// Records one observation in a histogram.
pub fn observe(name: &'static str, pairs: &[(&str, &str)], value: f64) {
    let mut r = registry();
    let h = r
        .histograms
        .entry((name, labels(pairs)))
        .or_insert_with(|| (vec![0; PHASE_BUCKETS.len()], 0.0, 0));
    for (i, bound) in PHASE_BUCKETS.iter().enumerate() {
        if value <= *bound {
            h.0[i] += 1;
        }
    }
    h.1 += value;
    h.2 += 1;
}

/// Everything recorded, in the text exposition format.
pub fn render() -> String {
    let r = registry();
    let mut out = String::new();
    for (name, kind, help) in HELP {
        let values: Vec<_> = r.values.iter().filter(|((n, _), _)| n == name).collect();
        let hists: Vec<_> = r.histograms.iter().filter(|((n, _), _)| n == name).collect();
        if values.is_empty() && hists.is_empty() {
            continue;
        }
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for ((_, l), v) in values {
            out += &if l.is_empty() {
                format!("{name} {v}\n")
            } else {
                format!("{name}{{{l}}} {v}\n")
            };
        }
        for ((_, l), (buckets, sum, count)) in hists {
            let sep = if l.is_empty() { "" } else { "," };
            for (bound, c) in PHASE_BUCKETS.iter().zip(buckets) {
                out += &format!("{name}_bucket{{{l}{sep}le=\"{bound}\"}} {c}\n");
            }
            out += &format!("{name}_bucket{{{l}{sep}le=\"+Inf\"}} {count}\n");
            let braces = if l.is_empty() { String::new() } else { format!("{{{l}}}") };
            out += &format!("{name}_sum{braces} {sum}\n{name}_count{braces} {count}\n");
        }
    }
    out
}

/// Serves `GET /metrics` on `addr` in the background; any other path answers 404.
pub async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let (status, body) =
                    if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
                        ("200 OK", render())
                    } else {
                        ("404 Not Found", "only /metrics is served here\n".to_string())
                    };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(())
}

/// Writes the figures for node_exporter's textfile collector (atomically, by rename).
pub fn write_textfile(path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, render())?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_exposition_format() {
        inc(AGENT_OPS, &[("operation", "upgrade"), ("result", "ok")]);
        inc(AGENT_OPS, &[("operation", "upgrade"), ("result", "ok")]);
        set_phase("worker1", "drain");
        set_phase("worker1", "upgrade");
        observe(PHASE_SECONDS, &[("phase", "restart")], 4.2);
        observe(PHASE_SECONDS, &[("phase", "restart")], 40.0);
        let text = render();
        assert!(text.contains("# TYPE swarm_upgrade_agent_operations_total counter\n"), "{text}");
        assert!(
            text.contains(
                "swarm_upgrade_agent_operations_total{operation=\"upgrade\",result=\"ok\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("swarm_upgrade_current_phase{node=\"worker1\",phase=\"upgrade\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("phase=\"drain\""), "one phase per node: {text}");
        assert!(
            text.contains(
                "swarm_upgrade_node_phase_duration_seconds_bucket{phase=\"restart\",le=\"5\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("swarm_upgrade_node_phase_duration_seconds_bucket{phase=\"restart\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(
            text.contains("swarm_upgrade_node_phase_duration_seconds_count{phase=\"restart\"} 2\n"),
            "{text}"
        );
        assert_eq!(labels(&[("a", "x\"y")]), "a=\"x\\\"y\"");
    }
}
