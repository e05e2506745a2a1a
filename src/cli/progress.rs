//! `run`'s live progress on a terminal: one line per node with its phase and the time in it (or
//! its total once done), and an overall bar. Redrawn in place every second from the store; off a
//! terminal the log lines are the progress.

use std::io::Write;

use jiff::Timestamp;

use crate::machine::{Phase, elapsed};
use crate::run::RunRecord;

/// The lines to draw for `run` at `now` (pure).
pub fn render(run: &RunRecord, now: Timestamp) -> Vec<String> {
    let done = run.nodes.iter().filter(|n| n.phase.is_terminal()).count();
    let total = run.nodes.len().max(1);
    const BAR: usize = 30;
    let filled = BAR * done / total;
    let mut lines = vec![format!(
        "run {} to {}  [{}{}] {done}/{} nodes  {}s",
        run.id,
        run.target,
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        run.nodes.len(),
        elapsed(run.started_at, now).as_secs()
    )];
    for n in &run.nodes {
        let state = match n.phase {
            Phase::Pending => "waiting".to_string(),
            p if p.is_terminal() => {
                let took = n
                    .history
                    .first()
                    .map(|s| elapsed(s.end, n.phase_started).as_secs())
                    .unwrap_or(0);
                format!("{} after {took}s", p.name())
            }
            p => format!("{} for {}s", p.name(), elapsed(n.phase_started, now).as_secs()),
        };
        let reason = n
            .reason
            .as_deref()
            .map(|r| format!("  ({})", r.chars().take(80).collect::<String>()))
            .unwrap_or_default();
        lines.push(format!("  {:<16} {state}{reason}", n.hostname));
    }
    lines
}

/// The progress drawn on stderr every second; [`Progress::finish`] draws the last frame.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
    drawn: std::sync::Arc<std::sync::Mutex<usize>>,
}

/// Draws the progress of the store's current run on stderr every second until finished; with
/// `id`, only once that run is the store's (not the run before it, while a new one is planned
/// and confirmed).
pub fn spawn(
    store: crate::adapters::docker::store::SwarmLabelStore,
    id: Option<String>,
) -> Progress {
    use crate::ports::StateStore;
    let drawn = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let shared = drawn.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Ok(v) = store.load().await else { continue };
            let Some(run) = v.doc.run.filter(|r| id.as_ref().is_none_or(|id| &r.id == id)) else {
                continue;
            };
            draw(&shared, &render(&run, Timestamp::now()));
        }
    });
    Progress { task, drawn }
}

impl Progress {
    /// Stops redrawing and, for a run that ended, draws its final state in place of the last frame.
    pub async fn finish(self, run: Option<&RunRecord>) {
        self.task.abort();
        let _ = self.task.await;
        if let Some(run) = run {
            let now = run.finished_at.unwrap_or_else(Timestamp::now);
            draw(&self.drawn, &render(run, now));
        }
    }
}

/// Replaces the frame drawn last (`drawn` lines) with `lines`.
fn draw(drawn: &std::sync::Mutex<usize>, lines: &[String]) {
    let mut drawn = drawn.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    if *drawn > 0 {
        let _ = write!(err, "\x1b[{}A", *drawn);
    }
    for l in lines {
        let _ = writeln!(err, "\x1b[2K{l}");
    }
    let _ = err.flush();
    *drawn = lines.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_node_and_a_bar() {
        let run: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/run/partial.json")).unwrap();
        let now: Timestamp = "2026-11-25T06:01:00Z".parse().unwrap();
        let lines = render(&run, now);
        assert_eq!(lines.len(), 1 + run.nodes.len());
        assert!(
            lines[0].contains("[###############---------------] 1/2 nodes  60s"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], "  worker1          done after 30s");
        assert_eq!(lines[2], "  worker2          restart for 5s");
    }
}
