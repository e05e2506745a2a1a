//! Commands that talk to the live swarm through a manager's Docker API: `snapshot`, `status`,
//! `abort` and `unlock --force`.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::{Failure, Output, exit};
use crate::adapters::docker::DockerSwarm;
use crate::adapters::docker::store::SwarmLabelStore;
use crate::lock::StoreDoc;
use crate::machine::elapsed;
use crate::ports::{PortError, StateStore};

fn port(e: PortError) -> Failure {
    Failure::new(exit::RUN_FAILED, e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::RUN_FAILED, format!("cannot start the runtime: {e}")))
}

async fn connect() -> Result<(DockerSwarm, SwarmLabelStore), Failure> {
    let swarm = DockerSwarm::connect().await.map_err(port)?;
    let store = SwarmLabelStore::new(swarm.docker().clone());
    Ok((swarm, store))
}

/// `snapshot`: the observed cluster as JSON, with every node's agent report (or why its agent
/// could not be reached), ready for `plan --snapshot`.
pub fn snapshot(settings: &crate::config::Settings, out: Option<&Path>) -> Result<(), Failure> {
    use crate::coordinator::{Coordinator, Ports};
    let snap = runtime()?.block_on(async {
        let (swarm, store) = connect().await?;
        let agents = agents(settings)?;
        let ports = Ports { swarm: &swarm, agents: &agents, store: &store, clock: &crate::ports::SystemClock };
        Coordinator::new(ports, settings, holder()).observe_all().await.map_err(port)
    })?;
    let text = serde_json::to_string_pretty(&snap).expect("snapshots serialize");
    match out {
        Some(path) => {
            std::fs::write(path, text + "\n").map_err(|e| Failure::new(exit::BAD_INPUT, format!("cannot write {}: {e}", path.display())))
        }
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// `status`: the lock and each node's progress.
pub fn status(output: Output) -> Result<(), Failure> {
    let doc = runtime()?.block_on(async { connect().await?.1.load().await.map_err(port) })?.doc;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&StatusReport::from(&doc)).expect("status serializes")),
        Output::Text => print!("{}", render_status(&doc, jiff::Timestamp::now())),
    }
    Ok(())
}

#[derive(Serialize)]
struct StatusReport<'a> {
    lock: Option<&'a crate::lock::Lock>,
    last_token: u64,
    run: Option<&'a crate::run::RunRecord>,
}

impl<'a> From<&'a StoreDoc> for StatusReport<'a> {
    fn from(d: &'a StoreDoc) -> Self {
        StatusReport { lock: d.lock.as_ref(), last_token: d.last_token, run: d.run.as_ref() }
    }
}

/// The status for people.
pub fn render_status(doc: &StoreDoc, now: jiff::Timestamp) -> String {
    let mut s = String::new();
    match &doc.lock {
        None => s.push_str("Lock: free\n"),
        Some(l) => {
            let state = if l.expired(now) { "EXPIRED" } else { "held" };
            let _ = writeln!(
                s,
                "Lock: {state} by {} since {} (run {}, token {}, lease until {})",
                l.holder, l.acquired_at, l.run_id, l.token, l.expires_at
            );
        }
    }
    let Some(run) = &doc.run else {
        s.push_str("Run: none recorded\n");
        return s;
    };
    let outcome = match (run.outcome, &run.reason) {
        (Some(o), Some(r)) => format!("{o:?}: {r}").to_lowercase(),
        (Some(o), None) => format!("{o:?}").to_lowercase(),
        (None, _) if run.abort_requested => "in progress, abort requested".into(),
        (None, _) => "in progress".into(),
    };
    let _ = writeln!(s, "Run: {} to {} started {}: {outcome}", run.id, run.target, run.started_at);
    let _ = writeln!(s, "{:<16} {:<18} {:>8}  reason", "NODE", "PHASE", "IN PHASE");
    for n in &run.nodes {
        let secs = if n.phase.is_terminal() || n.phase == crate::machine::Phase::Pending {
            String::from("-")
        } else {
            format!("{}s", elapsed(n.phase_started, now).as_secs())
        };
        let _ = writeln!(s, "{:<16} {:<18} {:>8}  {}", n.hostname, format!("{:?}", n.phase), secs, n.reason.as_deref().unwrap_or(""));
    }
    s
}

/// Read-modify-write of the store for operator commands (no lock needed: they only set flags).
async fn update<T>(store: &SwarmLabelStore, mut f: impl FnMut(&mut StoreDoc) -> T) -> Result<T, Failure> {
    crate::ports::update_doc(store, &crate::ports::SystemClock, |doc| Ok::<T, PortError>(f(doc))).await.map_err(port)
}

/// `abort`: the running coordinator stops after the node in progress.
pub fn abort() -> Result<(), Failure> {
    let msg = runtime()?.block_on(async {
        let (_, store) = connect().await?;
        update(&store, |doc| match doc.run.as_mut().filter(|r| !r.finished()) {
            None => "no run in progress; nothing to abort".to_string(),
            Some(run) => {
                run.abort_requested = true;
                let current = run.nodes.iter().find(|n| !n.phase.is_terminal() && n.phase != crate::machine::Phase::Pending);
                match current {
                    Some(n) => format!("abort requested: run {} stops once node {} is finished and safe", run.id, n.hostname),
                    None => format!("abort requested: run {} stops before its next node", run.id),
                }
            }
        })
        .await
    })?;
    println!("{msg}");
    Ok(())
}

/// `unlock --force`: breaks the lock, showing who held it.
pub fn unlock() -> Result<(), Failure> {
    let broken = runtime()?.block_on(async {
        let (_, store) = connect().await?;
        update(&store, StoreDoc::break_lock).await
    })?;
    match broken {
        None => println!("no lock was held"),
        Some(l) => println!(
            "broke the lock held by {} since {} (run {}, token {}); an unfinished run can be taken over with `swarm-upgrade resume`",
            l.holder, l.acquired_at, l.run_id, l.token
        ),
    }
    Ok(())
}

/// `agent`: serves this node's agent until a signal.
pub fn agent(settings: &crate::config::Settings) -> Result<(), Failure> {
    runtime()?.block_on(crate::agent::run::run(settings)).map_err(|e| Failure::new(exit::RUN_FAILED, e))
}

/// A live `plan`: the swarm through the Docker API, every node's agent over gRPC.
pub fn plan(settings: &crate::config::Settings, target: &super::TargetArgs, output: Output) -> Result<(), Failure> {
    use crate::coordinator::{Coordinator, CoordinatorError, Ports};
    let result = runtime()?.block_on(async {
        let (swarm, store) = connect().await?;
        let agents = agents(settings)?;
        let ports = Ports { swarm: &swarm, agents: &agents, store: &store, clock: &crate::ports::SystemClock };
        let coordinator = Coordinator::new(ports, settings, holder());
        match coordinator.plan(&super::plan::request(target)).await {
            Ok(plan) => Ok(Ok(plan)),
            Err(CoordinatorError::Refused(r)) => Ok(Err(r)),
            Err(e) => Err(Failure::new(exit::RUN_FAILED, e.to_string())),
        }
    })?;
    super::plan::present(result, output)
}

/// The agents, reached with this manager's own swarm certificate (or the configured one).
fn agents(settings: &crate::config::Settings) -> Result<crate::adapters::agent_client::GrpcAgents, Failure> {
    let tls = if settings.agent.insecure {
        tracing::warn!("agent.insecure is set: talking to agents in plaintext");
        None
    } else {
        Some(crate::agent::tls::load(&settings.agent).map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))?)
    };
    let packages = settings.engine_packages.iter().chain(&settings.companion_packages).cloned().collect();
    Ok(crate::adapters::agent_client::GrpcAgents::new(tls, settings.agent.port, packages))
}

/// This coordinator's name in the lock: `host/pid`.
fn holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into());
    format!("{host}/{}", std::process::id())
}

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

/// `run`: a new run to the target, holding the lock; the outcome as the exit code.
pub fn run(settings: &crate::config::Settings, target: &super::TargetArgs, mode: RunMode, output: Output) -> Result<(), Failure> {
    let now = jiff::Timestamp::now();
    if mode != RunMode::IgnoreWindow && !crate::config::window::window_open(&settings.windows, now) {
        let why = format!("outside every maintenance window ({} configured); nothing was changed", settings.windows.len());
        if mode == RunMode::Scheduled {
            // A catch-up start after downtime (Persistent=true) can fall outside the window.
            println!("{why}: the scheduled run does nothing");
            return Ok(());
        }
        return Err(Failure::new(exit::REFUSED, format!("{why}: wait for a window, or pass --ignore-window for a one-off run")));
    }
    if mode == RunMode::Scheduled && !runtime()?.block_on(is_manager())? {
        println!("this node is not a swarm manager: scheduled runs start on managers only; nothing to do");
        return Ok(());
    }
    let run_id = format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), holder().replace('/', "-"));
    let request = crate::planner::PlanRequest { scheduled: mode == RunMode::Scheduled, ..super::plan::request(target) };
    let result = coordinate(settings, Start::Run(request, run_id), output)?;
    if let (RunMode::Scheduled, Err(crate::coordinator::CoordinatorError::Lock(crate::lock::LockError::Held { holder, since, .. }))) =
        (mode, &result)
    {
        // The timer starts on every manager: one upgrades, the others say so and end.
        println!("another manager is upgrading the cluster (locked by {holder} since {since}): this one does nothing");
        return Err(Failure::new(exit::LOCKED, format!("locked by {holder} since {since}")));
    }
    if let (RunMode::Scheduled, Err(crate::coordinator::CoordinatorError::Unfinished(id))) = (mode, &result) {
        // An interrupted run whose coordinator is gone: any manager takes it over.
        println!("run {id} was interrupted: the scheduled run resumes it");
        return present_run(settings, coordinate(settings, Start::Resume(false), output)?, output);
    }
    present_run(settings, result, output)
}

/// Whether the local engine is a manager of a swarm.
async fn is_manager() -> Result<bool, Failure> {
    let (swarm, _) = connect().await?;
    let info =
        swarm.docker().info().await.map_err(|e| Failure::new(exit::RUN_FAILED, format!("cannot read the local engine's state: {e}")))?;
    Ok(info.swarm.and_then(|s| s.control_available).unwrap_or(false))
}

/// `resume`: takes over an interrupted run (waiting for its lease to expire if `wait`).
pub fn resume(settings: &crate::config::Settings, wait: bool, output: Output) -> Result<(), Failure> {
    drive(settings, output, Start::Resume(wait))
}

/// How a coordinator starts: a new run (request, run ID) or taking over (waiting or not).
enum Start {
    Run(crate::planner::PlanRequest, String),
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
        let progress = super::live_progress(output).then(|| super::progress::spawn(store.clone()));
        let agents = agents(settings)?;
        let ports = Ports { swarm: &swarm, agents: &agents, store: &store, clock: &crate::ports::SystemClock };
        let mut coordinator = Coordinator::new(ports, settings, holder());
        let webhook = match settings.webhook.as_deref().map(crate::adapters::webhook::Webhook::start).transpose() {
            Ok(w) => w,
            Err(e) => return Err(Failure::new(exit::BAD_INPUT, format!("notify.webhook: {e}"))),
        };
        if let Some(w) = &webhook {
            coordinator = coordinator.with_events(w.sink.clone());
        }
        let result = match start {
            Start::Run(req, run_id) => coordinator.run(&req, &run_id).await,
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
    crate::metrics::set(crate::metrics::LOCK_HELD, &[], 0.0);
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
        Err(CoordinatorError::Refused(refusals)) => return super::plan::present(Err(refusals), output),
        Err(CoordinatorError::NothingToDo(target)) => {
            println!("nothing to do: every selected node is already at {target}");
            return Ok(());
        }
        Err(e @ (CoordinatorError::Lock(_) | CoordinatorError::Unfinished(_))) => return Err(Failure::new(exit::LOCKED, e.to_string())),
        Err(e @ CoordinatorError::NothingToResume) => return Err(Failure::new(exit::BAD_INPUT, e.to_string())),
        Err(e) => return Err(Failure::new(exit::RUN_FAILED, e.to_string())),
    };
    let report = crate::report::RunReport::new(record.clone(), &settings.engine_packages[0]);
    match report.write(&settings.agent.state_dir.join("runs")) {
        Ok(path) => tracing::info!(run = %record.id, report = %path.display(), "run report written"),
        Err(e) => tracing::warn!(run = %record.id, error = %e, "the run report was not written"),
    }
    let doc = StoreDoc { run: Some(record.clone()), ..StoreDoc::default() };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&record).expect("runs serialize")),
        Output::Text => print!("{}", render_status(&doc, jiff::Timestamp::now())),
    }
    let reason = record.reason.clone().unwrap_or_default();
    match record.outcome {
        Some(Outcome::Succeeded) => Ok(()),
        Some(Outcome::Aborted) => Err(Failure::new(exit::ABORTED, format!("run {} aborted by an operator: {reason}", record.id))),
        _ => Err(Failure::new(exit::RUN_FAILED, format!("run {} failed: {reason}", record.id))),
    }
}
