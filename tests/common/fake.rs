//! The ports over a [`World`]: swarm, agents, compare-and-swap store, and a clock on tokio's
//! (pausable) time. A crash can be injected after the n-th mutating operation: the operation
//! takes effect, then the call never returns, as when a coordinator is SIGKILLed mid-call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use swarm_upgrade::agent::Fence;
use swarm_upgrade::lock::StoreDoc;
use swarm_upgrade::model::hooks::{HookRun, HookStatus};
use swarm_upgrade::model::scope::Parts;
use swarm_upgrade::model::swarm_backup;
use swarm_upgrade::model::*;
use swarm_upgrade::ports::*;
use tokio::sync::Notify;

use super::latency::{Latency, thread_cpu};
use super::world::{Host, Stored, World};

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

    /// The world, its simulated time (if timed) brought to now.
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        let mut w = self.world.lock().unwrap();
        if let Some(c) = w.timed.as_mut() {
            c.now = c.epoch.get_or_insert_with(tokio::time::Instant::now).elapsed();
        }
        w
    }

    /// Counts an agent call of `kind` and draws how long it takes (zero unless timed).
    fn agent_call(&self, kind: &'static str, takes: fn(&Latency) -> (f64, f64)) -> Duration {
        let mut w = self.w();
        *w.calls.agent.entry(kind).or_default() += 1;
        match w.timed.as_mut() {
            Some(c) => {
                let range = takes(&c.latency);
                c.draw(range)
            }
            None => Duration::ZERO,
        }
    }

    /// Counts `n` Docker API requests.
    fn docker_calls(&self, n: u64) {
        self.w().calls.docker += n;
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

    /// What happens to a host when docker.service restarts: the engine comes back `takes` from now, and its node is Ready at its next heartbeat.
    fn restart(w: &mut World, addr: &str, takes: Duration) -> Result<(), PortError> {
        let broken = w.broken.clone();
        let wipe = w.wipe_on_restart.clone();
        let h = w.host_mut(addr).expect("host exists");
        let fails = broken.is_some_and(|b| h.installed.get("docker-ce") == Some(&b));
        h.engine_active = !fails;
        h.down_ticks = 2;
        // The engine starts again only the containers whose restart policy says so.
        h.standalone.retain(swarm_upgrade::model::Standalone::comes_back);
        let hostname = h.hostname.clone();
        if wipe.as_deref() == Some(hostname.as_str()) {
            h.local_id = None;
            w.wipe_on_restart = None;
        }
        if let Some(c) = w.timed.as_mut() {
            let heartbeat = c.draw(c.latency.heartbeat);
            c.ready_at.insert(hostname.clone(), c.now + takes + heartbeat);
        }
        let h = w.host(addr).unwrap().clone();
        let id = w
            .nodes
            .iter()
            .find(|n| n.hostname == hostname && Some(&n.id) == h.local_id.as_ref())
            .map(|n| n.id.clone());
        let id =
            id.or_else(|| w.nodes.iter().find(|n| n.hostname == hostname).map(|n| n.id.clone()));
        w.dirty = true;
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
        let started = thread_cpu();
        w.tick();
        w.calls.docker += 4;
        w.calls.snapshots += 1;
        w.calls.listed += (w.nodes.len() + w.services.len() + w.tasks.len()) as u64;
        let snap = w.snapshot(Timestamp::UNIX_EPOCH);
        w.calls.busy += thread_cpu().saturating_sub(started);
        Ok(snap)
    }

    async fn scoped(
        &self,
        node: &NodeId,
        services: &[ServiceId],
    ) -> Result<ClusterSnapshot, PortError> {
        let mut w = self.w();
        let started = thread_cpu();
        w.tick();
        // Scoped from the world's own parts: its whole cluster is not copied for a poll.
        let parts = Parts { nodes: &w.nodes, services: &w.services, tasks: &w.tasks };
        let mut snap = parts.scoped(node, services);
        snap.taken_at = Timestamp::UNIX_EPOCH;
        // As the swarm adapter reads it: the node, its tasks, the services, the replicated ones'
        // tasks, the nodes those run on, the global ones' tasks there.
        let listed = (snap.nodes.len() + snap.services.len() + snap.tasks.len()) as u64;
        w.calls.docker += 6;
        w.calls.scoped += 1;
        w.calls.listed += listed;
        w.calls.listed_scoped += listed;
        w.calls.busy += thread_cpu().saturating_sub(started);
        Ok(snap)
    }

    async fn set_availability(
        &self,
        node: &NodeId,
        at: u64,
        availability: Availability,
    ) -> Result<(), PortError> {
        {
            let mut w = self.w();
            w.calls.docker += 2;
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
            w.calls.docker += 2;
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
            w.calls.docker += 2;
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
            w.calls.docker += 2;
            w.node_at(node, at)?.labels = labels.clone();
        }
        self.counted().await;
        Ok(())
    }

    async fn unlock_key(&self) -> Result<Option<UnlockKey>, PortError> {
        self.docker_calls(1);
        Ok(self.w().unlock_key.clone())
    }

    async fn remove_node(&self, node: &NodeId) -> Result<(), PortError> {
        self.docker_calls(1);
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
            w.dirty = true;
            w.log.push(format!("remove {node}"));
        }
        self.counted().await;
        Ok(())
    }

    async fn join_token(&self, role: Role) -> Result<Secret, PortError> {
        self.docker_calls(1);
        Ok(Secret(format!("SWMTKN-fake-{role:?}")))
    }
}

impl Agents for FakeCluster {
    async fn describe(&self, node: &AgentTarget, lists: Lists) -> Result<AgentReport, PortError> {
        let h = self.host_for(node)?;
        let drawn = self.agent_call("describe", |l| l.describe);
        let takes = self.w().describe_takes.max(drawn);
        tokio::time::sleep(takes).await;
        {
            let mut w = self.w();
            // The run's current node is read from the whole document: not at fleet scale.
            let current = if w.timed.is_some() { Vec::new() } else { w.current_nodes() };
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
            standalone: h.standalone.clone(),
            swarm_backups: h.swarm_backups.clone(),
            hooks: h
                .hooks
                .iter()
                .map(|(point, (_, problem))| HookStatus {
                    point: *point,
                    command: format!("/etc/swarm-upgrade/hooks/{}", point.name()),
                    problem: problem.clone(),
                })
                .collect(),
            backup_room: None,
        })
    }

    async fn run_hook(
        &self,
        node: &AgentTarget,
        hook: &HookOrder,
        op: &OpKey,
    ) -> Result<Option<HookRun>, PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        let Some((exit, _)) = h.hooks.get(&hook.point) else { return Ok(None) };
        let mut w = self.w();
        let availability = h
            .local_id
            .as_ref()
            .and_then(|id| w.nodes.iter().find(|n| &n.id == id))
            .map_or("gone", |n| n.availability.name());
        let line = format!("hook {} {} {availability} exit {exit}", hook.point.name(), h.hostname);
        w.log.push(line);
        Ok(Some(HookRun {
            point: hook.point,
            command: format!("/etc/swarm-upgrade/hooks/{}", hook.point.name()),
            exit: Some(*exit),
            timed_out: false,
            signal: None,
            millis: 20,
            output: format!("target {}\n", hook.target),
        }))
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
        let order = (h.hostname.clone(), op.run_id.clone(), op.token);
        if self.w().prefetched.contains(&order) {
            self.agent_call("prefetch from memory", |_| (0.0, 0.0));
            return Ok(());
        }
        tokio::time::sleep(self.agent_call("prefetch", |l| l.prefetch)).await;
        {
            let mut w = self.w();
            let once = w.fail_next_prefetch_on.take_if(|host| *host == h.hostname).is_some();
            if once || w.fail_prefetch_on.as_deref() == Some(h.hostname.as_str()) {
                return Err(PortError::Failed(
                    "E: Failed to fetch docker-ce.deb  404  Not Found".into(),
                ));
            }
        }
        self.w().prefetched.insert(order);
        self.counted().await;
        Ok(())
    }

    async fn upgrade(
        &self,
        node: &AgentTarget,
        packages: &PackageSet,
        op: &OpKey,
        backup: bool,
    ) -> Result<(), PortError> {
        let h = self.host_for(node)?;
        self.fence(&h.hostname, op)?;
        Self::check_available(&h, packages)?;
        tokio::time::sleep(self.agent_call("upgrade", |l| l.install)).await;
        if backup {
            // As the agent names its archives (time, then run): one a run, an order sent again
            // finds it taken.
            let mut w = self.w();
            let host = w.host_mut(&node.addr).unwrap();
            let name = swarm_backup::file_name(&op.run_id, jiff::Timestamp::UNIX_EPOCH);
            let archive = format!("/var/lib/swarm-upgrade/swarm-backups/{name}");
            if !host.swarm_backups.contains(&archive) {
                host.swarm_backups.insert(0, archive);
                w.log.push(format!("backup {}", h.hostname));
            }
        }
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
        let takes = self.agent_call("restart", |l| l.restart);
        let r = Self::restart(&mut self.w(), &node.addr, takes);
        tokio::time::sleep(takes).await;
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
        let takes =
            self.agent_call("rollback", |l| (l.install.0 + l.restart.0, l.install.1 + l.restart.1));
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
            Self::restart(&mut w, &node.addr, takes)
        };
        tokio::time::sleep(takes).await;
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
        self.agent_call("rejoin", |l| l.describe);
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
            w.dirty = true;
            w.log.push(format!("rejoin {} as {id}", h.hostname));
            id
        };
        self.counted().await;
        Ok(id)
    }
}

impl StateStore for FakeCluster {
    async fn load(&self) -> Result<Versioned<StoreDoc>, PortError> {
        let mut w = self.w();
        let started = thread_cpu();
        w.calls.store_loads += 1;
        let doc = w.store_doc();
        let read = match w.last_layout.as_mut() {
            // As the adapter reads: the header, and the shards only if someone else wrote.
            Some(l) => {
                let header = swarm_upgrade::store_layout::header(&doc);
                let fresh = swarm_upgrade::adapters::docker::store::FRESH_FOR;
                let now = tokio::time::Instant::now();
                match l.seen.as_mut() {
                    Some((seen, at)) if *seen == header && now.duration_since(*at) < fresh => {
                        l.header.len() as u64
                    }
                    _ => {
                        l.seen = Some((header, now));
                        l.bytes()
                    }
                }
            }
            None => w.calls.document,
        };
        w.calls.store_read += read;
        w.calls.busy += thread_cpu().saturating_sub(started);
        Ok(Versioned { doc, version: StoreVersion::whole(w.store_version) })
    }

    async fn save(&self, doc: &StoreDoc, version: &StoreVersion) -> Result<(), PortError> {
        {
            let mut w = self.w();
            if version.header != w.store_version {
                return Err(PortError::Conflict);
            }
            let started = thread_cpu();
            if w.count_writes {
                let (stored, parts) = lay_out(doc, w.last_layout.take());
                w.store_writes.push(parts);
                w.calls.document = stored.bytes();
                w.last_layout = Some(stored);
            }
            w.calls.store_saves += 1;
            if w.timed.is_some() {
                w.saved_doc = Some(doc.clone());
            } else {
                w.store_text = serde_json::to_string(doc).unwrap();
                if !w.count_writes {
                    w.calls.document = w.store_text.len() as u64;
                }
            }
            w.calls.largest_document = w.calls.largest_document.max(w.calls.document);
            w.calls.busy += thread_cpu().saturating_sub(started);
            w.store_version += 1;
        }
        self.counted().await;
        let mut lose = self.lose_every.lock().unwrap();
        lose.1 += 1;
        if lose.0 > 0 && lose.1.is_multiple_of(lose.0) {
            // The adapter forgets what it knew after a failed write: the next load reads it all.
            if let Some(l) = self.w().last_layout.as_mut() {
                l.seen = None;
            }
            return Err(PortError::Unavailable(
                "raft: failed to process the request: node lost leader status".into(),
            ));
        }
        Ok(())
    }
}

/// `doc` laid out as the swarm adapter lays it out after `last`, and the size of each part the
/// write rewrites: the shards whose nodes changed (all for a new run), and the header if changed.
fn lay_out(doc: &StoreDoc, last: Option<Stored>) -> (Stored, Vec<usize>) {
    use swarm_upgrade::store_layout::{SHARD_NODES, header, shard_text, stored_nodes};
    let nodes = stored_nodes(doc);
    let run = doc.run.as_ref().map(|r| r.id.clone());
    let last = last.filter(|l| l.run == run);
    let mut parts = Vec::new();
    let shards = (nodes.chunks(SHARD_NODES).enumerate())
        .map(|(k, chunk)| match last.as_ref().and_then(|l| l.shards.get(k)) {
            Some(same) if same.0 == chunk => same.clone(),
            _ => {
                let bytes = shard_text(chunk).len();
                parts.push(bytes);
                (chunk.to_vec(), bytes)
            }
        })
        .collect();
    let header = header(doc);
    if last.as_ref().is_none_or(|l| l.header != header) {
        parts.push(header.len());
    }
    // As the adapter notes its writes: the header written is known, the last whole read kept.
    let at = last.as_ref().and_then(|l| l.seen.as_ref().map(|s| s.1));
    let seen = Some((header.clone(), at.unwrap_or_else(tokio::time::Instant::now)));
    (Stored { header, run, shards, seen }, parts)
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
