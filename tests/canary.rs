//! The canary and its hold (issue 17) over the in-memory cluster: the first nodes alone, then
//! nothing more until `approve` or the soak; `abort` and the hold's limit end the run there.

mod common;

use std::time::Duration;

use common::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::machine::Phase;
use swarm_upgrade::ports::{SystemClock, update_doc};
use swarm_upgrade::run::{Halt, Outcome, Released, RunRecord};

fn canary(soak: Option<Duration>) -> Settings {
    Settings { canary: 1, soak, ..Settings::default() }
}

/// Waits (in the paused clock) until the run holds; returns it then.
async fn until_holding(c: &FakeCluster) -> RunRecord {
    for _ in 0..10_000 {
        if let Some(run) = c.world.lock().unwrap().store_doc().run.filter(RunRecord::holding) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the run never held");
}

/// What an operator's `approve` writes.
async fn approve(c: &FakeCluster) {
    let at = "2026-12-05T05:00:00Z".parse().unwrap();
    update_doc(c, &SystemClock, |doc| {
        let hold = doc.run.as_mut().unwrap().hold.as_mut().unwrap();
        hold.released = Some(Released { by: "approve by manager2/7".into(), at });
        Ok::<_, swarm_upgrade::ports::PortError>(())
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_canary_goes_alone_then_the_run_holds_until_approved() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = canary(None);
    let plan = swarm_upgrade::planner::plan(&fixture(), &settings, &to(NEW)).unwrap();
    assert_eq!(plan.canary, 1);
    assert!(
        plan.batches[0].why.starts_with(
            "canary 1 of 1: alone; after the canary the run holds until `swarm-upgrade approve`"
        ),
        "{}",
        plan.batches[0].why
    );
    let req = to(NEW);
    let (end, held) = tokio::join!(run(&c, &settings, &req, "manager1/1"), async {
        let held = until_holding(&c).await;
        // Held, it stays so: a minute later nothing else has started.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let still = c.world.lock().unwrap().store_doc().run.unwrap();
        assert!(still.holding());
        assert!(still.nodes.iter().skip(1).all(|n| n.phase == Phase::Pending));
        approve(&c).await;
        held
    });
    let rec = end.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert_eq!(held.canary(), ["worker1"]);
    assert_eq!(held.nodes[0].phase, Phase::Done);
    let hold = rec.hold.unwrap();
    assert_eq!(hold.released.unwrap().by, "approve by manager2/7");
    let worker2_started = rec.nodes[1].history[0].end;
    assert!(worker2_started > hold.since.unwrap() + jiff::SignedDuration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_soak_lets_the_run_go_on_by_itself_once_every_service_has_converged() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = canary(Some(Duration::from_secs(600)));
    let rec = run(&c, &settings, &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let hold = rec.hold.unwrap();
    let released = hold.released.unwrap();
    assert_eq!(released.by, "soak");
    let settled = hold.converged_since.unwrap();
    assert!(settled >= hold.since.unwrap());
    assert!(released.at >= settled + jiff::SignedDuration::from_secs(600));
}

/// A service that does not converge for five minutes of the hold: the soak counts from when it
/// does, not from the hold's start.
#[tokio::test(start_paused = true)]
async fn the_soak_counts_only_a_settled_cluster() {
    use swarm_upgrade::model::Mode;
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = canary(Some(Duration::from_secs(600)));
    let req = to(NEW);
    let (end, ()) = tokio::join!(run(&c, &settings, &req, "manager1/1"), async {
        until_holding(&c).await;
        // solo asks for more replicas than the swarm can run (one a node, on managers only).
        let solo = |replicas: u64, max: Option<u64>| {
            let mut w = c.world.lock().unwrap();
            let s = w.services.iter_mut().find(|s| s.name == "solo").unwrap();
            (s.mode, s.max_replicas_per_node) = (Mode::Replicated { replicas }, max);
            s.constraints = if max.is_some() { vec!["node.role==manager".into()] } else { vec![] };
        };
        solo(5, Some(1));
        tokio::time::sleep(Duration::from_secs(300)).await;
        solo(1, None);
    });
    let rec = end.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let hold = rec.hold.unwrap();
    let (since, settled) = (hold.since.unwrap(), hold.converged_since.unwrap());
    assert!(settled >= since + jiff::SignedDuration::from_secs(290), "{since} {settled}");
    assert!(hold.released.unwrap().at >= settled + jiff::SignedDuration::from_secs(600));
}

#[tokio::test(start_paused = true)]
async fn an_abort_during_the_hold_ends_the_run_there() {
    let c = FakeCluster::new(world_from(&fixture()));
    let settings = canary(None);
    let req = to(NEW);
    let (end, ()) = tokio::join!(run(&c, &settings, &req, "manager1/1"), async {
        until_holding(&c).await;
        update_doc(&c, &SystemClock, |doc| {
            doc.run.as_mut().unwrap().abort_requested = true;
            Ok::<_, swarm_upgrade::ports::PortError>(())
        })
        .await
        .unwrap();
    });
    let rec = end.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Aborted), Some(Halt::Aborted)));
    assert_eq!(rec.nodes[0].phase, Phase::Done);
    assert!(rec.nodes.iter().skip(1).all(|n| n.phase == Phase::Pending));
    assert!(c.world.lock().unwrap().store_doc().lock.is_none(), "the lock is free");
}

#[tokio::test(start_paused = true)]
async fn a_hold_nothing_lets_go_ends_at_its_limit_with_the_canary_upgraded() {
    let c = FakeCluster::new(world_from(&fixture()));
    let mut settings = canary(None);
    settings.timeouts.hold = Duration::from_secs(1800);
    let rec = run(&c, &settings, &to(NEW), "manager1/1").await.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Aborted), Some(Halt::HoldExpired)));
    let reason = rec.reason.unwrap();
    assert!(
        reason.starts_with("nothing let the hold after the canary (worker1) go within 1800 s: the canary stays at 5:28.5.2-1~debian.13~trixie; `swarm-upgrade run` again"),
        "{reason}"
    );
    assert_eq!(rec.nodes[0].phase, Phase::Done);
    assert!(rec.nodes.iter().skip(1).all(|n| n.phase == Phase::Pending));
    // The timer does not take a new canary past one nobody approved; an operator may.
    let scheduled = swarm_upgrade::planner::PlanRequest { scheduled: true, ..to(NEW) };
    match run(&c, &settings, &scheduled, "manager2/2").await {
        Err(swarm_upgrade::coordinator::CoordinatorError::Refused(r)) => {
            assert_eq!(r.len(), 1, "{r:?}");
            assert!(
                r[0].reason.contains("while it held after its canary (worker1), never let go"),
                "{}",
                r[0].reason
            );
        }
        other => panic!("{other:?}"),
    }
}
