//! What the lab's end-to-end tests share: the lab taken down at the end (every node's logs saved
//! first when the test failed), load through the balancer, the coordinator run on a node, the
//! services sampled while it runs, and reports under `target/lab/reports/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::Engine;
use crate::slots::Lease;
use crate::{lab, load};

/// Where every lab test's reports go: `target/lab/reports/`.
fn reports_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lab/reports")
}

/// `target/lab/reports/NAME`, created.
pub fn reports(name: &str) -> PathBuf {
    let dir = reports_root().join(name);
    std::fs::create_dir_all(&dir).expect("reports directory");
    dir
}

/// Writes `value` as pretty JSON to `dir/file`.
pub fn save(dir: &Path, file: &str, value: &impl Serialize) {
    std::fs::write(dir.join(file), serde_json::to_string_pretty(value).expect("serializes"))
        .expect("report written");
}

/// A lab for one test: taken down when dropped; on a failure every node's logs are saved to the
/// test's reports first (and the lab is kept, its slot no longer used by later tests, if
/// `LAB_KEEP` is set). Labs of the default size run two at a time, each in its own slot; a
/// bigger one runs alone.
pub struct LabGuard {
    /// The engine the lab runs on.
    pub engine: Engine,
    /// Where this test's reports go.
    pub reports: PathBuf,
    /// The swarm's nodes, managers first.
    pub nodes: Vec<lab::Host>,
    name: String,
    started: Instant,
    up_s: f64,
    // Given back after `drop` has taken the lab down: the slot is free again only then.
    lease: Option<Lease>,
    // Taken down already (`take_down`).
    down: bool,
}

/// Every lab slot, held by one test for all its labs (see [`LabGuard::up_alone`]); given back
/// when dropped.
pub struct Alone(Lease);

impl Alone {
    /// Waits until no other lab runs, and keeps others from starting until dropped.
    pub fn take() -> Alone {
        Alone(Lease::take(usize::MAX))
    }
}

impl LabGuard {
    /// Brings the default lab (three managers, two workers) up for the test `name`.
    pub fn up(name: &str, tool: &Path) -> LabGuard {
        LabGuard::up_shaped(name, tool, lab::Shape::default())
    }

    /// Brings a lab of `shape` up for the test `name`, once a slot is free (every slot, for a
    /// lab bigger than the default: its tasks and engines need the machine's cores to
    /// themselves).
    pub fn up_shaped(name: &str, tool: &Path, shape: lab::Shape) -> LabGuard {
        let alone = shape.len() > lab::Shape::default().len();
        let lease = Lease::take(if alone { usize::MAX } else { 1 });
        let slot = lease.0[0];
        LabGuard::up_in(name, tool, shape, slot, Some(lease))
    }

    /// Brings the default lab up for the test `name` on the machine `alone` holds: labs whose
    /// figures are compared with each other run with no other lab beside them.
    pub fn up_alone(name: &str, tool: &Path, alone: &Alone) -> LabGuard {
        LabGuard::up_in(name, tool, lab::Shape::default(), alone.0.0[0], None)
    }

    fn up_in(
        name: &str,
        tool: &Path,
        shape: lab::Shape,
        slot: u8,
        lease: Option<Lease>,
    ) -> LabGuard {
        let started = Instant::now();
        let opts = lab::Options {
            tool: tool.to_path_buf(),
            deb: std::env::var_os("SWARM_UPGRADE_DEB").map(PathBuf::from),
            shape,
            slot,
        };
        let (engine, timings) = lab::up(&opts).unwrap_or_else(|e| {
            // Not left running beside the next test's lab: its logs kept, then taken down.
            if let Some(engine) = crate::engine::Engine::find_slot(opts.slot) {
                let _ = lab::save_logs(&engine, &reports(name).join("logs"));
            }
            let _ = lab::down_slot(opts.slot, false);
            panic!("lab up: {e:#}")
        });
        eprintln!(
            "{name}: lab up in {:.1} s (slot {}, {})",
            timings.total().as_secs_f64(),
            opts.slot,
            engine.host
        );
        let dir = reports(name);
        let steps: Vec<(&str, f64)> = timings
            .0
            .iter()
            .map(|(step, d)| (*step, (d.as_secs_f64() * 10.0).round() / 10.0))
            .collect();
        save(
            &dir,
            "lab-up.json",
            &serde_json::json!({ "total_s": timings.total().as_secs_f64(), "steps": steps }),
        );
        let up_s = timings.total().as_secs_f64();
        LabGuard {
            reports: dir,
            nodes: shape.nodes(engine.slot),
            engine,
            name: name.into(),
            started,
            up_s,
            lease,
            down: false,
        }
    }

    /// Load through this lab's balancer, its web and solo frontends, at 50 requests/s.
    pub fn balancer_load(&self) -> load::Running {
        let slot = self.engine.slot;
        load::start(load::Options {
            targets: vec![
                format!("{}/", lab::balancer_web(slot)),
                format!("{}/", lab::balancer_solo(slot)),
            ],
            rate: 50,
            timeout: Duration::from_secs(5),
        })
    }

    /// `node`'s swarm node ID, as its own engine reports it. Tests name nodes by ID rather than by
    /// hostname: after engine restarts a manager can show another node's hostname for a while
    /// (moby/moby#46462, seen here after an upgrade), and `docker node inspect <hostname>` is then
    /// ambiguous.
    pub fn node_id(&self, node: &str) -> String {
        self.sh(node, "docker info --format '{{.Swarm.NodeID}}'")
    }

    /// The managers' names.
    pub fn managers(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.name.starts_with("manager"))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// `sh -c SCRIPT` on a node; panics with the error.
    pub fn sh(&self, node: &str, script: &str) -> String {
        self.engine.sh(node, script).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs `swarm-upgrade ARGS` on a node: (exit code, stdout, stderr).
    pub fn swarm_upgrade(&self, node: &str, args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["exec", node, "swarm-upgrade"];
        a.extend(args);
        let out = self.engine.command(&a).output().expect("docker exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = self.reports.join("logs");
            let _ = lab::save_logs(&self.engine, &dir);
            eprintln!("lab test failed: logs of every node in {}", dir.display());
            eprintln!(
                "the balancer's last server events:\n{}",
                lab::balancer_events(&self.engine, 40)
            );
            if std::env::var_os("LAB_KEEP").is_some() {
                eprintln!(
                    "lab kept: DOCKER_HOST={} docker ps; `cargo xtask lab down` removes it",
                    self.engine.host
                );
                self.record_time();
                if let Some(lease) = self.lease.take() {
                    lease.retire();
                }
                return;
            }
        }
        if !self.down
            && let Err(e) = lab::down_slot(self.engine.slot, false)
        {
            eprintln!("lab down: {e:#}");
        }
        self.record_time();
    }
}

impl LabGuard {
    /// Takes the lab down while its slot is still held, and says what is left of it: `None` when
    /// its engine was stopped with it (a private engine), else the lab objects still on that
    /// engine (none, if `down` works).
    pub fn take_down(mut self) -> Option<Vec<String>> {
        lab::down_slot(self.engine.slot, false).expect("lab down");
        self.down = true;
        crate::engine::Engine::find_slot(self.engine.slot)
            .map(|e| lab::leftovers(&e).expect("the lab's objects listed"))
    }
}

impl LabGuard {
    /// Appends this lab's time (its bring-up, and from the start of its bring-up to the end of its
    /// teardown) to `target/lab/reports/timings.txt`, which scripts/test.sh prints at the end, so
    /// the test command's cost can be read per lab. Best effort: never panics.
    fn record_time(&self) {
        use std::io::Write as _;
        let line = format!(
            "{:<28} {:>3} nodes  up {:>5.0} s  in all {:>5.0} s{}\n",
            self.name,
            self.nodes.len(),
            self.up_s,
            self.started.elapsed().as_secs_f64(),
            if std::thread::panicking() { "  (failed)" } else { "" }
        );
        let file = reports_root().join("timings.txt");
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// What the sampler saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Samples {
    /// Samples answered by a manager.
    pub taken: u64,
    /// Samples no manager answered (all were restarting or electing).
    pub unanswered: u64,
    /// The fewest running tasks seen per service.
    pub min_running: BTreeMap<String, u32>,
    /// Each sample below a floor: "time service running".
    pub below_floor: Vec<String>,
}

/// Samples `docker service ls` every 200 ms from any manager that answers, against a floor of
/// running tasks per service.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Samples>,
}

impl Sampler {
    /// Starts sampling; `floors` are (service, fewest running tasks allowed).
    pub fn start(engine: &Engine, floors: &[(&str, u32)]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, floors, flag) = (
            engine.clone(),
            floors.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>(),
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut s = Samples::default();
            let t0 = std::time::Instant::now();
            let all = lab::running_nodes(&engine).unwrap_or_default();
            let managers: Vec<&str> = all
                .iter()
                .filter(|n| n.name.starts_with("manager"))
                .map(|n| n.name.as_str())
                .collect();
            while !flag.load(Ordering::SeqCst) {
                let answer = managers.iter().find_map(|m| {
                    engine
                        .docker(&[
                            "exec",
                            m,
                            "timeout",
                            "2",
                            "docker",
                            "service",
                            "ls",
                            "--format",
                            "{{.Name}} {{.Replicas}}",
                        ])
                        .ok()
                });
                match answer {
                    None => s.unanswered += 1,
                    Some(out) => {
                        s.taken += 1;
                        for (service, floor) in &floors {
                            let running = out
                                .lines()
                                .find_map(|l| l.strip_prefix(&format!("{service} ")))
                                .and_then(|r| r.split('/').next())
                                .and_then(|n| n.parse::<u32>().ok())
                                .unwrap_or(0);
                            let min = s.min_running.entry(service.clone()).or_insert(running);
                            *min = (*min).min(running);
                            if running < *floor {
                                s.below_floor.push(format!(
                                    "{:.1}s {service} {running}",
                                    t0.elapsed().as_secs_f64()
                                ));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            s
        });
        Sampler { stop, thread }
    }

    /// Stops and returns what was seen.
    pub fn stop(self) -> Samples {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("sampler")
    }
}

/// Each node's phases from a run record (`swarm-upgrade run --output json`): seconds per phase,
/// from its start (time waiting for earlier nodes left out).
pub fn phase_seconds(run: &serde_json::Value) -> Vec<(String, Vec<(String, f64)>)> {
    let ts = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    run["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    let phases = n["history"]
                        .as_array()
                        .map(|h| {
                            h.iter()
                                .filter(|span| span["phase"] != "pending")
                                .filter_map(|span| {
                                    let (a, b) = (ts(&span["start"])?, ts(&span["end"])?);
                                    let secs = b.duration_since(a).as_secs_f64();
                                    Some((
                                        span["phase"].as_str().unwrap_or("?").to_string(),
                                        (secs * 10.0).round() / 10.0,
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (n["hostname"].as_str().unwrap_or("?").to_string(), phases)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A webhook receiver on this machine, reachable from a lab's nodes at its network's gateway:
/// records each POSTed JSON body and answers 200.
pub struct Receiver {
    /// The URL to configure on the coordinators.
    pub url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<serde_json::Value>>,
}

impl Receiver {
    /// Starts listening on a free port, for the lab of `slot`.
    pub fn start(slot: u8) -> Receiver {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}:{}/hook",
            crate::lab::gateway(slot),
            listener.local_addr().unwrap().port()
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = conn.read(&mut buf).unwrap_or(0);
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).into_owned();
                    if let Some((_, b)) = text.split_once("\r\n\r\n")
                        && let Ok(v) = serde_json::from_str::<serde_json::Value>(b)
                    {
                        break Some(v);
                    }
                    if n == 0 {
                        break None;
                    }
                };
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                bodies.extend(body);
            }
            bodies
        });
        Receiver { url, stop, thread }
    }

    /// Stops and returns the bodies received, in order.
    pub fn stop(self) -> Vec<serde_json::Value> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the receiver thread")
    }
}
