//! Hooks (issue 17, item 1) over the in-memory cluster: each node's agent runs its own hooks;
//! `before_drain` before anything changes on the node (a failure stops the run there, the node
//! untouched), `after_verify` once it is verified (a failure marks it for attention, the upgrade
//! stays and the run goes on), `on_failure` once its part ended in failure; each run recorded.

mod common;

use std::time::Duration;

use common::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::CoordinatorError;
use swarm_upgrade::machine::Phase;
use swarm_upgrade::model::hooks::HookPoint;
use swarm_upgrade::model::plan::RefusalKind;
use swarm_upgrade::run::{Halt, Outcome};

/// The five-node cluster with `hooks` (point, exit code) on every host.
fn hooked(hooks: &[(HookPoint, i32)], on: Option<&str>) -> FakeCluster {
    let mut world = world_from(&fixture());
    for h in world.hosts.iter_mut().filter(|h| on.is_none_or(|on| on == h.hostname)) {
        h.hooks = hooks.iter().map(|(p, exit)| (*p, (*exit, None))).collect();
    }
    FakeCluster::new(world)
}

fn log(c: &FakeCluster) -> Vec<String> {
    c.world.lock().unwrap().log.clone()
}

/// Where in the log the first line starting with `prefix` is.
fn at(log: &[String], prefix: &str) -> usize {
    log.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} in {log:#?}"))
}

#[tokio::test(start_paused = true)]
async fn each_node_runs_its_hooks_before_its_drain_and_after_its_verification() {
    let both =
        [(HookPoint::BeforeDrain, 0), (HookPoint::AfterVerify, 0), (HookPoint::OnFailure, 0)];
    let c = hooked(&both, None);
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    let log = log(&c);
    for n in &rec.nodes {
        let host = &n.hostname;
        let before = at(&log, &format!("hook before-drain {host} "));
        assert!(log[before].ends_with(" active exit 0"), "{}: nothing changed yet", log[before]);
        let paused = at(&log, &format!("availability {host} "));
        let installed = at(&log, &format!("install {host} "));
        let after = at(&log, &format!("hook after-verify {host} "));
        assert!(before < paused && paused < installed && installed < after, "{log:#?}");
        assert!(log[after].ends_with(" active exit 0"), "{}: back in service", log[after]);
        let points: Vec<HookPoint> = n.hooks.iter().map(|h| h.point).collect();
        assert_eq!(points, [HookPoint::BeforeDrain, HookPoint::AfterVerify], "{host}");
        assert_eq!(n.hooks[0].output, format!("target {NEW}\n"), "the hook is told the target");
        assert_eq!(n.attention, None);
    }
    assert!(!log.iter().any(|l| l.starts_with("hook on-failure")), "nothing failed");
    // One node at a time out of service: the next one's before_drain waits for the one before
    // to be verified and its after_verify run (no early start beside its verification).
    for pair in rec.nodes.windows(2) {
        let after = at(&log, &format!("hook after-verify {} ", pair[0].hostname));
        let next = at(&log, &format!("hook before-drain {} ", pair[1].hostname));
        assert!(after < next, "{} before {}: {log:#?}", pair[0].hostname, pair[1].hostname);
    }
}

#[tokio::test(start_paused = true)]
async fn a_rolled_back_node_runs_its_on_failure_hook_not_its_after_verify() {
    let all = [(HookPoint::BeforeDrain, 0), (HookPoint::AfterVerify, 0), (HookPoint::OnFailure, 0)];
    let c = hooked(&all, None);
    let rec = run(&c, &Settings::default(), &to(BROKEN), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed), "{:?}", rec.reason);
    let w1 = &rec.nodes[0];
    assert_eq!(w1.phase, Phase::RolledBack);
    let points: Vec<HookPoint> = w1.hooks.iter().map(|h| h.point).collect();
    assert_eq!(points, [HookPoint::BeforeDrain, HookPoint::OnFailure], "{:?}", w1.hooks);
    let log = log(&c);
    assert!(
        log[at(&log, "hook on-failure worker1 ")].contains(" active "),
        "back in service first"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_node_whose_agent_does_not_say_in_time_gets_no_on_failure_hook() {
    let c = hooked(&[(HookPoint::OnFailure, 0)], Some("worker1"));
    // Every describe now outlasts the ask (but not an observation's limit).
    let slow = swarm_upgrade::coordinator::ON_FAILURE_ASK + Duration::from_secs(10);
    c.world.lock().unwrap().describe_takes = slow;
    let rec = run(&c, &Settings::default(), &to(BROKEN), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Failed), "{:?}", rec.reason);
    let w1 = &rec.nodes[0];
    assert_eq!((w1.hostname.as_str(), w1.phase), ("worker1", Phase::RolledBack));
    assert!(w1.hooks.is_empty(), "{:?}", w1.hooks);
    assert!(!log(&c).iter().any(|l| l.starts_with("hook on-failure")));
}

#[tokio::test(start_paused = true)]
async fn a_failing_before_hook_stops_the_run_with_its_node_untouched() {
    let failing = [(HookPoint::BeforeDrain, 3), (HookPoint::OnFailure, 0)];
    let c = hooked(&failing, Some("worker1"));
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!((rec.outcome, rec.halt), (Some(Outcome::Failed), Some(Halt::NodeFailed)));
    let w1 = &rec.nodes[0];
    assert_eq!((w1.hostname.as_str(), w1.phase), ("worker1", Phase::Restored));
    let reason = w1.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("hooks.before_drain (/etc/swarm-upgrade/hooks/before-drain) exited 3 after 0.0 s: target"),
        "{reason}"
    );
    let log = log(&c);
    assert!(
        !log.iter().any(
            |l| l.starts_with("install worker1") || l.starts_with("availability worker1 Pause")
        ),
        "untouched: {log:#?}"
    );
    assert!(rec.nodes.iter().skip(1).all(|n| n.phase == Phase::Pending));
    // Its part ended in failure: its on_failure hook ran, once, and was recorded.
    assert_eq!(log.iter().filter(|l| l.starts_with("hook on-failure worker1 active")).count(), 1);
    let points: Vec<HookPoint> = w1.hooks.iter().map(|h| h.point).collect();
    assert_eq!(points, [HookPoint::BeforeDrain, HookPoint::OnFailure]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_after_hook_marks_its_node_for_attention_and_the_run_goes_on() {
    let c = hooked(&[(HookPoint::AfterVerify, 1)], Some("worker2"));
    let rec = run(&c, &Settings::default(), &to(NEW), "manager1/1").await.unwrap();
    assert_eq!(rec.outcome, Some(Outcome::Succeeded), "{:?}", rec.reason);
    assert!(rec.nodes.iter().all(|n| n.phase == Phase::Done));
    let w2 = rec.nodes.iter().find(|n| n.hostname == "worker2").unwrap();
    let attention = w2.attention.as_deref().unwrap();
    assert!(
        attention
            .starts_with("hooks.after_verify (/etc/swarm-upgrade/hooks/after-verify) exited 1"),
        "{attention}"
    );
    assert!(rec.nodes.iter().filter(|n| n.hostname != "worker2").all(|n| n.attention.is_none()));
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_cannot_run_is_refused_up_front() {
    let mut world = world_from(&fixture());
    let h = world.hosts.iter_mut().find(|h| h.hostname == "manager2").unwrap();
    let problem = "/etc/swarm-upgrade/hooks/lb-out is not executable (chmod +x /etc/swarm-upgrade/hooks/lb-out)";
    h.hooks.insert(HookPoint::BeforeDrain, (0, Some(problem.into())));
    let c = FakeCluster::new(world);
    let before = c.world.lock().unwrap().store_doc();
    let Err(CoordinatorError::Refused(r)) =
        run(&c, &Settings::default(), &to(NEW), "manager1/1").await
    else {
        panic!("not refused")
    };
    let r = r.iter().find(|r| r.kind == RefusalKind::HookUnusable).expect("the hook's refusal");
    assert_eq!(r.node.as_deref(), Some("manager2"));
    assert_eq!(r.reason, format!("hooks.before_drain on manager2 cannot run: {problem}"));
    assert_eq!(c.world.lock().unwrap().store_doc(), before, "nothing changed");
}
