//! The alert gate (issue 17, item 2) over the in-memory cluster and a fake monitoring system:
//! firing alerts that count hold each node or batch before it starts, for at most `gates.wait`;
//! the filter decides which count; a monitoring system that cannot be asked is refused up front,
//! and waited for (then given up on) during a run; the canary's soak needs the gate open.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::{Coordinator, CoordinatorError, Ports};
use swarm_upgrade::machine::Phase;
use swarm_upgrade::model::alerts::{Alert, AlertFilter, FilterMode, GateAnswer};
use swarm_upgrade::model::plan::RefusalKind;
use swarm_upgrade::ports::{Alerts, Clock, PortError, SystemClock, update_doc};
use swarm_upgrade::run::{Halt, Outcome, RunRecord};

/// A monitoring system whose answer the test sets.
struct FakeAlerts(Mutex<Result<Vec<Alert>, PortError>>);

impl FakeAlerts {
    fn quiet() -> Self {
        FakeAlerts(Mutex::new(Ok(Vec::new())))
    }

    fn set(&self, answer: Result<Vec<Alert>, PortError>) {
        *self.0.lock().unwrap() = answer;
    }

    fn fire(&self, names: &[&str]) {
        let alerts =
            names.iter().map(|n| Alert { name: n.to_string(), instance: "node:9701".into() });
        self.set(Ok(alerts.collect()));
    }
}

impl Alerts for FakeAlerts {
    fn source(&self) -> &str {
        "http://prometheus:9090"
    }

    fn firing(&self) -> BoxFuture<'_, Result<Vec<Alert>, PortError>> {
        let answer = self.0.lock().unwrap().clone();
        async move { answer }.boxed()
    }
}

fn gated(wait: Duration, filter: AlertFilter) -> Settings {
    let mut s = Settings::default();
    s.gates.prometheus_url = Some("http://prometheus:9090".into());
    s.gates.wait = wait;
    s.gates.alert_filter = filter;
    s
}

fn excluding(pattern: &str) -> AlertFilter {
    AlertFilter { pattern: Some(regex::Regex::new(pattern).unwrap()), mode: FilterMode::Exclude }
}

async fn gated_run(
    c: &FakeCluster,
    settings: &Settings,
    alerts: &FakeAlerts,
) -> Result<RunRecord, CoordinatorError> {
    let clock = TestClock::new();
    let ports = Ports { swarm: c, agents: c, store: c, clock: &clock };
    Coordinator::new(ports, settings, "manager1/1")
        .with_alerts(Some(alerts as &dyn Alerts))
        .run(&to(NEW), "run-1")
        .await
}

fn stored_run(c: &FakeCluster) -> Option<RunRecord> {
    c.world.lock().unwrap().store_doc().run
}

/// Waits (in the paused clock) until node `i` of the run is in `phase` or past it.
async fn until_started(c: &FakeCluster, i: usize) {
    for _ in 0..10_000 {
        if stored_run(c).is_some_and(|r| r.nodes[i].phase != Phase::Pending) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("node {i} never started");
}

#[tokio::test(start_paused = true)]
async fn a_firing_alert_holds_the_first_node_until_it_clears() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = gated(Duration::from_secs(600), AlertFilter::default());
    let alerts = FakeAlerts::quiet();
    alerts.fire(&["NodeDown"]);
    let clock = TestClock::new();
    let (end, cleared_at) = tokio::join!(gated_run(&c, &settings, &alerts), async {
        tokio::time::sleep(Duration::from_secs(120)).await;
        // Two minutes in, the lock is held and nothing has started.
        let run = stored_run(&c).expect("the run is recorded");
        assert!(run.nodes.iter().all(|n| n.phase == Phase::Pending));
        // `status` reads what it waits for from the store.
        let wait = run.gate_wait.expect("the wait is recorded");
        assert_eq!(
            (wait.node.as_str(), wait.why.as_str()),
            (run.nodes[0].hostname.as_str(), "alerts firing: NodeDown (node:9701)")
        );
        assert_eq!(wait.until.duration_since(wait.since), jiff::SignedDuration::from_secs(600));
        alerts.set(Ok(Vec::new()));
        clock.now()
    });
    let rec = end.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert_eq!(rec.gate_wait, None, "the wait is over");
    let first_start = rec.nodes[0].history[0].end; // (the end of its wait as pending)
    assert!(
        first_start + jiff::SignedDuration::from_secs(1) >= cleared_at,
        "{first_start} {cleared_at}"
    );
}

/// The alert fires while the first node upgrades: the next batch does not start early beside its
/// verification, nor in its turn; after gates.wait the run stops there.
#[tokio::test(start_paused = true)]
async fn an_alert_that_does_not_clear_stops_the_run_before_the_next_node() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = gated(Duration::from_secs(90), AlertFilter::default());
    let alerts = FakeAlerts::quiet();
    let (end, ()) = tokio::join!(gated_run(&c, &settings, &alerts), async {
        until_started(&c, 0).await;
        alerts.fire(&["HighErrorRate"]);
    });
    let rec = end.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Aborted), Some(Halt::AlertGate)));
    let reason = rec.reason.unwrap();
    let next = &rec.nodes[1].hostname;
    assert!(
        reason.starts_with(&format!("stopped before node {next}: the alert gate stayed closed for 90 s (gates.wait), alerts firing: HighErrorRate (node:9701); nothing was changed on {next}")),
        "{reason}"
    );
    assert_eq!(rec.nodes[0].phase, Phase::Done);
    assert!(rec.nodes.iter().skip(1).all(|n| n.phase == Phase::Pending));
    assert_eq!(rec.gate_wait, None, "the wait is over");
    let doc = c.world.lock().unwrap().store_doc();
    assert!(doc.lock.is_none(), "the lock is free");
}

#[tokio::test(start_paused = true)]
async fn the_filter_decides_which_alerts_hold_the_run() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = gated(Duration::from_secs(30), excluding("^Watchdog$"));
    let alerts = FakeAlerts::quiet();
    alerts.fire(&["Watchdog"]);
    let rec = gated_run(&c, &settings, &alerts).await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);

    let c = FakeCluster::new(world_from(&fixture()));
    let include = AlertFilter { mode: FilterMode::Include, ..excluding("^Watchdog$") };
    let settings = gated(Duration::from_secs(30), include);
    let rec = gated_run(&c, &settings, &alerts).await.unwrap();
    assert_eq!(rec.halt, Some(Halt::AlertGate), "only Watchdog counts: {:?}", rec.reason);
    assert!(rec.nodes.iter().all(|n| n.phase == Phase::Pending));
}

#[tokio::test(start_paused = true)]
async fn a_monitoring_system_that_cannot_be_asked_is_refused_up_front_and_waited_for_later() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = gated(Duration::from_secs(60), AlertFilter::default());
    let alerts = FakeAlerts::quiet();
    alerts.set(Err(PortError::Unavailable("connection refused".into())));
    let before = c.world.lock().unwrap().store_doc();
    let Err(CoordinatorError::Refused(r)) = gated_run(&c, &settings, &alerts).await else {
        panic!("not refused")
    };
    assert_eq!(r[0].kind, RefusalKind::AlertGate);
    assert!(r[0].reason.contains("cannot ask Prometheus at http://prometheus:9090 (gates.prometheus_url): unavailable: connection refused"), "{}", r[0].reason);
    assert!(r[0].fix.contains("gates.prometheus_url = \"\""), "{}", r[0].fix);
    assert_eq!(c.world.lock().unwrap().store_doc(), before, "a refusal changed nothing");

    // Lost during the run, it closes the gate like a firing alert.
    alerts.set(Ok(Vec::new()));
    let (end, ()) = tokio::join!(gated_run(&c, &settings, &alerts), async {
        until_started(&c, 0).await;
        alerts.set(Err(PortError::Unavailable("connection refused".into())));
    });
    let rec = end.unwrap();
    assert_eq!(rec.halt, Some(Halt::AlertGate));
    assert!(rec.reason.unwrap().contains("the monitoring system cannot be asked"));
}

#[tokio::test(start_paused = true)]
async fn an_abort_ends_the_wait_for_the_gate() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = gated(Duration::from_secs(3600), AlertFilter::default());
    let alerts = FakeAlerts::quiet();
    alerts.fire(&["NodeDown"]);
    let (end, ()) = tokio::join!(gated_run(&c, &settings, &alerts), async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        update_doc(&c, &SystemClock, |doc| {
            doc.run.as_mut().unwrap().abort_requested = true;
            Ok::<_, PortError>(())
        })
        .await
        .unwrap();
    });
    let rec = end.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Aborted), Some(Halt::Aborted)));
    assert!(rec.nodes.iter().all(|n| n.phase == Phase::Pending));
    let took = rec.finished_at.unwrap().duration_since(rec.started_at);
    assert!(took < jiff::SignedDuration::from_secs(120), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn plan_shows_the_gates_answer() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = gated(Duration::from_secs(60), excluding("^Watchdog$"));
    let alerts = FakeAlerts::quiet();
    alerts.fire(&["Watchdog", "NodeDown"]);
    let clock = TestClock::new();
    let ports = Ports { swarm: &c, agents: &c, store: &c, clock: &clock };
    let coordinator =
        Coordinator::new(ports, &settings, "manager1/1").with_alerts(Some(&alerts as &dyn Alerts));
    let plan = coordinator.plan(&to(NEW)).await.unwrap();
    let Some(GateAnswer::Closed { firing, ignored }) = plan.gate else { panic!("{:?}", plan.gate) };
    assert_eq!((firing[0].name.as_str(), ignored), ("NodeDown", vec!["Watchdog".to_string()]));
}

#[tokio::test(start_paused = true)]
async fn the_soak_needs_the_gate_open() {
    let c = FakeCluster::new(world_from(&fixture()));
    let mut settings = gated(Duration::from_secs(3600), AlertFilter::default());
    settings.canary = 1;
    settings.soak = Some(Duration::from_secs(300));
    let alerts = FakeAlerts::quiet();
    let clock = TestClock::new();
    let (end, fired_until) = tokio::join!(gated_run(&c, &settings, &alerts), async {
        for _ in 0..10_000 {
            if stored_run(&c).is_some_and(|r| r.holding()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        alerts.fire(&["NodeDown"]);
        tokio::time::sleep(Duration::from_secs(900)).await;
        let run = stored_run(&c).unwrap();
        assert!(run.holding(), "the soak did not pass while an alert fired");
        alerts.set(Ok(Vec::new()));
        clock.now()
    });
    let rec = end.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let released = rec.hold.unwrap().released.unwrap();
    assert_eq!(released.by, "soak");
    assert!(released.at >= fired_until + jiff::SignedDuration::from_secs(300), "{released:?}");
}
