//! The scale simulation: the real coordinator runs a whole upgrade of a generated fleet
//! ([`super::fleet`]) over the fake cluster on tokio's paused clock, every agent call, engine
//! restart, task start and heartbeat taking a simulated latency ([`Latency`]). What it asked
//! of the cluster is counted as the real adapters would send it.

use swarm_upgrade::config::{Parallel, Settings};

use super::latency::{Latency, Timed, thread_cpu};
use super::{FakeCluster, NEW, fleet, to, world_from};

/// One simulated run's figures (per node: divided by the fleet's nodes).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    pub nodes: usize,
    /// Workers at once (`upgrade.parallel`).
    pub parallel: String,
    pub services: usize,
    pub tasks: usize,
    /// How the run ended (`succeeded`, or the coordinator's error).
    pub outcome: String,
    /// Whether the coordinator held its lock to the end.
    pub lease_kept: bool,
    /// Hosts on the target engine at the end.
    pub upgraded: usize,
    /// Replicated services that ran fewer tasks than their replica count at some tick.
    pub capacity_dips: usize,
    /// Simulated wall time of the run, in seconds.
    pub simulated_s: f64,
    pub docker_per_node: f64,
    /// Reads of the swarm (whole snapshots and scoped reads) per node.
    pub reads_per_node: f64,
    /// Whole snapshots per node (the guard before it; preflight's).
    pub whole_reads_per_node: f64,
    /// Objects (nodes, services, tasks) listed per scoped read (each poll's).
    pub listed_per_poll: f64,
    /// Objects listed per whole snapshot.
    pub listed_per_whole_read: f64,
    pub agent_per_node: f64,
    pub describes_per_node: f64,
    pub store_saves_per_node: f64,
    /// Bytes written to the store per node (only the parts each write changed).
    pub store_bytes_per_node: f64,
    /// The largest single write (one shard or the header), in bytes.
    pub largest_write: usize,
    /// The largest the whole document was, in bytes.
    pub largest_document: u64,
    /// Bytes of the store read per load (a load reads the whole document).
    pub store_read_per_load: f64,
    /// CPU seconds the run took (coordinator and simulated cluster; one thread runs both).
    pub cpu_s: f64,
    /// Of which spent inside the simulated cluster (its scheduler, snapshots, store layout).
    pub cluster_s: f64,
    /// Peak resident memory of the process, in MiB.
    pub peak_mib: f64,
}

/// Upgrades a generated fleet of `nodes` nodes with default settings but `parallel` on simulated
/// time.
pub fn simulate(nodes: usize, parallel: Parallel) -> Figures {
    let settings = Settings { parallel, ..Settings::default() };
    let snap = fleet::fleet(nodes);
    let (services, tasks) = (snap.services.len(), snap.tasks.len());
    let mut world = world_from(&snap);
    world.count_writes = true;
    world.timed = Some(Timed::new(Latency::default(), 0x5eed ^ nodes as u64));
    world.watch_capacity();
    let cluster = FakeCluster::new(world);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let cpu = thread_cpu();
    let (result, simulated) = rt.block_on(async {
        let started = tokio::time::Instant::now();
        let r = super::run(&cluster, &settings, &to(NEW), "simulation").await;
        (r, started.elapsed())
    });
    let cpu_s = (thread_cpu() - cpu).as_secs_f64();
    let w = cluster.world.lock().unwrap();
    let c = &w.calls;
    let per = |x: u64| x as f64 / nodes as f64;
    let agent: u64 = c.agent.values().sum();
    let outcome = match &result {
        Ok(record) => record.outcome.map_or("unfinished".into(), |o| o.name().to_string()),
        Err(e) => e.to_string(),
    };
    let lost = matches!(&result, Err(e) if e.to_string().contains("lock was lost"));
    Figures {
        nodes,
        parallel: parallel.to_string(),
        services,
        tasks,
        outcome,
        lease_kept: !lost,
        upgraded: w
            .hosts
            .iter()
            .filter(|h| h.installed.get("docker-ce") == Some(&super::v(NEW)))
            .count(),
        capacity_dips: w.capacity_dips().len(),
        simulated_s: simulated.as_secs_f64(),
        docker_per_node: per(c.docker),
        reads_per_node: per(c.snapshots + c.scoped),
        whole_reads_per_node: per(c.snapshots),
        listed_per_poll: c.listed_scoped as f64 / c.scoped.max(1) as f64,
        listed_per_whole_read: (c.listed - c.listed_scoped) as f64 / c.snapshots.max(1) as f64,
        agent_per_node: per(agent),
        describes_per_node: per(c.agent.get("describe").copied().unwrap_or(0)),
        store_saves_per_node: per(c.store_saves),
        store_bytes_per_node: per(w.store_writes.iter().flatten().sum::<usize>() as u64),
        largest_write: w.store_writes.iter().flatten().copied().max().unwrap_or(0),
        largest_document: c.largest_document,
        store_read_per_load: c.store_read as f64 / c.store_loads.max(1) as f64,
        cpu_s,
        cluster_s: c.busy.as_secs_f64(),
        peak_mib: peak_mib(),
    }
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
