//! The lab balancer's runtime API (haproxy's stats socket, on TCP in the lab: `set server …
//! state maint|ready`, `show stat`), the node hooks that use it to take a node out of the `web`
//! backend before its drain and back after its verification (issue 17, item 1), and a sampler of
//! which servers the balancer holds in maintenance, when.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;

/// The runtime API's port on the balancer (haproxy's `stats socket ipv4@0.0.0.0:…`).
pub const RUNTIME_API_PORT: u16 = 9999;

/// One command to the runtime API at `ip`; its answer.
pub fn api(ip: &str, command: &str) -> Result<String> {
    let addr = format!("{ip}:{RUNTIME_API_PORT}");
    let mut conn = std::net::TcpStream::connect_timeout(
        &addr.parse().context("the balancer's address")?,
        Duration::from_secs(2),
    )
    .with_context(|| format!("connect to haproxy's runtime API at {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    Ok(answer)
}

/// `show stat`'s rows of `backend` as (server, status), from its CSV (columns found by name).
pub fn statuses(csv: &str, backend: &str) -> Vec<(String, String)> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else { return vec![] };
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return vec![];
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&backend) && !matches!(f.get(sv), Some(&"BACKEND")))
        .filter_map(|f| Some((f.get(sv)?.to_string(), f.get(st)?.to_string())))
        .collect()
}

/// The hook a node runs before its drain: out of `web` (maintenance), then wait until no
/// connection to it is left. A bash script (`/dev/tcp`: the nodes have no netcat).
pub fn lb_out(balancer_ip: &str) -> String {
    format!(
        r#"#!/bin/bash
# swarm-upgrade hooks.before_drain (lab): take this node out of the balancer's web backend.
set -eu
api() {{ exec 3<>/dev/tcp/{balancer_ip}/{RUNTIME_API_PORT}; printf '%s\n' "$1" >&3; cat <&3; exec 3<&-; }}
api "set server web/$SWARM_UPGRADE_NODE state maint"
for i in $(seq 1 100); do
  left=$(api "show stat" | awk -F, -v me="$SWARM_UPGRADE_NODE" '$1 == "web" && $2 == me {{ print $5 }}')
  if [ "${{left:-0}}" = 0 ]; then
    echo "$SWARM_UPGRADE_NODE out of web for run $SWARM_UPGRADE_RUN ($SWARM_UPGRADE_PHASE, to $SWARM_UPGRADE_TARGET); no connection left"
    exit 0
  fi
  sleep 0.2
done
echo "$SWARM_UPGRADE_NODE still has $left connection(s) after 20 s" >&2
exit 1
"#
    )
}

/// The hook a node runs after its verification: back into `web`.
pub fn lb_in(balancer_ip: &str) -> String {
    format!(
        r#"#!/bin/bash
# swarm-upgrade hooks.after_verify (lab): put this node back into the balancer's web backend.
set -eu
exec 3<>/dev/tcp/{balancer_ip}/{RUNTIME_API_PORT}
printf 'set server web/%s state ready\n' "$SWARM_UPGRADE_NODE" >&3
cat <&3
echo "$SWARM_UPGRADE_NODE back in web"
"#
    )
}

/// When each server of a backend was held in maintenance: (from, to) per interval.
pub type Maintenance = BTreeMap<String, Vec<(Timestamp, Timestamp)>>;

/// Samples the balancer's `show stat` every 200 ms for the servers of one backend in MAINT.
pub struct MaintSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Maintenance>,
}

impl MaintSampler {
    /// Starts sampling `backend` on the balancer at `ip`.
    pub fn start(ip: &str, backend: &str) -> MaintSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, ip, backend) = (stop.clone(), ip.to_string(), backend.to_string());
        let thread = std::thread::spawn(move || {
            let mut seen = Maintenance::new();
            let mut open: BTreeMap<String, Timestamp> = BTreeMap::new();
            while !flag.load(Ordering::SeqCst) {
                let now = Timestamp::now();
                if let Ok(csv) = api(&ip, "show stat") {
                    for (server, status) in statuses(&csv, &backend) {
                        let maint = status.starts_with("MAINT");
                        match (maint, open.get(&server)) {
                            (true, None) => {
                                open.insert(server, now);
                            }
                            (false, Some(from)) => {
                                seen.entry(server.clone()).or_default().push((*from, now));
                                open.remove(&server);
                            }
                            _ => {}
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let end = Timestamp::now();
            for (server, from) in open {
                seen.entry(server).or_default().push((from, end));
            }
            seen
        });
        MaintSampler { stop, thread }
    }

    /// Stops and returns every server's maintenance intervals.
    pub fn stop(self) -> Maintenance {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the sampler thread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_by_column_name() {
        let csv = "# pxname,svname,qcur,qmax,scur,status\nweb,FRONTEND,,,0,OPEN\nweb,worker1,0,0,0,MAINT\nweb,worker2,0,0,1,UP\nweb,BACKEND,0,0,1,UP\nsolo,worker1,0,0,0,UP\n";
        assert_eq!(
            statuses(csv, "web"),
            [
                ("FRONTEND".to_string(), "OPEN".to_string()),
                ("worker1".into(), "MAINT".into()),
                ("worker2".into(), "UP".into())
            ]
        );
    }
}
