//! Commands that talk to the live swarm through a manager's Docker API: `snapshot`, `status`,
//! `abort`, `unlock --force`, `agent` and a live `plan`; `run` and `resume` are in `drive`.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::{Failure, Output, exit};
use crate::adapters::docker::DockerSwarm;
use crate::adapters::docker::store::SwarmLabelStore;
use crate::lock::StoreDoc;
use crate::machine::elapsed;
use crate::ports::{PortError, StateStore};

pub(super) fn port(e: PortError) -> Failure {
    Failure::new(exit::RUN_FAILED, e.to_string())
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::RUN_FAILED, format!("cannot start the runtime: {e}")))
}

pub(super) async fn connect() -> Result<(DockerSwarm, SwarmLabelStore), Failure> {
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
        let ports = Ports {
            swarm: &swarm,
            agents: &agents,
            store: &store,
            clock: &crate::ports::SystemClock,
        };
        Coordinator::new(ports, settings, holder())
            .with_unlock_key(unlock_key(settings)?)
            .observe_all()
            .await
            .map_err(port)
    })?;
    let text = serde_json::to_string_pretty(&snap).expect("snapshots serialize");
    match out {
        Some(path) => std::fs::write(path, text + "\n").map_err(|e| {
            Failure::new(exit::BAD_INPUT, format!("cannot write {}: {e}", path.display()))
        }),
        None => {
            outln!("{text}");
            Ok(())
        }
    }
}

/// `status`: the lock and each node's progress.
pub fn status(output: Output) -> Result<(), Failure> {
    let doc = runtime()?.block_on(async { connect().await?.1.load().await.map_err(port) })?.doc;
    match output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&StatusReport::from(&doc)).expect("status serializes")
        ),
        Output::Text => out!("{}", render_status(&doc, jiff::Timestamp::now())),
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
pub(crate) fn render_status(doc: &StoreDoc, now: jiff::Timestamp) -> String {
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
        (Some(o), Some(r)) => format!("{}: {r}", o.name()),
        (Some(o), None) => o.name().to_string(),
        (None, _) if run.abort_requested => "in progress, abort requested".into(),
        (None, _) if run.holding() => format!(
            "in progress, holding after its canary ({}): waiting for {}",
            run.canary().join(", "),
            run.hold.as_ref().map(crate::run::Hold::waiting_for).unwrap_or_default()
        ),
        (None, _) => match &run.gate_wait {
            Some(w) => format!(
                "in progress, waiting before {} for the alert gate ({}) since {}; it gives up at {}",
                w.node, w.why, w.since, w.until
            ),
            None => "in progress".into(),
        },
    };
    let _ = writeln!(s, "Run: {} to {} started {}: {outcome}", run.id, run.target, run.started_at);
    let _ = writeln!(s, "{:<16} {:<18} {:>8}  reason", "NODE", "PHASE", "IN PHASE");
    for n in &run.nodes {
        let secs = if n.phase.is_terminal() || n.phase == crate::machine::Phase::Pending {
            String::from("-")
        } else {
            format!("{}s", elapsed(n.phase_started, now).as_secs())
        };
        let _ = writeln!(
            s,
            "{:<16} {:<18} {:>8}  {}",
            n.hostname,
            format!("{:?}", n.phase),
            secs,
            match (&n.reason, &n.attention) {
                (Some(reason), _) => reason.clone(),
                (None, Some(why)) => format!("needs attention: {why}"),
                (None, None) => String::new(),
            }
        );
    }
    for n in run.nodes.iter().filter_map(|n| n.recovery.as_ref()) {
        let _ = writeln!(s, "\n{n}");
    }
    s
}

/// Read-modify-write of the store for operator commands (no lock needed: they only set flags).
async fn update<T>(
    store: &SwarmLabelStore,
    mut f: impl FnMut(&mut StoreDoc) -> T,
) -> Result<T, Failure> {
    crate::ports::update_doc(store, &crate::ports::SystemClock, |doc| Ok::<T, PortError>(f(doc)))
        .await
        .map_err(port)
}

/// What `abort` did, for `--output json`.
#[derive(Serialize)]
struct AbortReport {
    /// The run asked to stop; none when no run was in progress.
    run: Option<String>,
    /// The first node the run finishes before it stops (with the rest of its batch), if one is
    /// in progress.
    current_node: Option<String>,
    /// The same for people.
    message: String,
}

/// `abort`: the running coordinator stops after the batch in progress.
pub fn abort(output: Output) -> Result<(), Failure> {
    let report = runtime()?.block_on(async {
        let (_, store) = connect().await?;
        update(&store, |doc| match doc.run.as_mut().filter(|r| !r.finished()) {
            None => AbortReport {
                run: None,
                current_node: None,
                message: "no run in progress; nothing to abort".to_string(),
            },
            Some(run) => {
                run.abort_requested = true;
                let going: Vec<&str> = run
                    .nodes
                    .iter()
                    .filter(|n| !n.phase.is_terminal() && n.phase != crate::machine::Phase::Pending)
                    .map(|n| n.hostname.as_str())
                    .collect();
                let current = going.first().map(|n| n.to_string());
                let message = match going.as_slice() {
                    [] => format!("abort requested: run {} stops before its next node", run.id),
                    [one] => format!(
                        "abort requested: run {} stops once node {one} is finished and safe",
                        run.id
                    ),
                    many => format!(
                        "abort requested: run {} stops once nodes {} (one batch) are finished and safe",
                        run.id,
                        many.join(", ")
                    ),
                };
                AbortReport {
                    run: Some(run.id.clone()),
                    current_node: current,
                    message,
                }
            }
        })
        .await
    })?;
    match output {
        Output::Json => {
            outln!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"))
        }
        Output::Text => outln!("{}", report.message),
    }
    Ok(())
}

/// `approve [RUN]`: lets the run that holds after its canary go on; with the run's ID, also one
/// whose canary is still upgrading (it then goes on without holding). Nothing to approve, or
/// another run than the one named, is an error (exit 2), so that a late approval never lets a
/// later run skip its hold.
pub fn approve(named: Option<&str>, output: Output) -> Result<(), Failure> {
    let by = format!("approve by {}", holder());
    let now = jiff::Timestamp::now();
    let said = runtime()?.block_on(async {
        let (_, store) = connect().await?;
        update(&store, |doc| {
            let Some(run) = doc.run.as_mut().filter(|r| !r.finished()) else {
                return Err("no run in progress: nothing to approve".to_string());
            };
            let (id, holding, canary) = (run.id.clone(), run.holding(), run.canary().join(", "));
            if let Some(named) = named.filter(|n| *n != id) {
                return Err(format!("run {named} is not in progress (run {id} is): nothing was approved"));
            }
            if !holding && named.is_none() && run.hold.as_ref().is_some_and(|h| h.released.is_none()) {
                return Err(format!(
                    "run {id} does not hold yet (its canary, {canary}, is upgrading): to let it go on without holding, `swarm-upgrade approve {id}`"
                ));
            }
            let Some(hold) = run.hold.as_mut() else {
                return Err(format!("run {id} has no canary (upgrade.canary): nothing to approve"));
            };
            if let Some(r) = &hold.released {
                return Ok(format!("run {id} was already let go after its canary ({})", r.by));
            }
            hold.released = Some(crate::run::Released { by: by.clone(), at: now });
            Ok(if holding {
                format!("approved: run {id} goes on after its canary ({canary})")
            } else {
                format!("approved in advance: run {id} goes on after its canary ({canary}) without holding")
            })
        })
        .await
    })?;
    let message = said.map_err(|e| Failure::new(exit::BAD_INPUT, e))?;
    match output {
        Output::Json => {
            let report = serde_json::json!({ "approved": true, "message": message });
            outln!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
        }
        Output::Text => outln!("{message}"),
    }
    Ok(())
}

/// `unlock --force`: breaks the lock, showing who held it.
pub fn unlock(output: Output) -> Result<(), Failure> {
    let broken = runtime()?.block_on(async {
        let (_, store) = connect().await?;
        update(&store, StoreDoc::break_lock).await
    })?;
    let message = match &broken {
        None => "no lock was held".to_string(),
        Some(l) => format!(
            "broke the lock held by {} since {} (run {}, token {}); an unfinished run can be taken over with `swarm-upgrade resume`",
            l.holder, l.acquired_at, l.run_id, l.token
        ),
    };
    match output {
        Output::Json => {
            let report = serde_json::json!({ "broken": broken, "message": message });
            outln!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
        }
        Output::Text => outln!("{message}"),
    }
    Ok(())
}

/// `agent`: serves this node's agent until a signal (`config`: where its configuration was
/// read, read again for each hook).
pub fn agent(settings: &crate::config::Settings, config: Option<&Path>) -> Result<(), Failure> {
    runtime()?
        .block_on(crate::agent::run::run(settings, config))
        .map_err(|e| Failure::new(exit::RUN_FAILED, e.to_string()))
}

/// A live `plan`: the swarm through the Docker API, every node's agent over gRPC.
pub fn plan(
    settings: &crate::config::Settings,
    target: &super::TargetArgs,
    output: Output,
) -> Result<(), Failure> {
    use crate::coordinator::{Coordinator, CoordinatorError, Ports};
    let result = runtime()?.block_on(async {
        let (swarm, store) = connect().await?;
        let agents = agents(settings)?;
        let ports = Ports {
            swarm: &swarm,
            agents: &agents,
            store: &store,
            clock: &crate::ports::SystemClock,
        };
        let prometheus = alerts(settings)?;
        let coordinator = Coordinator::new(ports, settings, holder())
            .with_unlock_key(unlock_key(settings)?)
            .with_alerts(prometheus.as_ref().map(|p| p as &dyn crate::ports::Alerts));
        match coordinator.plan(&super::plan::request(target)).await {
            Ok(plan) => Ok(Ok(plan)),
            Err(CoordinatorError::Refused(r)) => Ok(Err(r)),
            Err(e) => Err(Failure::new(exit::RUN_FAILED, e.to_string())),
        }
    })?;
    super::plan::present(result, output)
}

/// The alert gate's Prometheus, when `gates.prometheus_url` is set.
pub(super) fn alerts(
    settings: &crate::config::Settings,
) -> Result<Option<crate::adapters::prometheus::Prometheus>, Failure> {
    let Some(url) = settings.gates.prometheus_url.as_deref() else { return Ok(None) };
    crate::adapters::prometheus::Prometheus::new(url)
        .map(Some)
        .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))
}

/// The agents, reached with this manager's own swarm certificate (or the configured one).
pub(super) fn agents(
    settings: &crate::config::Settings,
) -> Result<crate::adapters::agent_client::GrpcAgents, Failure> {
    let tls = if settings.agent.insecure {
        tracing::warn!("agent.insecure is set: talking to agents in plaintext");
        None
    } else {
        Some(
            crate::wire::tls::load(&settings.agent)
                .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))?,
        )
    };
    let packages = settings.all_packages();
    let reload = tls.is_some();
    let agents = crate::adapters::agent_client::GrpcAgents::new(tls, settings.agent.port, packages);
    Ok(if reload { agents.reloading(&settings.agent) } else { agents })
}

/// The swarm's unlock key, if given (its environment variable, else its file).
pub(super) fn unlock_key(
    settings: &crate::config::Settings,
) -> Result<Option<crate::model::UnlockKey>, Failure> {
    crate::config::unlock_key(&settings.agent)
        .map_err(|e| Failure::new(exit::BAD_INPUT, e.to_string()))
}

/// This coordinator's name in the lock: `host/pid`.
pub(super) fn holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}/{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run waiting for the alert gate says so, with what and until when; once it ended, only
    /// how.
    #[test]
    fn status_names_the_wait_for_the_alert_gate() {
        let snap: crate::model::ClusterSnapshot =
            serde_json::from_str(include_str!("../../tests/fixtures/five-node.json")).unwrap();
        let req = crate::planner::PlanRequest {
            to: Some("5:28.5.2-1~debian.13~trixie".parse().unwrap()),
            ..Default::default()
        };
        let settings = crate::config::Settings::default();
        let plan = crate::planner::plan(&snap, &settings, &req).unwrap();
        let now = snap.taken_at;
        let mut run =
            crate::run::RunRecord::new("r1".into(), &plan, Default::default(), &snap, now);
        run.gate_wait = Some(crate::run::GateWait {
            node: "worker1".into(),
            why: "alerts firing: NodeDown (10.0.0.5:9100)".into(),
            since: now,
            until: now + jiff::SignedDuration::from_secs(900),
        });
        let mut doc = StoreDoc { run: Some(run), ..StoreDoc::default() };
        let text = render_status(&doc, now);
        assert!(
            text.contains(&format!("in progress, waiting before worker1 for the alert gate (alerts firing: NodeDown (10.0.0.5:9100)) since {now}; it gives up at ")),
            "{text}"
        );
        let run = doc.run.as_mut().unwrap();
        run.finish(crate::run::Halt::AlertGate, "stopped before node worker1: …".into(), now);
        assert_eq!(run.gate_wait, None, "a finished run waits for nothing");
        let text = render_status(&doc, now);
        assert!(text.contains(": aborted: stopped before node worker1: …"), "{text}");
    }
}
