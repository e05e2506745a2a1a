//! The ports over a [`World`]: swarm, agents, compare-and-swap store, and a clock on tokio's
//! (pausable) time. A crash can be injected after the n-th mutating operation: the operation
//! takes effect, then the call never returns, as when a coordinator is SIGKILLed mid-call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use swarm_upgrade::agent::Fence;
use swarm_upgrade::lock::StoreDoc;
use swarm_upgrade::model::*;
use swarm_upgrade::ports::*;
use tokio::sync::Notify;

use super::world::{Host, World};

/// A fake cluster shared by any number of coordinators.
#[derive(Clone)]
pub struct FakeCluster {
    pub world: Arc<Mutex<World>>,
    crash: Arc<Mutex<CrashPlan>>,
    crashed: Arc<Notify>,
    fences: Arc<Mutex<BTreeMap<String, Fence>>>,
    /// Every n-th store write lands but its answer is lost (0: none), as in a leader election.
    lose_every: Arc<Mutex<(usize, usize)>>,
}

#[derive(Default)]
struct CrashPlan {
    ops: usize,
    after: Option<usize>,
}

impl FakeCluster {
    pub fn new(world: World) -> Self {
        FakeCluster {
            world: Arc::new(Mutex::new(world)),
            crash: Default::default(),
            crashed: Arc::new(Notify::new()),
            fences: Default::default(),
            lose_every: Default::default(),
        }
    }

    /// The agent on `host` has seen fencing token `token` (another swarm's coordinator, or a store
    /// removed by hand and started over).
    pub fn agent_saw_token(&self, host: &str, token: u64) {
        let mut f = self.fences.lock().unwrap();
        f.entry(host.to_string()).or_default().admit(token).unwrap();
    }

    /// From now on every `n`-th store write lands but answers as if the swarm had lost its leader.
    pub fn lose_answers(&self, n: usize) {
        *self.lose_every.lock().unwrap() = (n, 0);
    }

    /// Crash (hang forever and notify) on the `n`-th mutating operation from now.
    pub fn crash_after(&self, n: usize) {
        let mut c = self.crash.lock().unwrap();
        c.ops = 0;
        c.after = Some(n);
    }

    /// Resolves when the injected crash happens.
    pub async fn crashed(&self) {
        self.crashed.notified().await
    }

    /// Mutating operations counted since the last `crash_after`.
    pub fn ops(&self) -> usize {
        self.crash.lock().unwrap().ops
    }

    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Counts a mutating operation (already applied); hangs if it is the one to crash on.
    async fn counted(&self) {
        let hang = {
            let mut c = self.crash.lock().unwrap();
            c.ops += 1;
            let hang = c.after == Some(c.ops);
            if hang {
                c.after = None;
            }
            hang
        };
        if hang {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }

    fn fence(&self, host: &str, op: &OpKey) -> Result<(), PortError> {
        let mut f = self.fences.lock().unwrap();
        f.entry(host.to_string())
            .or_default()
            .admit(op.token)
            .map_err(|e| PortError::Stale(e.to_string()))
    }

    fn host_for(&self, target: &AgentTarget) -> Result<Host, PortError> {
        let w = self.w();
        let h = w
            .host(&target.addr)
            .cloned()
            .ok_or_else(|| PortError::Unavailable(format!("no host at {}", target.addr)))?;
        if !h.agent_up {
            return Err(PortError::Unavailable(format!(
                "agent on {} refused the connection",
                h.hostname
            )));
        }
        Ok(h)
    }

    fn check_available(h: &Host, packages: &PackageSet) -> Result<(), PortError> {
        for (p, v) in &packages.0 {
            if !h.available.get(p).is_some_and(|vs| vs.contains(v)) {
                return Err(PortError::Failed(format!("E: Version '{v}' for '{p}' was not found")));
            }
        }
        Ok(())
    }

    /// What happens to a host when docker.service restarts.
    fn restart(w: &mut World, addr: &str) -> Result<(), PortError> {
        let broken = w.broken.clone();
        let wipe = w.wipe_on_restart.clone();
        let h = w.host_mut(addr).expect("host exists");
        let fails = broken.is_some_and(|b| h.installed.get("docker-ce") == Some(&b));
        h.engine_active = !fails;
        h.down_ticks = 2;
        let hostname = h.hostname.clone();
        if wipe.as_deref() == Some(hostname.as_str()) {
            h.local_id = None;
            w.wipe_on_restart = None;
        }
        let h = w.host(addr).unwrap().clone();
        let id = w
            .nodes
            .iter()
            .find(|n| n.hostname == hostname && Some(&n.id) == h.local_id.as_ref())
            .map(|n| n.id.clone());
        let id =
            id.or_else(|| w.nodes.iter().find(|n| n.hostname == hostname).map(|n| n.id.clone()));
        if let Some(id) = id {
            w.node_mut(&id).unwrap().state = NodeState::Down;
            for t in w
                .tasks
                .iter_mut()
                .filter(|t| t.node.as_ref() == Some(&id) && t.state == TaskState::Running)
            {
                t.state = TaskState::Failed;
            }
        }
        w.log.push(format!("restart {hostname}"));
        if fails {
            Err(PortError::Failed(
                "job for docker.service failed (result: failed); see journalctl -u docker.service"
                    .into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl Swarm for FakeCluster {
    async fn snapshot(&self) -> Result<ClusterSnapshot, PortError> {
        let mut w = self.w();
        w.tick();
        Ok(w.snapshot(Timestamp::UNIX_EPOCH))
    }

    async fn set_availability(
        &self,
        node: &NodeId,
        at: u64,
        availability: Availability,
    ) -> Result<(), PortError> {
        {
            let mut w = self.w();
            let host = w
                .node_mut(node)
                .ok_or_else(|| PortError::Failed(format!("node {node} not found")))?
                .hostname
                .clone();
            if w.rival_before_write_on.as_ref() == Some(&host) {
                w.rival_before_write_on = None;
                w.rival_takes_over(node);
            }
            if w.operator_before_write_on.as_ref() == Some(&host) {
                w.operator_before_write_on = None;
                w.operator_labels(node);
            }
            w.node_at(node, at)?.availability = availability;
            w.log.push(format!("availability {host} {availability:?}"));
        }
        self.counted().await;
        Ok(())
    }

    async fn scale(&self, service: &ServiceId, at: u64, replicas: u64) -> Result<(), PortError> {
        {
            let mut w = self.w();
            let s = w.service_at(service, at)?;
            let down = matches!(s.mode, Mode::Replicated { replicas: r } if replicas < r);
            s.mode = Mode::Replicated { replicas };
            let name = s.name.clone();
            // Every write is an update event the orchestrator reconciles, unless it misses it.
            if down && std::mem::take(&mut w.miss_next_scale_down) {
                w.missed_scale_down.insert(service.clone());
            } else {
                w.missed_scale_down.remove(service);
            }
            w.log.push(format!("scale {name} {replicas}"));
        }
        self.counted().await;
        Ok(())
    }

    async fn set_label(
        &self,
        node: &NodeId,
        at: u64,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), PortError> {
        {
            let mut w = self.w();
            let n = w.node_at(node, at)?;
            match value {
                Some(v) => n.labels.insert(key.to_string(), v.to_string()),
                None => n.labels.remove(key),
            };
            w.log.push(format!("label {node} {key}={value:?}"));
        }
        self.counted().await;
        Ok(())
    }

    async fn set_labels(
        &self,
        node: &NodeId,
        at: u64,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        {
            let mut w = self.w();
            w.node_at(node, at)?.labels = labels.clone();
        }
        self.counted().await;
        Ok(())
    }

    async fn unlock_key(&self) -> Result<Option<UnlockKey>, PortError> {
        Ok(self.w().unlock_key.clone())
    }

    async fn remove_node(&self, node: &NodeId) -> Result<(), PortError> {
        {
            let mut w = self.w();
            let n = w
                .nodes
                .iter()
                .find(|n| &n.id == node)
                .ok_or_else(|| PortError::Failed(format!("node {node} not found")))?;
            if n.state != NodeState::Down {
                return Err(PortError::Failed(format!(
                    "node {node} is not down and can't be removed"
                )));
            }
            w.nodes.retain(|n| &n.id != node);
            w.log.push(format!("remove {node}"));
        }
        self.counted().await;
        Ok(())
    }

    async fn join_token(&self, role: Role) -> Result<Secret, PortError> {
        Ok(Secret(format!("SWMTKN-fake-{role:?}")))
    }
}

impl Agents for FakeCluster {
    async fn describe(&self, node: &AgentTarget, lists: Lists) -> Result<AgentReport, PortError> {
        let h = self.host_for(node)?;
        let takes = self.w().describe_takes;
        tokio::time::sleep(takes).await;
        {
            let mut w = self.w();
            let current = w.current_node();
            let refresh = lists == Lists::Refresh;
            w.describes.push(super::world::Described {
                host: h.hostname.clone(),
                refresh,
                current,
            });
        }
        let local_swarm = Some(match &h.local_id {
            Some(id) => LocalSwarm { node_id: id.0.clone(), state: LocalSwarmState::Active },
            None => LocalSwarm { node_id: String::new(), state: LocalSwarmState::Inactive },
        });
        Ok(AgentReport {
            installed: h.installed.0.clone(),
            available: h.available.clone(),
            repository_error: None,
            disk_free_bytes: 20 << 30,
            engine_active: h.engine_active,
            local_swarm,
            dpkg_interrupted: None,
            engine_config: None,
        })
    }

    async fn prefetch(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        Self::check_available(&h, packages)?;
        if self.w().fail_prefetch_on.as_deref() == Some(h.hostname.as_str()) {
            return Err(PortError::Failed(
                "E: Failed to fetch docker-ce.deb  404  Not Found".into(),
            ));
        }
        self.counted().await;
        Ok(())
    }

    async fn upgrade(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        Self::check_available(&h, packages)?;
        {
            let mut w = self.w();
            if w.busy_upgrades > 0 {
                w.busy_upgrades -= 1;
                w.log.push(format!("busy upgrade {}", h.hostname));
                let held = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1424 (apt-get)";
                return Err(PortError::Busy(format!("agent on {}: {held}", h.hostname)));
            }
            if w.fail_upgrade_on.as_deref() == Some(h.hostname.as_str()) {
                w.log.push(format!("broken upgrade {}", h.hostname));
                return Err(PortError::Failed(format!(
                    "agent on {}: E: Sub-process /usr/bin/dpkg returned an error code (1)",
                    h.hostname
                )));
            }
            w.host_mut(&node.addr).unwrap().installed = packages.clone();
            w.log.push(format!("install {} {packages}", h.hostname));
        }
        self.counted().await;
        Ok(())
    }

    async fn restart_engine(&self, node: &AgentTarget, op: &OpKey) -> Result<(), PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        let hang = {
            let mut w = self.w();
            w.log.push(format!("ordered a restart of {} within {:?}", h.hostname, op.limit));
            w.hang_restart_on.take_if(|on| *on == h.hostname).is_some()
        };
        if hang {
            std::future::pending::<()>().await;
        }
        let r = Self::restart(&mut self.w(), &node.addr);
        self.counted().await;
        r
    }

    async fn rollback(
        &self,
        node: &AgentTarget,
        previous: &PackageSet,
        op: &OpKey,
    ) -> Result<(), PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        let r = {
            let mut w = self.w();
            if w.fail_rollback_on.as_deref() == Some(h.hostname.as_str()) {
                w.log.push(format!("broken rollback {}", h.hostname));
                return Err(PortError::Failed(format!(
                    "agent on {}: E: Version '{previous}' was not found",
                    h.hostname
                )));
            }
            w.host_mut(&node.addr).unwrap().installed = previous.clone();
            w.log.push(format!("rollback {} {previous}", h.hostname));
            Self::restart(&mut w, &node.addr)
        };
        self.counted().await;
        r
    }

    async fn rejoin(
        &self,
        node: &AgentTarget,
        order: &JoinOrder,
        op: &OpKey,
    ) -> Result<NodeId, PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        let id = {
            let mut w = self.w();
            let role =
                if order.token.0.ends_with("Manager") { Role::Manager } else { Role::Worker };
            let template = w
                .nodes
                .iter()
                .find(|n| n.hostname == h.hostname)
                .cloned()
                .expect("the stale entry is there");
            w.next_id += 1;
            let id = NodeId(format!("{}-rejoined-{}", h.hostname, w.next_id));
            let engine = h
                .installed
                .get("docker-ce")
                .map(|v| v.engine_version())
                .unwrap_or(template.engine_version.clone());
            w.nodes.push(Node {
                id: id.clone(),
                role,
                availability: Availability::Active,
                state: NodeState::Ready,
                labels: BTreeMap::new(),
                engine_version: engine,
                manager: (role == Role::Manager).then_some(ManagerStatus {
                    leader: false,
                    reachability: Reachability::Reachable,
                    addr: format!("{}:2377", node.addr),
                }),
                ..template
            });
            w.host_mut(&node.addr).unwrap().local_id = Some(id.clone());
            w.log.push(format!("rejoin {} as {id}", h.hostname));
            id
        };
        self.counted().await;
        Ok(id)
    }
}

impl StateStore for FakeCluster {
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError> {
        let w = self.w();
        Ok(Versioned { doc: w.store_doc(), version: StoreVersion::whole(w.store_version) })
    }

    async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
        {
            let mut w = self.w();
            if version.header != w.store_version {
                return Err(PortError::Conflict);
            }
            if w.count_writes {
                // Laid out as the swarm adapter lays it out, counting what each write rewrites.
                let layout = swarm_upgrade::store_layout::split(doc);
                let last = w.last_layout.take();
                let new_run = last.as_ref().is_none_or(|l| l.run != layout.run);
                let was = |k: usize| last.as_ref().and_then(|l| l.shards.get(k));
                let mut parts: Vec<usize> = (0..layout.shards.len())
                    .filter(|&k| new_run || was(k) != Some(&layout.shards[k]))
                    .map(|k| layout.shards[k].len())
                    .collect();
                if last.as_ref().is_none_or(|l| l.header != layout.header) {
                    parts.push(layout.header.len());
                }
                w.store_writes.push(parts);
                w.last_layout = Some(layout);
            }
            w.store_text = serde_json::to_string(doc).unwrap();
            w.store_version += 1;
        }
        self.counted().await;
        let mut lose = self.lose_every.lock().unwrap();
        lose.1 += 1;
        if lose.0 > 0 && lose.1.is_multiple_of(lose.0) {
            return Err(PortError::Unavailable(
                "raft: failed to process the request: node lost leader status".into(),
            ));
        }
        Ok(())
    }
}

/// A clock on tokio's time (pausable in tests), starting at a fixed instant.
pub struct TestClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TestClock {
    pub fn new() -> Self {
        TestClock {
            base: "2026-11-25T03:00:00Z".parse().unwrap(),
            start: tokio::time::Instant::now(),
        }
    }

    /// A clock whose wall time runs `by` ahead of [`TestClock::new`]'s (another manager's).
    #[allow(dead_code)]
    pub fn ahead(by: Duration) -> Self {
        let clock = TestClock::new();
        TestClock { base: clock.base + jiff::SignedDuration::try_from(by).unwrap(), ..clock }
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        self.base
            .checked_add(jiff::SignedDuration::try_from(self.start.elapsed()).unwrap())
            .unwrap()
    }

    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }

    fn mono(&self) -> Duration {
        self.start.elapsed()
    }
}
