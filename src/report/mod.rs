//! Run reports: the JSON file every run leaves behind, and its drawing as an SVG timeline.

pub mod floor;
pub mod svg;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::machine::Phase;
use crate::model::{DebVersion, check_run_id};
use crate::run::RunRecord;

/// What a run leaves behind: the run record (nodes, phases with their start and end, outcome,
/// reasons), each node's engine version before and after, and its time against its floor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// The run as the store holds it at its end.
    pub run: RunRecord,
    /// Each node's engine version before and after, in run order.
    pub versions: Vec<NodeVersions>,
    /// The run's wall time against the time its nodes could not avoid (computed again on read:
    /// reports written before it have none).
    #[serde(default)]
    pub floor: floor::RunFloor,
}

/// One node's engine version before and after the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeVersions {
    /// Host name.
    pub hostname: String,
    /// Before (unknown when the node never reached prefetch).
    pub before: Option<DebVersion>,
    /// After: the target when it is done, the previous version when it rolled back or was left.
    pub after: Option<DebVersion>,
    /// The containers no service owns that ran on it before (unknown before prefetch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone_before: Option<Vec<String>>,
    /// Those that ran on it after (unknown until it was done, rolled back or restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone_after: Option<Vec<String>>,
    /// The archive of its swarm state taken before its install (a manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_backup: Option<String>,
    /// The outage an operator accepted for services pinned to it, once its drain began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<OutageWindow>,
}

/// An accepted outage as the run saw it: its services were down at most from the node's drain
/// to the end of its verification, when every service (theirs too) ran again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutageWindow {
    /// The services, by name.
    pub services: Vec<String>,
    /// When the node's drain began.
    pub from: Timestamp,
    /// When its verification ended (none if it never did).
    pub to: Option<Timestamp>,
}

impl OutageWindow {
    /// The window of node `n`, if services' outage was accepted there and its drain began.
    pub fn of(n: &crate::machine::NodeProgress) -> Option<OutageWindow> {
        if n.downtime.is_empty() {
            return None;
        }
        let span = |p: Phase| n.history.iter().find(|s| s.phase == p);
        Some(OutageWindow {
            services: n.downtime.iter().map(|o| o.name.clone()).collect(),
            from: span(Phase::Drain)?.start,
            to: span(Phase::VerifyConverged).map(|s| s.end),
        })
    }

    /// `accepted outage of db: from the drain at 10:00:01Z to the end of verification at
    /// 10:01:04Z (63 s)`.
    pub fn line(&self) -> String {
        let to = match self.to {
            Some(to) => format!(
                "to the end of verification at {to} ({} s)",
                crate::machine::elapsed(self.from, to).as_secs()
            ),
            None => "and not verified back".into(),
        };
        format!(
            "accepted outage of {}: from the drain at {} {to}",
            self.services.join(", "),
            self.from
        )
    }
}

impl NodeVersions {
    /// What ran on the node outside the swarm's services before and after, when anything did:
    /// `standalone before: cache, tmp; after: cache`.
    pub fn standalone_line(&self) -> Option<String> {
        let list = |l: &Option<Vec<String>>| match l {
            None => "?".to_string(),
            Some(names) if names.is_empty() => "none".to_string(),
            Some(names) => names.join(", "),
        };
        let any = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|n| !n.is_empty());
        (any(&self.standalone_before) || any(&self.standalone_after)).then(|| {
            format!(
                "standalone containers before: {}; after: {}",
                list(&self.standalone_before),
                list(&self.standalone_after)
            )
        })
    }
}

impl RunReport {
    /// The report of `run`; `engine` is the package whose version is reported.
    pub fn new(run: RunRecord, engine: &str) -> Self {
        let versions = run
            .nodes
            .iter()
            .map(|n| {
                let before = n.previous.as_ref().and_then(|p| p.0.get(engine)).cloned();
                let after = match n.phase {
                    Phase::Done => run.packages_of(n).get(engine).cloned(),
                    _ if n.history.iter().any(|s| s.phase == Phase::Upgrade) && !n.rolled_back => {
                        None
                    }
                    _ => before.clone(),
                };
                NodeVersions {
                    hostname: n.hostname.clone(),
                    before,
                    after,
                    standalone_before: n.standalone_before.clone(),
                    standalone_after: n.standalone_after.clone(),
                    swarm_backup: n.swarm_backup.clone(),
                    outage: OutageWindow::of(n),
                }
            })
            .collect();
        let floor = floor::RunFloor::of(&run);
        RunReport { run, versions, floor }
    }

    /// Reads a report, or a bare run record (`run --output json` prints one).
    pub fn read(path: &Path, engine: &str) -> Result<RunReport, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Ok(mut report) = serde_json::from_str::<RunReport>(&text) {
            report.floor = floor::RunFloor::of(&report.run);
            return Ok(report);
        }
        serde_json::from_str::<RunRecord>(&text).map(|run| RunReport::new(run, engine)).map_err(|e| {
            format!("{} is neither a swarm-upgrade run report nor a run record ({e}); give a file from {}", path.display(), RUNS_DIR_HINT)
        })
    }

    /// Writes the report to `dir/<run id>.json`; returns the path. A run ID that is not one (the
    /// store it came from is any manager's to write) is refused, not cleaned into another name.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, String> {
        check_run_id(&self.run.id).map_err(|e| {
            format!(
                "{e}; no report is written to {} under it: swarm-upgrade makes valid run IDs, so find what else wrote this run into the swarm's store (`swarm-upgrade status --output json` shows it)",
                dir.display()
            )
        })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.run.id));
        let text = serde_json::to_string_pretty(self).expect("reports serialize");
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

const RUNS_DIR_HINT: &str = "/var/lib/swarm-upgrade/runs/ (agent.state_dir/runs)";

/// Failed requests per second, from the lab's load generator report (or any JSON with the same
/// `started_at` and `timeline` of `{second, sent, failed}`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LoadTimeline {
    /// When its first second began; without it the load is aligned with the run's start.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Each second.
    pub timeline: Vec<LoadSecond>,
}

/// One second of load.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LoadSecond {
    /// Seconds from its start.
    pub second: u64,
    /// Requests sent.
    pub sent: u64,
    /// Of those, failed.
    pub failed: u64,
}

impl LoadTimeline {
    /// Reads a load report.
    pub fn read(path: &Path) -> Result<LoadTimeline, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a load report with a timeline ({e})", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str) -> RunReport {
        let mut run: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/run/partial.json")).unwrap();
        run.id = id.to_string();
        RunReport::new(run, "docker-ce")
    }

    /// The report is named after its run; a run ID that is no safe file name (it comes from the
    /// store, any manager's to write) writes nothing, and the refusal names it.
    #[test]
    fn reports_are_written_under_valid_run_ids_only() {
        let dir = std::env::temp_dir().join(format!("swarm-upgrade-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runs = dir.join("runs");
        let path = report("20261125T060000Z-manager1-42").write(&runs).unwrap();
        assert_eq!(path, runs.join("20261125T060000Z-manager1-42.json"));
        assert_eq!(
            RunReport::read(&path, "docker-ce").unwrap().run.id,
            "20261125T060000Z-manager1-42"
        );
        for bad in ["../escaped", "..", "", ".hidden"] {
            let e = report(bad).write(&runs).unwrap_err();
            assert!(e.starts_with(&format!("run ID {bad:?} ")), "{e}");
            assert!(e.contains("no report is written"), "{e}");
        }
        let mut left: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.extend(std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().file_name()));
        assert_eq!(left, ["runs", "20261125T060000Z-manager1-42.json"], "nothing else was written");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
