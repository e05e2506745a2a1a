//! `run` and `resume`: a coordinator on the live swarm, with its progress on a terminal, its
//! webhook and metrics, and its end as output and exit code.

use super::live::{agents, connect, holder, render_status, runtime};
use super::{Failure, Output, exit};
use crate::lock::StoreDoc;

/// How `run` was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// By an operator: refused outside the maintenance windows.
    InWindow,
    /// By an operator with `--ignore-window`.
    IgnoreWindow,
    /// By swarm-upgrade.timer (`--scheduled`): quiet when there is nothing for this manager to do.
    Scheduled,
}

/// `run`: a new run to the target, holding the lock; the outcome as the exit code. With `ask`,
/// the plan is shown and confirmed before the lock is taken.
pub fn run(
    settings: &crate::config::Settings,
    target: &super::TargetArgs,
    mode: RunMode,
    output: Output,
    ask: bool,
) -> Result<(), Failure> {
    let now = jiff::Timestamp::now();
    if mode != RunMode::IgnoreWindow && !crate::config::window::window_open(&settings.windows, now)
    {
        let why = format!(
            "outside every maintenance window ({} configured); nothing was changed",
            settings.windows.len()
        );
        if mode == RunMode::Scheduled {
            // A catch-up start after downtime (Persistent=true) can fall outside the window.
            outln!("{why}: the scheduled run does nothing");
            return Ok(());
        }
        return Err(Failure::new(
            exit::REFUSED,
            format!("{why}: wait for a window, or pass --ignore-window for a one-off run"),
        ));
    }
    if mode == RunMode::Scheduled && !runtime()?.block_on(is_manager())? {
        outln!(
            "this node is not a swarm manager: scheduled runs start on managers only; nothing to do"
        );
        return Ok(());
    }
    let run_id = crate::model::new_run_id(&now.strftime("%Y%m%dT%H%M%SZ").to_string(), &holder());
    let request = crate::planner::PlanRequest {
        scheduled: mode == RunMode::Scheduled,
        ..super::plan::request(target)
    };
    let result = coordinate(settings, Start::Run(request, run_id, ask), output)?;
    if let (
        RunMode::Scheduled,
        Err(crate::coordinator::CoordinatorError::Lock(crate::lock::LockError::Held {
            holder,
            since,
            ..
        })),
    ) = (mode, &result)
    {
        // The timer starts on every manager: one upgrades, the others say so and end.
        outln!(
            "another manager is upgrading the cluster (locked by {holder} since {since}): this one does nothing"
        );
        return Err(Failure::new(exit::LOCKED, format!("locked by {holder} since {since}")));
    }
    if let (RunMode::Scheduled, Err(crate::coordinator::CoordinatorError::Unfinished(id))) =
        (mode, &result)
    {
        // An interrupted run whose coordinator is gone: any manager takes it over. (On stderr:
        // stdout is the run's own output, which `--output json` keeps parseable.)
        eprintln!("run {id} was interrupted: the scheduled run resumes it");
        return present_run(settings, coordinate(settings, Start::Resume(false), output)?, output);
    }
    present_run(settings, result, output)
}

/// Whether the local engine is a manager of a swarm.
async fn is_manager() -> Result<bool, Failure> {
    let (swarm, _) = connect().await?;
    crate::adapters::docker::sent("info");
    let info = swarm.docker().info().await.map_err(|e| {
        Failure::new(exit::RUN_FAILED, format!("cannot read the local engine's state: {e}"))
    })?;
    Ok(info.swarm.and_then(|s| s.control_available).unwrap_or(false))
}

/// `resume`: takes over an interrupted run (waiting for its lease to expire if `wait`).
pub fn resume(
    settings: &crate::config::Settings,
    wait: bool,
    output: Output,
) -> Result<(), Failure> {
    drive(settings, output, Start::Resume(wait))
}

/// How a coordinator starts: a new run (request, run ID, whether its plan is confirmed first) or
/// taking over (waiting or not).
enum Start {
    Run(crate::planner::PlanRequest, String, bool),
    Resume(bool),
}

/// Connects the live ports, drives the run, and maps its end to output and exit code.
fn drive(settings: &crate::config::Settings, output: Output, start: Start) -> Result<(), Failure> {
    present_run(settings, coordinate(settings, start, output)?, output)
}

/// Connects the live ports and drives the run to its end.
fn coordinate(
    settings: &crate::config::Settings,
    start: Start,
    output: Output,
) -> Result<Result<crate::run::RunRecord, crate::coordinator::CoordinatorError>, Failure> {
    use crate::coordinator::{Coordinator, Ports};
    let result = runtime()?.block_on(async {
        let (swarm, store) = connect().await?;
        if let Some(addr) = settings.coordinator_metrics
            && let Err(e) = crate::metrics::serve(addr).await
        {
            tracing::warn!(%addr, error = %e, "cannot serve metrics (metrics.coordinator); the run goes on");
        }
        // On a terminal the run draws its progress in place (logs are then warnings only).
        let id = match &start {
            Start::Run(_, id, _) => Some(id.clone()),
            Start::Resume(_) => None,
        };
        let progress =
            super::live_progress(output).then(|| super::progress::spawn(store.clone(), id));
        let agents = agents(settings)?;
        let ports = Ports { swarm: &swarm, agents: &agents, store: &store, clock: &crate::ports::SystemClock };
        let prometheus = super::live::alerts(settings)?;
        let mut coordinator = Coordinator::new(ports, settings, holder())
            .with_unlock_key(super::live::unlock_key(settings)?)
            .with_alerts(prometheus.as_ref().map(|p| p as &dyn crate::ports::Alerts));
        let webhook = match settings.webhook.as_deref().map(crate::adapters::webhook::Webhook::start).transpose() {
            Ok(w) => w,
            Err(e) => return Err(Failure::new(exit::BAD_INPUT, format!("notify.webhook: {e}"))),
        };
        if let Some(w) = &webhook {
            coordinator = coordinator.with_events(w.sink.clone());
        }
        let result = match start {
            Start::Run(req, run_id, ask) => {
                if ask {
                    coordinator = coordinator.with_confirm(Box::new(super::confirm::ask));
                }
                coordinator.run(&req, &run_id).await
            }
            Start::Resume(wait) => coordinator.resume(wait).await,
        };
        drop(coordinator);
        if let Some(p) = progress {
            p.finish(result.as_ref().ok()).await;
        }
        if let Some(w) = webhook {
            w.finish(std::time::Duration::from_secs(30)).await;
        }
        Ok::<_, Failure>(result)
    });
    // A run is a batch job: its last figures stay for node_exporter's textfile collector.
    crate::metrics::set(crate::metrics::LOCK_HELD, &[], 0);
    if matches!(result, Ok(Ok(_))) {
        let path = settings.agent.state_dir.join("metrics/swarm-upgrade.prom");
        if let Err(e) = crate::metrics::write_textfile(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the run's metrics");
        }
    }
    result
}

/// A run's end as output and exit code; a run that ended leaves its report in
/// `agent.state_dir/runs/`.
fn present_run(
    settings: &crate::config::Settings,
    result: Result<crate::run::RunRecord, crate::coordinator::CoordinatorError>,
    output: Output,
) -> Result<(), Failure> {
    use crate::coordinator::CoordinatorError;
    use crate::run::Outcome;
    let record = match result {
        Ok(record) => record,
        Err(CoordinatorError::Refused(refusals)) => {
            return super::plan::present(Err(refusals), output);
        }
        Err(CoordinatorError::NothingToDo(target)) => {
            outln!("nothing to do: every selected node is already at {target}");
            return Ok(());
        }
        Err(e @ CoordinatorError::Stopped(_)) => {
            // Only a scheduled run gets here; an operator's `run` is refused by preflight.
            outln!("{e}: the scheduled run does nothing");
            return Ok(());
        }
        Err(e @ (CoordinatorError::Lock(_) | CoordinatorError::Unfinished(_))) => {
            return Err(Failure::new(exit::LOCKED, e.to_string()));
        }
        Err(CoordinatorError::Declined(why)) => {
            return Err(Failure::new(
                exit::ABORTED,
                format!(
                    "the plan was not confirmed ({why}): nothing was changed; answer y to start, or pass --yes"
                ),
            ));
        }
        Err(e @ CoordinatorError::NothingToResume) => {
            return Err(Failure::new(exit::BAD_INPUT, e.to_string()));
        }
        Err(e) => return Err(Failure::new(exit::RUN_FAILED, e.to_string())),
    };
    let report = crate::report::RunReport::new(record.clone(), &settings.engine_packages[0]);
    match report.write(&settings.agent.state_dir.join("runs")) {
        Ok(path) => {
            tracing::info!(run = %record.id, report = %path.display(), "run report written")
        }
        Err(e) => tracing::warn!(run = %record.id, error = %e, "the run report was not written"),
    }
    let doc = StoreDoc { run: Some(record.clone()), ..StoreDoc::default() };
    match output {
        Output::Json => {
            outln!("{}", serde_json::to_string_pretty(&record).expect("runs serialize"))
        }
        Output::Text => out!("{}", render_status(&doc, jiff::Timestamp::now())),
    }
    let reason = record.reason.clone().unwrap_or_default();
    match record.outcome {
        Some(Outcome::Succeeded) => Ok(()),
        Some(Outcome::Aborted) => {
            Err(Failure::new(exit::ABORTED, format!("run {} stopped: {reason}", record.id)))
        }
        _ => Err(Failure::new(exit::RUN_FAILED, format!("run {} failed: {reason}", record.id))),
    }
}
