//! A real Prometheus for the alert gate's lab (issue 17, item 2): Debian 12's `prometheus`
//! package, unpacked (nothing of the machine's own packages changes) and started on this machine,
//! where the lab's nodes reach it at their network's gateway. It scrapes every node's agent
//! metrics and an alarm this process serves, with two rules: `LabAlarm` fires while the alarm is
//! raised ([`Prometheus::raise`]), `LabNoise` always fires (for the gate's filter to ignore).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{Outcome, get_blocking};

/// A running Prometheus and the alarm it scrapes; both stop when it is dropped.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    port: u16,
    alarm: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The URL the lab's nodes reach it at (for `gates.prometheus_url`).
    pub url: String,
}

/// A free TCP port on every address (bound then let go).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?.local_addr()?.port())
}

/// Serves `lab_alarm 0|1` on a free port until `stop`; returns the port.
fn serve_alarm(alarm: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let value = u8::from(alarm.load(Ordering::Relaxed));
            let body = format!(
                "# HELP lab_alarm 1 while the lab test raises its alarm\n# TYPE lab_alarm gauge\nlab_alarm {value}\n"
            );
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    Ok(port)
}

const RULES: &str = "groups:
  - name: lab
    rules:
      - alert: LabAlarm
        expr: lab_alarm > 0
        labels: {severity: critical}
      - alert: LabNoise
        expr: vector(1)
        labels: {severity: none}
";

impl Prometheus {
    /// Starts Prometheus scraping `agents` (`ip:port` of each node's agent metrics) every second,
    /// for the lab whose gateway is `gateway`; waits until it is ready.
    pub fn start(gateway: &str, agents: &[String]) -> Result<Prometheus> {
        let unpacked = crate::debian::fetch_sources(crate::debian::PROMETHEUS)?;
        let binary = unpacked.tree("prometheus", "bookworm").join("usr/bin/prometheus");
        let dir = std::env::temp_dir()
            .join(format!("swarm-upgrade-lab-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        let alarm = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let alarm_port = serve_alarm(alarm.clone(), stop.clone())?;
        let quoted: Vec<String> = agents.iter().map(|a| format!("'{a}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ['{rules}']
scrape_configs:
  - job_name: swarm-upgrade-agents
    static_configs: [{{targets: [{agents}]}}]
  - job_name: lab-alarm
    static_configs: [{{targets: ['127.0.0.1:{alarm_port}']}}]
",
            rules = dir.join("rules.yml").display(),
            agents = quoted.join(", "),
        );
        std::fs::write(dir.join("rules.yml"), RULES)?;
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=0.0.0.0:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let p =
            Prometheus { child, dir, port, alarm, stop, url: format!("http://{gateway}:{port}") };
        let t0 = Instant::now();
        while !matches!(p.get("/-/ready"), Some((200, _))) {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("Prometheus was not ready within 60 s: {}", p.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(p)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        match get_blocking(&format!("127.0.0.1:{}", self.port), path, Duration::from_secs(5)) {
            Outcome::Status(code, body) => Some((code, body)),
            _ => None,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An API answer's JSON (the body from its first `{` to its last `}`, whatever the framing).
    pub fn api(&self, path: &str) -> serde_json::Value {
        let Some((200, body)) = self.get(path) else { return serde_json::Value::Null };
        let (Some(from), Some(to)) = (body.find('{'), body.rfind('}')) else {
            return serde_json::Value::Null;
        };
        serde_json::from_str(&body[from..=to]).unwrap_or_default()
    }

    /// The names of the alerts firing now, sorted.
    pub fn firing(&self) -> Vec<String> {
        let doc = self.api("/api/v1/alerts");
        let mut names: Vec<String> = doc["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    /// The agents' scrape targets that are up.
    pub fn agents_up(&self) -> usize {
        let doc = self.api("/api/v1/query?query=up%7Bjob%3D%22swarm-upgrade-agents%22%7D%3D%3D1");
        doc["data"]["result"].as_array().map_or(0, Vec::len)
    }

    /// Raises or lowers the alarm; returns once `LabAlarm` fires or not accordingly (at most a
    /// minute).
    pub fn raise(&self, on: bool) -> Result<()> {
        self.alarm.store(on, Ordering::Relaxed);
        let t0 = Instant::now();
        while self.firing().iter().any(|n| n == "LabAlarm") != on {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("LabAlarm did not follow the alarm ({on}) within 60 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
