//! A run drawn as a timeline: one row per node, one bar per phase, a time axis, a legend, and
//! (when the load generator's report is given) the failed requests per second on a row of their
//! own. Pure: text in, text out.

use std::fmt::Write;

use jiff::Timestamp;

use super::{LoadSecond, LoadTimeline, RunReport};
use crate::machine::{NodeProgress, Phase, elapsed};
use crate::model::DebVersion;
use crate::run::RunRecord;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 30.0;
const ROW: f64 = 30.0;
const BAR: f64 = 18.0;
const TOP: f64 = 70.0;

/// The colour of a phase's bars.
pub(crate) fn colour(phase: Phase) -> &'static str {
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
pub(crate) fn tick_step(total: f64) -> f64 {
    const STEPS: [f64; 12] =
        [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0];
    STEPS.iter().copied().find(|s| total / s <= 12.0).unwrap_or(3600.0)
}

fn clock(t: f64) -> String {
    let t = t.round() as u64;
    if t < 60 { format!("{t}s") } else { format!("{}:{:02}", t / 60, t % 60) }
}

/// Draws the report (and the load's failures, if given) as an SVG document.
pub fn render(report: &RunReport, load: Option<&LoadTimeline>) -> String {
    let run = &report.run;
    let scale = Scale::of(run);
    // Computed from the run itself, whatever an older report file holds.
    let floor = super::floor::RunFloor::of(run);
    let mut body = String::new();
    for (i, n) in run.nodes.iter().enumerate() {
        node_row(&mut body, &scale, (report, &floor), n, TOP + ROW * i as f64);
    }
    let mut subtitle =
        format!("{} nodes, {}; {}", run.nodes.len(), clock(scale.total), floor_line(&floor));
    if let Some(load) = load {
        load_row(&mut body, &scale, load, TOP + ROW * run.nodes.len() as f64);
        let (sent, failed) = load_totals(load);
        let _ = write!(subtitle, "; load: {failed} of {sent} requests failed");
    }
    let rows = run.nodes.len() + usize::from(load.is_some());
    let axis_y = TOP + ROW * rows as f64 + 8.0;
    time_axis(&mut body, &scale, axis_y);
    let entries = legend_entries(&drawn_phases(run, scale.end), load.is_some());
    let legend_bottom = legend(&mut body, entries, axis_y + 50.0);
    document(report, legend_bottom + 20.0, &subtitle, &body)
}

/// The run's time span laid over the plot's width.
struct Scale {
    /// When the run started: the axis' zero.
    t0: Timestamp,
    /// When it ended, or its last recorded moment while it runs.
    end: Timestamp,
    /// Seconds from `t0` to `end`, at least one so that an empty run still has an axis.
    total: f64,
}

impl Scale {
    fn of(run: &RunRecord) -> Scale {
        let t0 = run.started_at;
        let last_span = run.nodes.iter().flat_map(|n| n.history.iter().map(|s| s.end)).max();
        let end = run.finished_at.or(last_span).unwrap_or(t0);
        Scale { t0, end, total: secs(t0, end).max(1.0) }
    }

    /// The x coordinate of `t` seconds after the start; times outside the run stay on its edges.
    fn x(&self, t: f64) -> f64 {
        let plot = WIDTH - LEFT - RIGHT;
        LEFT + plot * (t / self.total).clamp(0.0, 1.0)
    }
}

/// A node's name, its row line, a bar per phase and the reason it stopped, if any.
fn node_row(
    body: &mut String,
    scale: &Scale,
    (report, floor): (&RunReport, &super::floor::RunFloor),
    n: &NodeProgress,
    y: f64,
) {
    let _ = writeln!(
        body,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="node"><title>{}</title>{}</text>"##,
        LEFT - 8.0,
        y + BAR - 4.0,
        esc(&node_title(report, floor, n)),
        esc(&n.hostname)
    );
    let _ = writeln!(
        body,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="row"/>"##,
        WIDTH - RIGHT,
        y + BAR / 2.0,
        y + BAR / 2.0
    );
    for (phase, start, stop) in drawn_spans(n, scale.end) {
        phase_bar(body, scale, &n.hostname, phase, (start, stop), y);
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

/// The node's tooltip: its engine version before and after, when the report has them, and its
/// floor against its overhead.
fn node_title(report: &RunReport, floor: &super::floor::RunFloor, n: &NodeProgress) -> String {
    let ver = |v: Option<&DebVersion>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let mut title = match report.versions.iter().find(|v| v.hostname == n.hostname) {
        Some(v) => {
            format!("{}: {} to {}", n.hostname, ver(v.before.as_ref()), ver(v.after.as_ref()))
        }
        None => n.hostname.clone(),
    };
    if let Some(f) = floor.nodes.iter().find(|f| f.hostname == n.hostname) {
        let _ = write!(title, "; floor {:.1} s, overhead {:.1} s", f.floor_s, f.overhead_s);
    }
    title
}

/// The run's wall time against its floor, in one line (see [`super::floor`]).
pub fn floor_line(f: &super::floor::RunFloor) -> String {
    let floor: Vec<String> = super::floor::FLOOR_PHASES.iter().map(|p| p.name()).collect();
    format!(
        "wall {:.0} s, floor {:.0} s (ratio {:.2}; floor: {} of each batch's slowest node)",
        f.wall_s,
        f.floor_s,
        f.ratio,
        floor.join(", ")
    )
}

/// The node's finished phases and, unless it is over, its current one up to the run's end;
/// waiting (pending) is not drawn.
fn drawn_spans(n: &NodeProgress, end: Timestamp) -> Vec<(Phase, Timestamp, Timestamp)> {
    let mut spans: Vec<(Phase, Timestamp, Timestamp)> =
        n.history.iter().map(|s| (s.phase, s.start, s.end)).collect();
    if !n.phase.is_terminal() && n.phase != Phase::Pending {
        spans.push((n.phase, n.phase_started, end.max(n.phase_started)));
    }
    spans.retain(|(p, _, _)| *p != Phase::Pending);
    spans
}

/// One phase's bar, at least a pixel wide so that a short phase stays visible.
fn phase_bar(
    body: &mut String,
    scale: &Scale,
    hostname: &str,
    phase: Phase,
    (start, stop): (Timestamp, Timestamp),
    y: f64,
) {
    let (a, b) = (secs(scale.t0, start), secs(scale.t0, stop));
    let _ = writeln!(
        body,
        r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{}"><title>{}: {} ({:.1} s, from {})</title></rect>"##,
        scale.x(a),
        (scale.x(b) - scale.x(a)).max(1.0),
        colour(phase),
        esc(hostname),
        name(phase),
        b - a,
        clock(a)
    );
}

/// The phases that appear on any row, in the machine's order.
fn drawn_phases(run: &RunRecord, end: Timestamp) -> Vec<Phase> {
    let mut phases: Vec<Phase> = Vec::new();
    for (phase, _, _) in run.nodes.iter().flat_map(|n| drawn_spans(n, end)) {
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    phases.sort_by_key(|p| *p as u8);
    phases
}

/// The load's row: a bar per second with failures, as high as its share of the worst second.
fn load_row(body: &mut String, scale: &Scale, load: &LoadTimeline, y: f64) {
    let offset = load
        .started_at
        .map(|s| if s >= scale.t0 { secs(scale.t0, s) } else { -secs(s, scale.t0) })
        .unwrap_or(0.0);
    let worst = load.timeline.iter().map(|s| s.failed).max().unwrap_or(0).max(1);
    let _ = writeln!(
        body,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="node">failed requests</text>"##,
        LEFT - 8.0,
        y + BAR - 4.0
    );
    let _ = writeln!(
        body,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="base"/>"##,
        WIDTH - RIGHT,
        y + BAR,
        y + BAR
    );
    for sec in load.timeline.iter().filter(|s| s.failed > 0) {
        failure_bar(
            body,
            scale,
            sec,
            offset + sec.second as f64,
            BAR * sec.failed as f64 / worst as f64,
            y,
        );
    }
}

/// One second's failures, `h` high, at `t` seconds after the run's start; at least two pixels wide.
fn failure_bar(body: &mut String, scale: &Scale, sec: &LoadSecond, t: f64, h: f64, y: f64) {
    let w = (scale.x(t + 1.0) - scale.x(t)).max(2.0);
    let _ = writeln!(
        body,
        r##"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" class="failed"><title>{}: {} of {} requests failed</title></rect>"##,
        scale.x(t),
        y + BAR - h,
        clock(t),
        sec.failed,
        sec.sent
    );
}

/// Requests sent and failed over the whole load.
fn load_totals(load: &LoadTimeline) -> (u64, u64) {
    load.timeline.iter().fold((0, 0), |(s, f), sec| (s + sec.sent, f + sec.failed))
}

/// The time axis at `axis_y`: a tick with its label every `tick_step`, and the axis' caption.
fn time_axis(body: &mut String, scale: &Scale, axis_y: f64) {
    let _ = writeln!(
        body,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" class="axis"/>"##,
        WIDTH - RIGHT
    );
    let step = tick_step(scale.total);
    let mut t = 0.0;
    // Adding the step (rather than multiplying) keeps the ticks' float values as they always were.
    while t <= scale.total + 0.001 {
        let _ = writeln!(
            body,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" class="tick"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle" class="label">{4}</text>"##,
            scale.x(t),
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
}

/// The legend's colour and label pairs: the phases drawn, then the load's failures if drawn.
fn legend_entries(phases: &[Phase], with_load: bool) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> =
        phases.iter().map(|p| (colour(*p).to_string(), name(*p))).collect();
    if with_load {
        entries.push(("#e41a1c".into(), "failed requests (per second)".into()));
    }
    entries
}

/// Writes the legend from `top`, wrapping at the plot's right edge; returns its last line's y.
fn legend(body: &mut String, entries: Vec<(String, String)>, top: f64) -> f64 {
    let (mut lx, mut ly) = (LEFT, top);
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
    ly
}

/// The whole document: title, outcome and subtitle, styles, then `body`.
fn document(report: &RunReport, height: f64, subtitle: &str, body: &str) -> String {
    let run = &report.run;
    let outcome = run.outcome.map_or("in progress", |o| o.name());
    let title = format!("swarm-upgrade run {} to {}: {outcome}", run.id, run.target);
    let reason = run
        .reason
        .as_deref()
        .map(|r| format!(" ({})", r.chars().take(120).collect::<String>()))
        .unwrap_or_default();
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
        esc(subtitle),
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
        let report: RunReport =
            serde_json::from_str(include_str!("../../tests/fixtures/run/report.json")).unwrap();
        let load: LoadTimeline =
            serde_json::from_str(include_str!("../../tests/fixtures/run/load.json")).unwrap();
        assert_eq!(
            render(&report, Some(&load)),
            include_str!("../../tests/fixtures/run/report.svg")
        );
        let partial: crate::run::RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/run/partial.json")).unwrap();
        assert_eq!(
            render(&RunReport::new(partial, "docker-ce"), None),
            include_str!("../../tests/fixtures/run/partial.svg")
        );
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
