//! Prometheus metrics of the agent and the coordinator: prometheus-client's registry, rendered in
//! the classic text format (0.0.4) and served on `GET /metrics` by hyper. A coordinator is a batch
//! job, so it also leaves its final figures in a file for node_exporter's textfile collector.
//!
//! The classic format rather than OpenMetrics because the textfile collector reads only that one,
//! and one rendering serves both.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Mutex, OnceLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{counter, gauge, histogram};
use prometheus_client::registry::Registry;

/// A counter, by the name it is exposed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Counter(pub &'static str);

/// A gauge, by the name it is exposed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gauge(pub &'static str);

/// A histogram (buckets [`PHASE_BUCKETS`]), by the name it is exposed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Histogram(pub &'static str);

/// Runs by outcome (coordinator).
pub const RUNS: Counter = Counter("swarm_upgrade_runs_total");
/// Time each node spent in each phase (coordinator).
pub const PHASE_SECONDS: Histogram = Histogram("swarm_upgrade_node_phase_duration_seconds");
/// The phase each node is in: 1 for its current phase (coordinator).
pub const CURRENT_PHASE: Gauge = Gauge("swarm_upgrade_current_phase");
/// Whether this coordinator holds the cluster-wide lock (coordinator).
pub const LOCK_HELD: Gauge = Gauge("swarm_upgrade_lock_held");
/// Whether the run holds after its canary, waiting for `approve` or its soak (coordinator).
pub const RUN_HELD: Gauge = Gauge("swarm_upgrade_run_held");
/// Whether the run waits before a node for the alert gate to open (coordinator).
pub const GATE_CLOSED: Gauge = Gauge("swarm_upgrade_alert_gate_closed");
/// Nodes rolled back to their previous packages (coordinator).
pub const ROLLBACKS: Counter = Counter("swarm_upgrade_rollbacks_total");
/// Agent operations by operation and result (agent).
pub const AGENT_OPS: Counter = Counter("swarm_upgrade_agent_operations_total");
/// Requests sent to the Docker API, by request (coordinator; an agent counts its engine unlocks).
pub const DOCKER_REQUESTS: Counter = Counter("swarm_upgrade_docker_requests_total");
/// Calls made to the nodes' agents, by operation (coordinator).
pub const AGENT_CALLS: Counter = Counter("swarm_upgrade_agent_calls_total");
/// Writes to the run record's store, by part (`header` or `shard`) (coordinator).
pub const STORE_WRITES: Counter = Counter("swarm_upgrade_store_writes_total");
/// Bytes of those writes (coordinator).
pub const STORE_WRITTEN_BYTES: Counter = Counter("swarm_upgrade_store_written_bytes_total");
/// Reads of the run record, by what was read (`header` only, the rest known; or `whole`)
/// (coordinator).
pub const STORE_LOADS: Counter = Counter("swarm_upgrade_store_loads_total");
/// The run record's size in the store, header and shards, as last read or written (coordinator).
pub const STORE_BYTES: Gauge = Gauge("swarm_upgrade_store_bytes");

// Help texts without their full stop: the registry adds it.
const COUNTERS: &[(Counter, &str)] = &[
    (RUNS, "Runs ended, by outcome"),
    (ROLLBACKS, "Nodes rolled back to their previous packages"),
    (
        AGENT_OPS,
        "Operations this agent carried out, by operation and result (ok, or the kind of failure: busy, failed, invalid, stale, unauthorized)",
    ),
    (DOCKER_REQUESTS, "Requests this process sent to the Docker API, by request"),
    (AGENT_CALLS, "Calls this coordinator made to the nodes' agents, by operation"),
    (STORE_WRITES, "Writes of the run record to the swarm, by part (header or shard)"),
    (STORE_WRITTEN_BYTES, "Bytes of the run record written to the swarm"),
    (
        STORE_LOADS,
        "Reads of the run record, by what was read (the header only, or the whole record)",
    ),
];
const GAUGES: &[(Gauge, &str)] = &[
    (CURRENT_PHASE, "1 for the phase each node of the run is in"),
    (LOCK_HELD, "1 while this coordinator holds the cluster-wide lock"),
    (RUN_HELD, "1 while the run holds after its canary, waiting for approve or its soak"),
    (
        GATE_CLOSED,
        "1 while the run waits before a node for firing alerts to clear (the alert gate)",
    ),
    (
        STORE_BYTES,
        "Bytes of the run record in the swarm, header and shards, as last read or written",
    ),
];
const HISTOGRAMS: &[(Histogram, &str)] =
    &[(PHASE_SECONDS, "Seconds a node spent in a phase of its upgrade")];

/// Upper bounds of the phase duration histogram, in seconds.
pub const PHASE_BUCKETS: [f64; 12] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Label pairs in the order given; every metric is a family, so a series shows only once touched.
type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, histogram::Histogram, fn() -> histogram::Histogram>;

struct Metrics {
    registry: Registry,
    counters: HashMap<Counter, Family<Labels, counter::Counter>>,
    gauges: HashMap<Gauge, Family<Labels, gauge::Gauge>>,
    histograms: HashMap<Histogram, Histograms>,
    /// Each node's phase in [`CURRENT_PHASE`], so that entering the next one clears it.
    phases: Mutex<HashMap<String, String>>,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(register)
}

fn register() -> Metrics {
    let mut registry = Registry::default();
    let mut counters = HashMap::new();
    for (c, help) in COUNTERS {
        // prometheus-client appends `_total` to a counter's name itself.
        let family = Family::default();
        registry.register(c.0.strip_suffix("_total").unwrap_or(c.0), *help, family.clone());
        counters.insert(*c, family);
    }
    let mut gauges = HashMap::new();
    for (g, help) in GAUGES {
        let family = Family::default();
        registry.register(g.0, *help, family.clone());
        gauges.insert(*g, family);
    }
    let mut histograms = HashMap::new();
    for (h, help) in HISTOGRAMS {
        let family: Histograms =
            Family::new_with_constructor(|| histogram::Histogram::new(PHASE_BUCKETS));
        registry.register(h.0, *help, family.clone());
        histograms.insert(*h, family);
    }
    Metrics { registry, counters, gauges, histograms, phases: Mutex::default() }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Adds one to a counter.
pub fn inc(name: Counter, pairs: &[(&str, &str)]) {
    metrics().counters[&name].get_or_create(&labels(pairs)).inc();
}

/// Adds `n` to a counter.
pub fn add(name: Counter, pairs: &[(&str, &str)], n: u64) {
    metrics().counters[&name].get_or_create(&labels(pairs)).inc_by(n);
}

/// Sets a gauge.
pub fn set(name: Gauge, pairs: &[(&str, &str)], value: i64) {
    metrics().gauges[&name].get_or_create(&labels(pairs)).set(value);
}

/// Sets the one-hot current phase of `node`.
pub fn set_phase(node: &str, phase: &str) {
    let m = metrics();
    let family = &m.gauges[&CURRENT_PHASE];
    let mut phases = m.phases.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(was) = phases.insert(node.to_string(), phase.to_string()) {
        family.remove(&labels(&[("node", node), ("phase", &was)]));
    }
    family.get_or_create(&labels(&[("node", node), ("phase", phase)])).set(1);
}

/// Records one observation in a histogram.
pub fn observe(name: Histogram, pairs: &[(&str, &str)], value: f64) {
    metrics().histograms[&name].get_or_create(&labels(pairs)).observe(value);
}

/// Everything recorded, in the text exposition format.
pub fn render() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &metrics().registry);
    out
}

/// Serves `GET /metrics` on `addr` in the background; any other path answers 404.
pub async fn serve(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else { continue };
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    // A scraper that never finishes its request does not keep a task for long.
                    .header_read_timeout(std::time::Duration::from_secs(5))
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(conn),
                        hyper::service::service_fn(answer),
                    ),
            );
        }
    });
    Ok(())
}

/// The answer to one request: the metrics for `GET /metrics`, 404 for anything else.
async fn answer<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = if request.method() == Method::GET && request.uri().path() == "/metrics" {
        (StatusCode::OK, render())
    } else {
        (StatusCode::NOT_FOUND, "only /metrics is served here\n".to_string())
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    Ok(response)
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
        set(LOCK_HELD, &[], 1);
        inc(AGENT_OPS, &[("operation", "x\"y"), ("result", "ok")]);
        add(STORE_WRITTEN_BYTES, &[], 1500);
        add(STORE_WRITTEN_BYTES, &[], 20);
        let text = render();
        assert!(text.contains("swarm_upgrade_store_written_bytes_total 1520\n"), "{text}");
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
        assert!(text.contains("swarm_upgrade_lock_held 1\n"), "no braces without labels: {text}");
        assert!(text.contains("{operation=\"x\\\"y\",result=\"ok\"} 1\n"), "escaped: {text}");
        for (name, help) in [
            (AGENT_OPS.0, COUNTERS[2].1),
            (CURRENT_PHASE.0, GAUGES[0].1),
            (PHASE_SECONDS.0, HISTOGRAMS[0].1),
        ] {
            assert!(text.contains(&format!("# HELP {name} {help}.\n")), "{name}: {text}");
        }
    }

    #[tokio::test]
    async fn only_get_metrics_is_served() {
        let get = |uri: &str| Request::get(uri).body(()).unwrap();
        let ok = answer(get("/metrics")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[hyper::header::CONTENT_TYPE], prometheus_text::CONTENT_TYPE);
        assert_eq!(answer(get("/metrics?x=1")).await.unwrap().status(), StatusCode::OK);
        assert_eq!(answer(get("/")).await.unwrap().status(), StatusCode::NOT_FOUND);
        let post = Request::post("/metrics").body(()).unwrap();
        assert_eq!(answer(post).await.unwrap().status(), StatusCode::NOT_FOUND);
    }

    /// Over a real socket, as Prometheus and curl scrape it.
    #[tokio::test]
    async fn metrics_are_served_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        serve(addr).await.unwrap();
        set(LOCK_HELD, &[], 1);
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(
            got.contains("\r\n\r\n# HELP ") && got.contains("\nswarm_upgrade_lock_held 1\n"),
            "{got}"
        );
    }
}
