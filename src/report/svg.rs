//! A run drawn as a timeline: one row per node, one bar per phase, a time axis, a legend, and
//! (when the load generator's report is given) the failed requests per second on a row of their
//! own. Pure: text in, text out.

use std::fmt::Write;

use jiff::Timestamp;

use super::{LoadTimeline, RunReport};
use crate::machine::{Phase, elapsed};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 30.0;
const ROW: f64 = 30.0;
const BAR: f64 = 18.0;
const TOP: f64 = 70.0;

/// The colour of a phase's bars.
pub fn colour(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "#d9d9d9",
        Phase::Prefetch => "#9ecae1",
        Phase::Pause => "#c6dbef",
        Phase::Surge => "#4292c6",
        Phase::Drain => "#f16913",
        Phase::WaitMigrated => "#fdae6b",
        Phase::Upgrade => "#74c476",
        Phase::Restart => "#a63603",
        Phase::WaitReady => "#fee391",
        Phase::Reactivate => "#a1d99b",
        Phase::VerifyConverged => "#238b45",
        Phase::Rollback => "#de2d26",
        Phase::Rejoin => "#756bb1",
        Phase::Restore => "#bcbddc",
        Phase::Done | Phase::RolledBack | Phase::Restored | Phase::Failed => "#636363",
    }
}

fn name(phase: Phase) -> String {
    phase.name()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn secs(from: Timestamp, to: Timestamp) -> f64 {
    if to <= from { 0.0 } else { elapsed(from, to).as_secs_f64() }
}

/// A tick step that gives about eight to twelve ticks over `total` seconds.
pub fn tick_step(total: f64) -> f64 {
    const STEPS: [f64; 12] = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0];
    STEPS.iter().copied().find(|s| total / s <= 12.0).unwrap_or(3600.0)
}

fn clock(t: f64) -> String {
    let t = t.round() as u64;
    if t < 60 { format!("{t}s") } else { format!("{}:{:02}", t / 60, t % 60) }
}

/// Draws the report (and the load's failures, if given) as an SVG document.
pub fn render(report: &RunReport, load: Option<&LoadTimeline>) -> String {
    let run = &report.run;
    let t0 = run.started_at;
    let last_span = run.nodes.iter().flat_map(|n| n.history.iter().map(|s| s.end)).max();
    let end = run.finished_at.or(last_span).unwrap_or(t0);
    let total = secs(t0, end).max(1.0);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot * (t / total).clamp(0.0, 1.0);
    let rows = run.nodes.len() + usize::from(load.is_some());
    let axis_y = TOP + ROW * rows as f64 + 8.0;
    let mut phases: Vec<Phase> = Vec::new();
    let mut body = String::new();

    for (i, n) in run.nodes.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let versions = report.versions.iter().find(|v| v.hostname == n.hostname);
        let ver = |v: Option<&crate::model::DebVersion>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
        let label = match versions {
            Some(v) => format!("{}: {} to {}", n.hostname, ver(v.before.as_ref()), ver(v.after.as_ref())),
            None => n.hostname.clone(),
        };
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="node"><title>{}</title>{}</text>"##,
            LEFT - 8.0,
            y + BAR - 4.0,
            esc(&label),
            esc(&n.hostname)
        );
        let _ = writeln!(
            body,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="row"/>"##,
            WIDTH - RIGHT,
            y + BAR / 2.0,
            y + BAR / 2.0
        );
        let mut spans: Vec<(Phase, Timestamp, Timestamp)> = n.history.iter().map(|s| (s.phase, s.start, s.end)).collect();
        if !n.phase.is_terminal() && n.phase != Phase::Pending {
            spans.push((n.phase, n.phase_started, end.max(n.phase_started)));
        }
        for (phase, start, stop) in spans.into_iter().filter(|(p, _, _)| *p != Phase::Pending) {
            if !phases.contains(&phase) {
                phases.push(phase);
            }
            let (a, b) = (secs(t0, start), secs(t0, stop));
            let _ = writeln!(
                body,
                r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{}"><title>{}: {} ({:.1} s, from {})</title></rect>"##,
                x(a),
                (x(b) - x(a)).max(1.0),
                colour(phase),
                esc(&n.hostname),
                name(phase),
                b - a,
                clock(a)
            );
        }
        if let Some(reason) = &n.reason {
            let _ = writeln!(
                body,
                r##"<text x="{:.1}" y="{:.1}" class="reason">{}</text>"##,
                LEFT + 4.0,
                y + BAR + 9.0,
                esc(&reason.chars().take(150).collect::<String>())
            );
        }
    }

    let mut subtitle = format!("{} nodes, {}", run.nodes.len(), clock(total));
    if let Some(load) = load {
        let y = TOP + ROW * run.nodes.len() as f64;
        let offset = load.started_at.map(|s| if s >= t0 { secs(t0, s) } else { -secs(s, t0) }).unwrap_or(0.0);
        let (sent, failed): (u64, u64) = load.timeline.iter().fold((0, 0), |(s, f), sec| (s + sec.sent, f + sec.failed));
        let worst = load.timeline.iter().map(|s| s.failed).max().unwrap_or(0).max(1);
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="node">failed requests</text>"##,
            LEFT - 8.0,
            y + BAR - 4.0
        );
        let _ = writeln!(body, r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="base"/>"##, WIDTH - RIGHT, y + BAR, y + BAR);
        for sec in load.timeline.iter().filter(|s| s.failed > 0) {
            let t = offset + sec.second as f64;
            let h = BAR * sec.failed as f64 / worst as f64;
            let w = (x(t + 1.0) - x(t)).max(2.0);
            let _ = writeln!(
                body,
                r##"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" class="failed"><title>{}: {} of {} requests failed</title></rect>"##,
                x(t),
                y + BAR - h,
                clock(t),
                sec.failed,
                sec.sent
            );
        }
        let _ = write!(subtitle, "; load: {failed} of {sent} requests failed");
    }

    // The time axis.
    let _ = writeln!(body, r##"<line x1="{LEFT}" x2="{:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" class="axis"/>"##, WIDTH - RIGHT);
    let step = tick_step(total);
    let mut t = 0.0;
    while t <= total + 0.001 {
        let _ = writeln!(
            body,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" class="tick"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle" class="label">{4}</text>"##,
            x(t),
            TOP - 4.0,
            axis_y + 5.0,
            axis_y + 18.0,
            clock(t)
        );
        t += step;
    }
    let _ = writeln!(
        body,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="label">time since the run started</text>"##,
        WIDTH - RIGHT,
        axis_y + 34.0
    );

    // The legend: the phases that appear, in the machine's order.
    phases.sort_by_key(|p| *p as u8);
    let legend_y = axis_y + 50.0;
    let (mut lx, mut ly) = (LEFT, legend_y);
    let mut entries: Vec<(String, String)> = phases.iter().map(|p| (colour(*p).to_string(), name(*p))).collect();
    if load.is_some() {
        entries.push(("#e41a1c".into(), "failed requests (per second)".into()));
    }
    for (fill, label) in entries {
        let width = 24.0 + 7.0 * label.len() as f64;
        if lx + width > WIDTH - RIGHT {
            lx = LEFT;
            ly += 20.0;
        }
        let _ = writeln!(
            body,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{fill}"/><text x="{:.1}" y="{:.1}" class="label">{}</text>"##,
            ly - 10.0,
            lx + 16.0,
            ly,
            esc(&label)
        );
        lx += width + 12.0;
    }
    let height = ly + 20.0;
    let outcome = run.outcome.map(|o| format!("{o:?}").to_lowercase()).unwrap_or_else(|| "in progress".into());
    let title = format!("swarm-upgrade run {} to {}: {outcome}", run.id, run.target);
    let reason = run.reason.as_deref().map(|r| format!(" ({})", r.chars().take(120).collect::<String>())).unwrap_or_default();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif">
<title>{}</title>
<style>
.node {{ font-size: 13px; fill: #222; }}
.label {{ font-size: 11px; fill: #444; }}
.reason {{ font-size: 10px; fill: #b00; }}
.row {{ stroke: #eee; }}
.base {{ stroke: #ccc; }}
.axis {{ stroke: #444; }}
.tick {{ stroke: #ddd; }}
.failed {{ fill: #e41a1c; }}
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="12" y="24" font-size="16" font-weight="bold">{}</text>
<text x="12" y="44" font-size="12" fill="#444">{}{}</text>
{body}</svg>
"##,
        esc(&title),
        esc(&title),
        esc(&subtitle),
        esc(&reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_readable() {
        assert_eq!(tick_step(5.0), 1.0);
        assert_eq!(tick_step(60.0), 5.0);
        assert_eq!(tick_step(165.0), 15.0);
        assert_eq!(tick_step(3000.0), 300.0);
        assert_eq!(clock(5.0), "5s");
        assert_eq!(clock(135.0), "2:15");
    }

    /// The drawing of fixed reports, saved from the code as it was before `render` was split up:
    /// any change to the output is a change to this fixture, on purpose.
    #[test]
    fn drawing_matches_the_saved_fixtures() {
        let report: RunReport = serde_json::from_str(include_str!("../../tests/fixtures/run/report.json")).unwrap();
        let load: LoadTimeline = serde_json::from_str(include_str!("../../tests/fixtures/run/load.json")).unwrap();
        assert_eq!(render(&report, Some(&load)), include_str!("../../tests/fixtures/run/report.svg"));
        let partial: crate::run::RunRecord = serde_json::from_str(include_str!("../../tests/fixtures/run/partial.json")).unwrap();
        assert_eq!(render(&RunReport::new(partial, "docker-ce"), None), include_str!("../../tests/fixtures/run/partial.svg"));
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
