//! Simulated time for the fake cluster (the scale simulation): how long agents, engines, tasks
//! and heartbeats take, drawn from ranges by a seeded generator so every run is the same.

use std::collections::HashMap;
use std::time::Duration;

/// Ranges of simulated latency, in seconds (low, high).
#[derive(Clone, Debug)]
pub struct Latency {
    /// An agent's describe.
    pub describe: (f64, f64),
    /// A prefetch (packages downloaded into apt's cache).
    pub prefetch: (f64, f64),
    /// An install from the warm cache.
    pub install: (f64, f64),
    /// docker.service's restart.
    pub restart: (f64, f64),
    /// A new task from assigned to running.
    pub task_start: (f64, f64),
    /// From an engine back up to the managers seeing the node Ready (its next heartbeat).
    pub heartbeat: (f64, f64),
}

impl Default for Latency {
    /// The figures: describe 0.5–3 s, install 5–15 s, restart 3–10 s, task start 1–5 s,
    /// heartbeat 5 s; a prefetch (not given) as a describe plus a download, 1–5 s.
    fn default() -> Self {
        Latency {
            describe: (0.5, 3.0),
            prefetch: (1.0, 5.0),
            install: (5.0, 15.0),
            restart: (3.0, 10.0),
            task_start: (1.0, 5.0),
            heartbeat: (0.0, 5.0),
        }
    }
}

/// The simulated clock of a world and what is due when.
#[derive(Clone, Debug)]
pub struct Timed {
    pub latency: Latency,
    /// Simulated time now, since the simulation began (set by the fake on every call).
    pub now: Duration,
    /// The tokio instant simulated time counts from (taken at the first call).
    pub epoch: Option<tokio::time::Instant>,
    /// When each placed task starts running, by task ID.
    pub starts: HashMap<String, Duration>,
    /// When each restarted host's node is seen Ready again, by host name.
    pub ready_at: HashMap<String, Duration>,
    rng: u64,
}

impl Timed {
    /// A clock at zero drawing latencies from `latency` with `seed`.
    pub fn new(latency: Latency, seed: u64) -> Self {
        Timed {
            latency,
            now: Duration::ZERO,
            epoch: None,
            starts: HashMap::new(),
            ready_at: HashMap::new(),
            rng: seed | 1,
        }
    }

    /// A latency drawn uniformly from `range` (xorshift64*).
    pub fn draw(&mut self, (low, high): (f64, f64)) -> Duration {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let unit =
            (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        Duration::from_secs_f64(low + (high - low) * unit)
    }

    /// Task `id` was placed now: it runs after a task start.
    pub fn placed(&mut self, id: &str) {
        let at = self.now + self.draw(self.latency.task_start);
        self.starts.insert(id.to_string(), at);
    }

    /// Whether task `id` has started by now (a task placed before timing began has).
    pub fn started(&self, id: &str) -> bool {
        self.starts.get(id).is_none_or(|at| *at <= self.now)
    }
}

/// CPU time this thread has run so far (/proc/thread-self/schedstat, in nanoseconds): what the
/// simulation's figures count, unaffected by other work on the machine.
pub fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat.split_whitespace().next().and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_nanos(ns)
}
