//! What a run cost the cluster, read from the coordinator's final metrics (the textfile it leaves
//! for node_exporter): Docker API requests, agent calls, store writes and their bytes, per node,
//! and the run record's size. The same figures as the scale simulation
//! (`cargo bench --bench scale -- sim`), so the simulation can be held against a real swarm.

use serde::Serialize;

/// Where a coordinator leaves its final metrics on the node it ran on.
pub const TEXTFILE: &str = "/var/lib/swarm-upgrade/metrics/swarm-upgrade.prom";

/// A run's cost, whole and per node.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Nodes in the swarm.
    pub nodes: usize,
    /// Requests sent to the Docker API to read and change the swarm (the simulation's Docker calls).
    pub docker_requests: u64,
    /// Requests sent to the Docker API for the run record (labelled `store ...`).
    pub store_requests: u64,
    /// Calls made to agents.
    pub agent_calls: u64,
    /// Writes of the run record (header and shards).
    pub store_writes: u64,
    /// Bytes of those writes.
    pub store_written_bytes: u64,
    /// The run record's size (header and shards) at the end.
    pub store_bytes: u64,
}

impl Cost {
    /// Reads the figures from a Prometheus text exposition; `nodes` divides them.
    pub fn from_metrics(text: &str, nodes: usize) -> Cost {
        Cost {
            nodes,
            docker_requests: sum(text, DOCKER, |labels| !labels.contains(STORE)),
            store_requests: sum(text, DOCKER, |labels| labels.contains(STORE)),
            agent_calls: sum(text, "swarm_upgrade_agent_calls_total", |_| true),
            store_writes: sum(text, "swarm_upgrade_store_writes_total", |_| true),
            store_written_bytes: sum(text, "swarm_upgrade_store_written_bytes_total", |_| true),
            store_bytes: sum(text, "swarm_upgrade_store_bytes", |_| true),
        }
    }

    fn per_node(&self, n: u64) -> f64 {
        n as f64 / self.nodes.max(1) as f64
    }

    /// One line: the per-node figures and the record's size.
    pub fn summary(&self) -> String {
        format!(
            "{} nodes: per node {:.0} Docker requests (and {:.0} for the run record), {:.1} agent calls, {:.1} store writes of {:.1} KB; run record {:.1} KB",
            self.nodes,
            self.per_node(self.docker_requests),
            self.per_node(self.store_requests),
            self.per_node(self.agent_calls),
            self.per_node(self.store_writes),
            self.per_node(self.store_written_bytes) / 1000.0,
            self.store_bytes as f64 / 1000.0
        )
    }
}

const DOCKER: &str = "swarm_upgrade_docker_requests_total";
/// The label the store's Docker requests carry.
const STORE: &str = "request=\"store ";

/// The sum of the series of the metric `name` whose labels `keep` accepts.
fn sum(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && keep(labels)).then(|| value.parse::<f64>().ok()).flatten()
        })
        .map(|v| v as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_of_a_metric_is_summed_and_others_are_not() {
        let text = "# HELP swarm_upgrade_docker_requests_total Requests.\n\
            # TYPE swarm_upgrade_docker_requests_total counter\n\
            swarm_upgrade_docker_requests_total{request=\"list_tasks\"} 300\n\
            swarm_upgrade_docker_requests_total{request=\"GET /services\"} 20\n\
            swarm_upgrade_docker_requests_total{request=\"store list_configs\"} 50\n\
            swarm_upgrade_docker_requests_total_extra 7\n\
            swarm_upgrade_agent_calls_total{operation=\"describe\"} 10\n\
            swarm_upgrade_agent_calls_total{operation=\"upgrade\"} 5\n\
            swarm_upgrade_store_writes_total{part=\"shard\"} 40\n\
            swarm_upgrade_store_writes_total{part=\"header\"} 35\n\
            swarm_upgrade_store_written_bytes_total 150000\n\
            swarm_upgrade_store_bytes 12345\n";
        let c = Cost::from_metrics(text, 5);
        assert_eq!(
            c,
            Cost {
                nodes: 5,
                docker_requests: 320,
                store_requests: 50,
                agent_calls: 15,
                store_writes: 75,
                store_written_bytes: 150_000,
                store_bytes: 12_345
            }
        );
        assert_eq!(
            c.summary(),
            "5 nodes: per node 64 Docker requests (and 10 for the run record), 3.0 agent calls, 15.0 store writes of 30.0 KB; run record 12.3 KB"
        );
    }
}
