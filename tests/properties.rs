//! Properties over random clusters (256 cases each): quorum is never risked, no node is drained
//! whose tasks cannot run elsewhere, racing coordinators never both hold the lock, a run
//! interrupted anywhere and resumed ends at target, and surge keeps every service's capacity.

mod common;

use std::time::Duration;

use common::generate::{any_cluster, build, healthy_cluster, observed};
use common::*;
use jiff::Timestamp;
use proptest::prelude::*;
use swarm_upgrade::config::Settings;
use swarm_upgrade::coordinator::CoordinatorError;
use swarm_upgrade::lock::{Sighting, StoreDoc};
use swarm_upgrade::model::{
    Availability, NodeState, Reachability, Role, convergence::first_unconverged,
};
use swarm_upgrade::planner::{guard, plan};
use swarm_upgrade::ports::{Clock, PortError, StateStore, StoreVersion, Versioned, update_doc};
use swarm_upgrade::run::RunFlags;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, max_global_rejects: 100_000, ..ProptestConfig::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Whenever a plan is accepted, taking down any one of its managers leaves a quorum, counted
    /// directly from the snapshot.
    #[test]
    fn no_plan_takes_down_a_manager_when_quorum_would_be_lost(spec in any_cluster()) {
        let world = build(&spec);
        let snap = observed(&world);
        if let Ok(p) = plan(&snap, &Settings::default(), &to(NEW)) {
            let total = snap.nodes.iter().filter(|n| n.role == Role::Manager).count();
            let up = snap.nodes.iter().filter(|n| {
                n.role == Role::Manager && n.state == NodeState::Ready && n.manager.as_ref().unwrap().reachability == Reachability::Reachable
            }).count();
            for n in p.nodes.iter().filter(|n| n.role == Role::Manager) {
                prop_assert!(total > 1, "a single manager is only upgraded with the explicit opt-in ({})", n.hostname);
                prop_assert!(up - 1 > total / 2, "{}: {up} of {total} managers up; one down loses quorum", n.hostname);
            }
        }
    }

    /// For every node in plan order, with the cluster as the swarm actually left it, the guard's
    /// approval means the swarm (the fake's own scheduler) really runs all of the node's tasks
    /// elsewhere once it is drained; and an accepted plan's first node is approved.
    #[test]
    fn no_node_is_drained_whose_tasks_cannot_run_elsewhere(spec in any_cluster()) {
        let mut world = build(&spec);
        let snap = observed(&world);
        let Ok(p) = plan(&snap, &Settings::default(), &to(NEW)) else { return Ok(()) };
        for (i, n) in p.nodes.iter().enumerate() {
            let now = observed(&world);
            let verdict = guard(&now, &Settings::default(), &RunFlags::default(), &[(n.node.clone(), &n.packages)]);
            if i == 0 {
                prop_assert!(verdict.is_ok(), "the plan accepted {} but the guard refuses: {verdict:?}", n.hostname);
            }
            if verdict.is_err() {
                break;
            }
            world.node_mut(&n.node).unwrap().availability = Availability::Drain;
            let converged = world.settle(4);
            let unconverged = first_unconverged(&world.snapshot(Timestamp::UNIX_EPOCH));
            prop_assert!(converged, "after draining {}: {unconverged:?}", n.hostname);
            world.node_mut(&n.node).unwrap().availability = Availability::Active;
            world.settle(4);
        }
    }

    /// Two coordinators take, renew and release the lock through the project's own
    /// read-modify-write (`ports::update_doc`) on a compare-and-swap store, their reads and writes
    /// interleaved at random and time passing between their steps, the second one's wall clock up
    /// to 15 minutes ahead; at no moment do both believe they hold a usable lock (each by its own
    /// clock), and no fencing token is issued twice.
    #[test]
    fn racing_coordinators_never_both_hold_the_lock(
        steps in prop::collection::vec((0usize..2, 0u8..4, 0u64..40), 1..80),
        turns in prop::collection::vec(any::<bool>(), 0..400),
        skew in 0u64..900,
    ) {
        let outcome = runtime().block_on(race(steps, turns, skew));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// A compare-and-swap store whose every read and write first yields, as many times as the next
/// turn says, so that the two coordinators' reads and writes interleave at random.
struct RacyStore {
    state: std::sync::Mutex<(StoreDoc, u64)>,
    turns: std::sync::Mutex<std::collections::VecDeque<bool>>,
}

impl RacyStore {
    async fn turn(&self) {
        let yield_now = self.turns.lock().unwrap().pop_front().unwrap_or(false);
        if yield_now {
            tokio::task::yield_now().await;
        }
    }
}

impl StateStore for RacyStore {
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError> {
        self.turn().await;
        let s = self.state.lock().unwrap();
        Ok(Versioned { doc: s.0.clone(), version: StoreVersion::whole(s.1) })
    }

    async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
        self.turn().await;
        let mut s = self.state.lock().unwrap();
        if s.1 != version.header {
            return Err(PortError::Conflict);
        }
        *s = (doc.clone(), version.header + 1);
        Ok(())
    }
}

/// What each coordinator believes it holds: its token and the lease's end (by its own clock).
type Beliefs = std::sync::Mutex<[Option<(u64, Timestamp)>; 2]>;

/// Runs each coordinator's steps (0 and 1: renew, or acquire when it holds nothing; 2: release;
/// 3: time passes) concurrently, the second one's wall clock `skew` seconds ahead of the first's;
/// the first broken invariant, if any.
async fn race(steps: Vec<(usize, u8, u64)>, turns: Vec<bool>, skew: u64) -> Result<(), String> {
    let store = RacyStore {
        state: std::sync::Mutex::new((StoreDoc::default(), 0)),
        turns: std::sync::Mutex::new(turns.into()),
    };
    let clocks = [TestClock::new(), TestClock::ahead(Duration::from_secs(skew))];
    let held: Beliefs = std::sync::Mutex::new([None, None]);
    let issued = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let coordinator = |who: usize| {
        let mine: Vec<(u8, u64)> =
            steps.iter().filter(|s| s.0 == who).map(|s| (s.1, s.2)).collect();
        let (store, clocks, held, issued) = (&store, &clocks, &held, &issued);
        let clock = &clocks[who];
        async move {
            // What this coordinator saw of the other's lock, by its own monotonic clock.
            let mut seen: Option<Sighting> = None;
            for (action, secs) in mine {
                if action == 3 {
                    clock.sleep(Duration::from_secs(secs)).await;
                    continue;
                }
                let mine = held.lock().unwrap()[who];
                let now = clock.now();
                let result = update_doc(store, clock, |doc| {
                    let token = match mine {
                        None => {
                            let mono = clock.mono();
                            seen = doc.lock.as_ref().map(|l| Sighting::of(l, seen.take(), mono));
                            let lapsed = seen.as_ref().map(|s| (s, mono));
                            doc.acquire(
                                &format!("c{who}"),
                                "r",
                                &NEW.parse().unwrap(),
                                LEASE,
                                now,
                                lapsed,
                            )?
                        }
                        Some((t, _)) if action < 2 => doc.renew(t, LEASE, now).map(|_| t)?,
                        Some((t, _)) => {
                            doc.release(t);
                            return Ok::<_, CoordinatorError>(None);
                        }
                    };
                    Ok(Some((token, doc.lock.as_ref().unwrap().expires_at)))
                })
                .await;
                let belief = result.unwrap_or(None);
                if let (None, Some((t, _))) = (mine, belief)
                    && !issued.lock().unwrap().insert(t)
                {
                    return Err(format!("the fencing token {t} was issued twice"));
                }
                held.lock().unwrap()[who] = belief;
                check(held, [clocks[0].now(), clocks[1].now()])?;
            }
            Ok(())
        }
    };
    let (a, b) = tokio::join!(coordinator(0), coordinator(1));
    a.and(b)
}

const LEASE: Duration = Duration::from_secs(30);

/// Both coordinators believe they hold a usable lock now, each by its own clock (`now`).
fn check(held: &Beliefs, now: [Timestamp; 2]) -> Result<(), String> {
    let held = held.lock().unwrap();
    let believers = held
        .iter()
        .zip(now)
        .filter(|(b, now)| {
            b.is_some_and(|(_, until)| *now + swarm_upgrade::lock::LEASE_MARGIN < until)
        })
        .count();
    if believers > 1 {
        return Err(format!("both coordinators believe they hold the lock at {now:?}: {held:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// A coordinator killed after any number of operations, and a second one resuming once the
    /// lease has expired, leave every node at target and at its original availability (or, when
    /// the swarm's own placement blocks a later node, halted safely before it: see `check_end`).
    #[test]
    fn a_run_interrupted_anywhere_and_resumed_ends_at_target(spec in healthy_cluster(), crash_after in 1usize..120) {
        let world = build(&spec);
        prop_assume!(plan(&observed(&world), &Settings::default(), &to(NEW)).is_ok());
        let before = availabilities(&world);
        let cluster = FakeCluster::new(world);
        let s = Settings::default();
        let req = to(NEW);
        let rec = runtime().block_on(async {
            cluster.crash_after(crash_after);
            tokio::select! {
                r = run(&cluster, &s, &req, "manager1/1") => r.unwrap(),
                _ = cluster.crashed() => match resume(&cluster, &s, "manager2/2").await {
                    Ok(rec) => rec,
                    // The crash hit the write that finished the run: nothing is left to resume.
                    Err(CoordinatorError::NothingToResume) => cluster.world.lock().unwrap().store_doc().run.unwrap(),
                    Err(e) => panic!("resume failed: {e}"),
                },
            }
        });
        let w = cluster.world.lock().unwrap();
        check_end(&rec, &w, &before).map_err(|e| TestCaseError::fail(format!("{e} (crash after {crash_after} operations)")))?;
    }

    /// With surge on, no replicated service ever runs fewer tasks than its replica count, at any
    /// tick of the run.
    #[test]
    fn with_surge_no_service_drops_below_its_desired_count(spec in healthy_cluster()) {
        let mut world = build(&spec);
        prop_assume!(plan(&observed(&world), &Settings::default(), &to(NEW)).is_ok());
        world.watch_capacity();
        let world = world;
        let cluster = FakeCluster::new(world);
        let before = availabilities(&cluster.world.lock().unwrap());
        let rec = runtime().block_on(run(&cluster, &Settings::default(), &to(NEW), "m/1")).unwrap();
        check_end(&rec, &cluster.world.lock().unwrap(), &before).map_err(TestCaseError::fail)?;
        let dips = cluster.world.lock().unwrap().capacity_dips();
        prop_assert!(dips.is_empty(), "capacity dropped: {:?}", dips);
    }
}
