//! `swarm-upgrade plan`: the dry run, rendered for people or as JSON.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::{Failure, Output, TargetArgs, exit};
use crate::config::Settings;
use crate::model::ClusterSnapshot;
use crate::planner::{self, Plan, PlanRequest, Refusal};

/// Plans against a saved snapshot.
pub fn offline(
    settings: &Settings,
    file: &Path,
    target: &TargetArgs,
    output: Output,
) -> Result<(), Failure> {
    let snap = read_snapshot(file)?;
    present(planner::plan(&snap, settings, &request(target)), output)
}

/// The request the flags make.
pub fn request(target: &TargetArgs) -> PlanRequest {
    PlanRequest {
        to: target.to.clone(),
        allow_downgrade: target.allow_downgrade,
        allow_single_manager: target.allow_single_manager,
        scheduled: false,
        parallel: target.parallel,
        accept_downtime: target.accept_downtime.clone(),
    }
}

/// Prints a plan, or fails with every refusal (exit 3).
pub fn present(result: Result<Plan, Vec<Refusal>>, output: Output) -> Result<(), Failure> {
    match result {
        Ok(plan) => {
            match output {
                Output::Text => out!("{}", render(&plan)),
                Output::Json => outln!(
                    "{}",
                    json(&PlanReport { verdict: "ready", plan: Some(&plan), refusals: &[] })
                ),
            }
            Ok(())
        }
        Err(refusals) => {
            if output == Output::Json {
                outln!(
                    "{}",
                    json(&PlanReport { verdict: "refused", plan: None, refusals: &refusals })
                );
            }
            Err(Failure::new(exit::REFUSED, refusal_message(&refusals)))
        }
    }
}

#[derive(Serialize)]
struct PlanReport<'a> {
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a Plan>,
    refusals: &'a [Refusal],
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("plan reports serialize")
}

/// Reads a snapshot file; errors name the file, the place and the fix.
pub(crate) fn read_snapshot(file: &Path) -> Result<ClusterSnapshot, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Failure::new(
            exit::BAD_INPUT,
            format!(
                "cannot read snapshot {}: {e}; check the path given to --snapshot",
                file.display()
            ),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            exit::BAD_INPUT,
            format!(
                "{}:{}:{}: not a cluster snapshot: {e}; write one with `swarm-upgrade snapshot --out FILE`",
                file.display(),
                e.line(),
                e.column()
            ),
        )
    })
}

/// The refusal as one message: every reason, each with its fix.
pub(crate) fn refusal_message(refusals: &[Refusal]) -> String {
    let mut m = format!(
        "preflight refused the run ({} reason{}); nothing was changed:",
        refusals.len(),
        if refusals.len() == 1 { "" } else { "s" }
    );
    for r in refusals {
        let at = match (&r.node, &r.service) {
            (Some(n), Some(s)) => format!("[{n}, service {s}] "),
            (Some(n), None) => format!("[{n}] "),
            (None, Some(s)) => format!("[service {s}] "),
            (None, None) => String::new(),
        };
        let _ = write!(m, "\n  - {at}{}\n    fix: {}", r.reason, r.fix);
    }
    m
}

/// The plan for people: the order in batches, and per node what will happen.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Target: {}", plan.target);
    let _ = writeln!(out, "Preflight: passed");
    if let Some(gate) = &plan.gate {
        let _ = writeln!(out, "{}", gate_line(gate));
    }
    if plan.nodes.is_empty() {
        let _ = writeln!(out, "Nothing to do: every selected node is at the target.");
    } else {
        let _ = writeln!(
            out,
            "Order ({} nodes in {} batch(es); the nodes of a batch go together):",
            plan.nodes.len(),
            plan.batches.len()
        );
    }
    let mut batch = None;
    for (i, n) in plan.nodes.iter().enumerate() {
        if batch != Some(n.batch)
            && let Some(b) = plan.batches.get(n.batch as usize)
        {
            batch = Some(n.batch);
            let zone = b.zone.as_ref().map(|z| format!(", zone {z}")).unwrap_or_default();
            let size = b.nodes.len();
            let _ = writeln!(out, "  batch {} ({size} node(s){zone}): {}", n.batch + 1, b.why);
        }
        render_node(&mut out, plan, i, n);
    }
    for s in &plan.skipped {
        let _ = writeln!(out, "Skipped: {} ({})", s.hostname, s.reason);
    }
    out
}

/// The alert gate's answer when the plan was made.
fn gate_line(gate: &crate::model::alerts::GateAnswer) -> String {
    let ignored = match gate.ignored() {
        [] => String::new(),
        names => format!("; ignored by gates.alert_filter: {}", names.join(", ")),
    };
    if gate.is_open() {
        format!("Alert gate: open (no firing alert counts{ignored})")
    } else {
        format!(
            "Alert gate: closed by {}{ignored}; a run waits before each node until they clear (at most gates.wait)",
            gate.firing_text()
        )
    }
}

/// One node of the plan: its place, role, versions, and what its drain does.
fn render_node(out: &mut String, plan: &Plan, i: usize, n: &crate::planner::NodePlan) {
    let role = match (n.role, n.leader) {
        (_, true) => "manager, leader",
        (crate::model::Role::Manager, false) => "manager",
        (crate::model::Role::Worker, _) => "worker",
    };
    let _ = writeln!(
        out,
        "{:>3}. {} ({role}): engine {} -> {}, returns to {:?}",
        i + 1,
        n.hostname,
        n.engine_from,
        plan.target.engine_version(),
        n.availability
    );
    let _ = writeln!(out, "       packages: {}", n.packages);
    let _ = writeln!(
        out,
        "       phases: prefetch, pause, surge, drain, wait-migrated, upgrade, restart, wait-ready, reactivate, verify-converged"
    );
    if !n.surge.is_empty() {
        let s: Vec<String> = n
            .surge
            .iter()
            .map(|s| format!("{} {}->{} (on {})", s.name, s.from, s.to, s.expected_on.join(", ")))
            .collect();
        let _ = writeln!(out, "       surge: {}", s.join("; "));
    }
    if !n.moves.is_empty() {
        let _ = writeln!(out, "       drain moves: {}", n.moves.join("; "));
    }
    if !n.standalone.is_empty() {
        let s = crate::model::Standalone::list(&n.standalone);
        let _ = writeln!(out, "       standalone containers stop while its engine restarts: {s}");
    }
    if !n.downtime.is_empty() {
        let names: Vec<&str> = n.downtime.iter().map(|o| o.name.as_str()).collect();
        let _ = writeln!(
            out,
            "       accepted outage: {} (cannot run elsewhere): down from the drain of {host} until {host} is back and the task runs again, about as long as this node's upgrade",
            names.join(", "),
            host = n.hostname
        );
    }
    if !n.global_stops.is_empty() {
        let _ = writeln!(
            out,
            "       global tasks stop and return with the node: {}",
            n.global_stops.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alerts::{Alert, GateAnswer};

    #[test]
    fn the_gate_line_says_open_or_closed_by_what_and_what_is_ignored() {
        let open = GateAnswer::Open { ignored: vec![] };
        assert_eq!(gate_line(&open), "Alert gate: open (no firing alert counts)");
        let closed = GateAnswer::Closed {
            firing: vec![Alert { name: "NodeDown".into(), instance: "10.0.0.5:9100".into() }],
            ignored: vec!["Watchdog".into()],
        };
        assert_eq!(
            gate_line(&closed),
            "Alert gate: closed by NodeDown (10.0.0.5:9100); ignored by gates.alert_filter: Watchdog; a run waits before each node until they clear (at most gates.wait)"
        );
    }
}
