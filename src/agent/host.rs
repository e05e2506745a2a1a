//! The node backend on a real host: `describe` (apt lists refreshed and repository problems
//! reported, dpkg, free disk under the apt cache, the local engine and its swarm state, and
//! whether dockerd would start with its configuration file as it is now); the
//! package work of prefetch, upgrade and rollback (exact sets, one transaction, held, in a
//! transient unit under systemd); the engine restart (daemon.json checked first, docker.service
//! restarted through systemd's D-Bus API and awaited to its job's result, then dockerd must
//! answer). Each part is tested on real tools; the whole restart on a real node is the lab's to
//! prove (issues 4 and 5). Rejoin: `adapters::docker::rejoin` on the local engine.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::LocalNodeState;

use super::service::{Managers, NodeBackend};
use super::{backup, mask};
use crate::adapters::apt::command::InstallMode;
use crate::adapters::apt::parse::RepoProblem;
use crate::adapters::apt::{parse, runner};
use crate::adapters::docker::autolock;
use crate::adapters::docker::raw::Endpoint;
use crate::adapters::engine::{
    check_daemon_json, dockerd_flags, edited_units, engine_config_problem, is_engine_unit,
};
use crate::adapters::systemd::Systemd;
use crate::model::hooks::{HookPoint, HookRun, HookStatus};
use crate::model::{
    AgentReport, EngineConfigProblem, LocalSwarm, LocalSwarmState, PackageSet, UnlockKey,
};
use crate::ports::{OpKey, Secret};
use crate::wire::error::NodeError;

/// Where dockerd reads its configuration.
const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// The engine's unit.
const ENGINE_UNIT: &str = "docker.service";
/// The longest wait for a restarted engine's swarm state to settle, and again after unlocking.
const UNLOCK_LIMIT: Duration = Duration::from_secs(60);
/// The shortest: an engine just restarted answers `docker info` within it.
const UNLOCK_MIN: Duration = Duration::from_secs(10);
/// The installed engine, found on `PATH` (docker-ce installs it in /usr/bin, Debian in /usr/sbin).
const DOCKERD: &str = "dockerd";

/// The real host.
pub struct HostBackend {
    apt: runner::Apt,
    /// The D-Bus address of systemd's bus (`None`: this host's system bus).
    bus: Option<String>,
    /// dockerd's configuration file.
    daemon_json: std::path::PathBuf,
    /// The dockerd that validates it.
    dockerd: std::path::PathBuf,
    restart_limit: std::time::Duration,
    docker: Docker,
    runtime: tokio::runtime::Handle,
    node_id: String,
    /// The swarm's unlock key (an autolocked swarm's manager), and where to send it.
    unlock: Option<(UnlockKey, Endpoint)>,
    /// What the last refresh of the package lists found wrong.
    refreshed: LastRefresh<Vec<RepoProblem>>,
    /// When this agent's last install began (see [`super::restarted`]).
    install_began: std::sync::Mutex<Option<std::time::SystemTime>>,
    /// Where a manager's swarm state is archived before its upgrade, and how many are kept.
    backups: (std::path::PathBuf, usize),
    /// The configuration file the agent was started with (`None`: the default one), read again
    /// for its hooks each time they are asked about or run.
    config: Option<std::path::PathBuf>,
}

impl HostBackend {
    /// A backend using the local engine through `docker`, on the current runtime.
    pub fn new(docker: Docker, node_id: String, restart_limit: std::time::Duration) -> Self {
        HostBackend {
            apt: runner::Apt::host(),
            bus: None,
            daemon_json: DAEMON_JSON.into(),
            dockerd: DOCKERD.into(),
            restart_limit,
            docker,
            runtime: tokio::runtime::Handle::current(),
            node_id,
            unlock: None,
            refreshed: LastRefresh::default(),
            install_began: std::sync::Mutex::new(None),
            backups: (std::path::PathBuf::from("/var/lib/swarm-upgrade").join(backup::DIR), 3),
            config: None,
        }
    }

    /// Reads its hooks from `config` (the default configuration when `None`).
    pub fn with_config(mut self, config: Option<std::path::PathBuf>) -> Self {
        self.config = config;
        self
    }

    /// The hooks as the configuration says now.
    fn hook_settings(&self) -> Result<crate::config::Hooks, crate::config::ConfigError> {
        crate::config::load(self.config.as_deref()).map(|s| s.hooks)
    }

    /// Archives swarm state into `dir` before an upgrade that asks for it, keeping the newest
    /// `keep`.
    pub fn with_backups(mut self, dir: std::path::PathBuf, keep: usize) -> Self {
        self.backups = (dir, keep);
        self
    }

    /// The engine's swarm directory (under its data root) and the room for its archive, or
    /// `None` when the node holds no swarm state.
    fn backup_room(&self) -> Option<(std::path::PathBuf, crate::model::swarm_backup::BackupRoom)> {
        let root = self.runtime.block_on(self.docker.info()).ok().and_then(|i| i.docker_root_dir);
        let swarm =
            std::path::Path::new(root.as_deref().unwrap_or("/var/lib/docker")).join("swarm");
        let swarm_bytes = backup::size_of(&swarm).ok().filter(|_| swarm.is_dir())?;
        let dir = &self.backups.0;
        // The archives' directory may not exist yet: the free space of the nearest that does.
        let free_bytes = dir
            .ancestors()
            .find(|d| d.is_dir())
            .and_then(|d| free_bytes(&d.display().to_string()).ok())?;
        let dir = dir.display().to_string();
        Some((swarm, crate::model::swarm_backup::BackupRoom { swarm_bytes, free_bytes, dir }))
    }

    /// The free backup before an upgrade, once per run: [`backup::DROP_IN`] has the engine's
    /// next start (the install's own restart, or the Restart phase's) archive its swarm state
    /// first. Whether it was armed: an order sent again (a busy node, a coordinator that took
    /// over) finds this run's archive, or the set installed already (the new engine may have
    /// run: its state is no backup of the old one), and arms nothing. Refused, with nothing
    /// changed, when the archive cannot fit (preflight refuses that first: a race).
    fn arm_backup(&self, set: &PackageSet, op: &OpKey) -> Result<bool, NodeError> {
        let (dir, keep) = &self.backups;
        // The run ID names the archive: one path component, or refused.
        crate::model::check_run_id(&op.run_id).map_err(|e| NodeError::Invalid(e.to_string()))?;
        if let Some(done) = backup::of_run(dir, &op.run_id) {
            tracing::info!(archive = %done, "this run's swarm-state archive is taken already");
            return Ok(false);
        }
        let names: Vec<String> = set.0.keys().cloned().collect();
        let rows = runner::installed(&names)?;
        let at =
            |p: &String, v| rows.iter().any(|r| &r.package == p && r.version.as_ref() == Some(v));
        if set.0.iter().all(|(p, v)| at(p, v)) {
            tracing::warn!(
                "the packages are installed already: no archive is taken of state the new engine may have written"
            );
            return Ok(false);
        }
        let refused = |why: String| {
            NodeError::Failed(format!(
                "the swarm state cannot be archived before the upgrade ({why}); nothing was changed; free space under {} or set upgrade.backup_managers = false",
                dir.display()
            ))
        };
        let Some((swarm, room)) = self.backup_room() else {
            return Err(refused("this node holds no swarm state, or the free space under its archives' directory cannot be read".into()));
        };
        if !room.fits() {
            return Err(refused(format!(
                "{} bytes free, {} bytes of swarm state",
                room.free_bytes, room.swarm_bytes
            )));
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| refused(format!("creating {}: {e}", dir.display())))?;
        }
        let exe = std::env::current_exe()
            .ok()
            .map(|p| p.display().to_string().trim_end_matches(" (deleted)").to_string())
            .unwrap_or_else(|| "/usr/bin/swarm-upgrade".into());
        let text =
            backup::drop_in(exe.as_ref(), &swarm, dir, &op.run_id, *keep).map_err(refused)?;
        self.runtime.block_on(async {
            let systemd = self.systemd().await?;
            backup::arm(&systemd, &text).await.map_err(failed)
        })?;
        tracing::info!(swarm = %swarm.display(), "the engine's next start archives its swarm state first");
        Ok(true)
    }

    /// The engine's restart, skipped when the install restarted it already, unless `again`
    /// (a node that stays Down after that restart); the backup's drop-in removed after it,
    /// whatever happened.
    fn restart(&self, op: &OpKey, again: bool) -> Result<(), NodeError> {
        let result = self.restart_unless_done(op, again);
        self.disarm_backup(&op.run_id);
        result
    }

    fn restart_unless_done(&self, op: &OpKey, again: bool) -> Result<(), NodeError> {
        let limit = op.limit.map_or(self.restart_limit, |l| l.min(self.restart_limit));
        let text = std::fs::read_to_string(&self.daemon_json).ok();
        check_daemon_json(&self.daemon_json, text.as_deref()).map_err(failed)?;
        let began = *self.install_began.lock().unwrap_or_else(|e| e.into_inner());
        self.runtime.block_on(async {
            let systemd = self.systemd().await?;
            let done = super::restarted::already(
                &systemd,
                &self.docker,
                ENGINE_UNIT,
                &self.dockerd,
                began,
            );
            if let Some(why) = if again { None } else { done.await } {
                tracing::info!(%why, "the engine is not restarted again");
                return self.unlock_if_locked(limit).await;
            }
            // A unit past its start limit refuses restarts until its failed state is cleared
            // (the socket too: activations refused while the engine was masked fail it).
            let _ = systemd.reset_failed(ENGINE_UNIT).await;
            let _ = systemd.reset_failed("docker.socket").await;
            systemd.restart(ENGINE_UNIT, limit).await.map_err(failed)?;
            self.docker.ping().await.map_err(|e| {
                NodeError::Failed(format!(
                    "docker.service restarted but dockerd does not answer: {e}"
                ))
            })?;
            self.unlock_if_locked(limit).await
        })
    }

    /// Removes the backup's drop-in (once the restart it waited for is done, or the install
    /// failed), saying so when the restart archived nothing.
    fn disarm_backup(&self, run_id: &str) {
        if !std::path::Path::new(backup::DROP_IN).exists() {
            return;
        }
        match backup::of_run(&self.backups.0, run_id) {
            Some(name) => {
                tracing::info!(archive = %name, "swarm state archived with the engine stopped")
            }
            None => tracing::warn!(
                "no archive of the swarm state was taken for this run: see `journalctl -u docker.service` on this node"
            ),
        }
        let disarmed = self.runtime.block_on(async {
            let systemd = self.systemd().await.map_err(|e| e.to_string())?;
            backup::disarm(&systemd).await
        });
        if let Err(e) = disarmed {
            tracing::warn!(error = %e, "cannot remove the backup's drop-in");
        }
    }

    /// Unlocks the engine with `key` through `raw` (the same engine) when it comes back locked
    /// after a restart this agent caused (an autolocked swarm's manager).
    pub fn with_unlock_key(mut self, key: Option<UnlockKey>, raw: Endpoint) -> Self {
        self.unlock = key.map(|k| (k, raw));
        self
    }

    /// The flags the engine is started with (docker.service's `ExecStart`, its drop-ins
    /// applied); none when systemd cannot say.
    async fn engine_flags(&self) -> Vec<String> {
        let argv = match self.systemd().await {
            Ok(systemd) => systemd.exec_start(ENGINE_UNIT).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match argv {
            Ok(argv) => dockerd_flags(&argv),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read docker.service's ExecStart");
                Vec::new()
            }
        }
    }

    /// Why the engine would not start again as it should: its configuration file and unit flags
    /// (dockerd's own check), else its package's unit files edited in place (the engine package
    /// is the first of `packages`).
    fn engine_config(&self, packages: &[String]) -> Option<EngineConfigProblem> {
        let flags = self.runtime.block_on(self.engine_flags());
        engine_config_problem(&self.daemon_json, &self.dockerd, &flags).or_else(|| {
            let package = packages.first()?;
            match runner::altered(package, is_engine_unit) {
                Ok(altered) => edited_units(&altered),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot verify the engine package's files");
                    None
                }
            }
        })
    }

    /// systemd, on this host's bus or the one given.
    async fn systemd(&self) -> Result<Systemd, NodeError> {
        match &self.bus {
            Some(address) => Systemd::at(address).await,
            None => Systemd::system().await,
        }
        .map_err(failed)
    }

    /// The local engine's swarm state, once it is past `pending` (`None` at `deadline`, or at
    /// once when the engine does not answer: an engine that did not start is the next phase's to
    /// judge, not this wait's).
    async fn settled_state(&self, deadline: Instant) -> Option<LocalNodeState> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let state = match tokio::time::timeout(left, self.docker.info()).await {
                Ok(Ok(info)) => info.swarm.and_then(|s| s.local_node_state),
                Ok(Err(_)) | Err(_) => return None,
            };
            match state {
                Some(LocalNodeState::PENDING) | Some(LocalNodeState::EMPTY) | None => {}
                settled => return settled,
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// After an engine start this agent caused: a manager of an autolocked swarm comes back
    /// locked, out of the swarm, until it is given the unlock key. It is unlocked here and
    /// checked to be a member again; without a key, the order fails saying so.
    async fn unlock_if_locked(&self, limit: Duration) -> Result<(), NodeError> {
        // At least a few seconds even when the order's time is nearly spent: a locked manager
        // passed off as done would stay out of the swarm.
        let deadline = Instant::now() + limit.clamp(UNLOCK_MIN, UNLOCK_LIMIT);
        if self.settled_state(deadline).await != Some(LocalNodeState::LOCKED) {
            return Ok(());
        }
        let Some((key, raw)) = &self.unlock else {
            return Err(NodeError::Failed(
                "the engine came back locked (the swarm is autolocked) and this agent has no unlock key: `docker swarm unlock` on this node, and set agent.unlock_key_file in its configuration".into(),
            ));
        };
        tracing::info!("the engine came back locked (autolock): unlocking it");
        autolock::unlock(raw, key).await.map_err(failed)?;
        match self.settled_state(deadline).await {
            Some(LocalNodeState::ACTIVE) => Ok(()),
            other => Err(NodeError::Failed(format!(
                "the engine was unlocked but its swarm state is {}, not active; see `docker info` on this node",
                other.map_or("unknown".to_string(), |s| s.to_string())
            ))),
        }
    }

    /// Talks to systemd at `bus` and reads dockerd's configuration from `daemon_json` (a node
    /// container's, in tests).
    pub fn with_node_paths(mut self, bus: String, daemon_json: std::path::PathBuf) -> Self {
        self.bus = Some(bus);
        self.daemon_json = daemon_json;
        self
    }
}

/// The packages dpkg left mid-transaction, as `name (state)`, or `None`.
pub fn interrupted(rows: &[parse::Installed]) -> Option<String> {
    let broken: Vec<String> = rows
        .iter()
        .filter(|i| i.is_interrupted())
        .map(|i| format!("{} ({}{}{})", i.package, i.desired, i.status, i.error))
        .collect();
    (!broken.is_empty()).then(|| broken.join(", "))
}

/// Any other failure on the node is the order's own.
fn failed(e: impl std::fmt::Display) -> NodeError {
    NodeError::Failed(e.to_string())
}

/// Free bytes under `dir`, from `df` (`--output=avail -B1`).
pub(crate) fn free_bytes(dir: &str) -> Result<u64, NodeError> {
    let ran = runner::run(&["df".into(), "--output=avail".into(), "-B1".into(), dir.into()])?;
    parse_df(&ran.stdout).ok_or_else(|| {
        NodeError::Failed(format!("cannot read free space of {dir} from df: {}", ran.stdout.trim()))
    })
}

/// Parses `df --output=avail -B1` output.
pub(crate) fn parse_df(text: &str) -> Option<u64> {
    text.lines().nth(1)?.trim().parse().ok()
}

/// The outcome of the last refresh of something slow (the package lists: a coordinator refreshes
/// them once per node per run, as a refresh takes minutes when one of the node's sources is dead).
pub(crate) struct LastRefresh<T> {
    /// The last outcome, and when its refresh ended.
    last: std::sync::Mutex<Option<(Instant, T)>>,
    /// Held while refreshing: refreshes take turns.
    turn: std::sync::Mutex<()>,
}

impl<T> Default for LastRefresh<T> {
    fn default() -> Self {
        LastRefresh { last: std::sync::Mutex::new(None), turn: std::sync::Mutex::new(()) }
    }
}

impl<T: Clone> LastRefresh<T> {
    /// `refresh()`'s outcome when asked to refresh (or never done yet); otherwise the last one,
    /// at once, even while a refresh runs. Asks that come while a refresh runs (the coordinators
    /// of several managers starting together) wait for it and share its outcome.
    pub(crate) fn get<E>(
        &self,
        asked: bool,
        refresh: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let last = || self.last.lock().unwrap_or_else(|e| e.into_inner());
        let asked_at = Instant::now();
        if !asked && let Some((_, outcome)) = last().clone() {
            return Ok(outcome);
        }
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((ended, outcome)) = last().clone()
            && (ended >= asked_at || !asked)
        {
            return Ok(outcome);
        }
        let outcome = refresh()?;
        *last() = Some((Instant::now(), outcome.clone()));
        Ok(outcome)
    }
}

impl NodeBackend for HostBackend {
    fn describe(&self, packages: &[String], refresh: bool) -> Result<AgentReport, NodeError> {
        let problems = self.refreshed.get(refresh, || self.apt.update())?;
        let repository_error = (!problems.is_empty())
            .then(|| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
        let available = self.apt.available(packages)?;
        let rows = runner::installed(packages)?;
        let dpkg_interrupted = interrupted(&rows);
        let installed = rows
            .into_iter()
            .filter(parse::Installed::is_installed)
            .filter_map(|i| Some((i.package, i.version?)))
            .collect();
        let disk_free_bytes = free_bytes("/var/cache/apt")?;
        let info = self.runtime.block_on(self.docker.info());
        // An engine that does not answer has no containers running to list.
        let standalone = self
            .runtime
            .block_on(crate::adapters::docker::standalone::running(&self.docker))
            .unwrap_or_default();
        let (engine_active, local_swarm) = match info {
            Err(_) => (false, None),
            Ok(info) => {
                let swarm = info.swarm.unwrap_or_default();
                let state = swarm
                    .local_node_state
                    .and_then(|s| LocalSwarmState::from_name(&s.to_string()))
                    .unwrap_or(LocalSwarmState::Inactive);
                (true, Some(LocalSwarm { node_id: swarm.node_id.unwrap_or_default(), state }))
            }
        };
        Ok(AgentReport {
            installed,
            available,
            repository_error,
            disk_free_bytes,
            engine_active,
            local_swarm,
            dpkg_interrupted,
            engine_config: self.engine_config(packages),
            standalone,
            swarm_backups: backup::list(&self.backups.0)
                .into_iter()
                .take(backup::LISTED)
                .map(|n| self.backups.0.join(n).display().to_string())
                .collect(),
            hooks: self.hooks(),
            backup_room: self.backup_room().map(|(_, room)| room),
        })
    }

    fn prefetch(&self, set: &PackageSet, op: &OpKey) -> Result<(), NodeError> {
        Ok(self.apt.prefetch(set, op)?)
    }

    fn upgrade(&self, set: &PackageSet, op: &OpKey, backup: bool) -> Result<(), NodeError> {
        let ordered = Instant::now();
        let armed = backup && self.arm_backup(set, op)?;
        // The install gets what the backup left of the order's time.
        let op =
            &OpKey { limit: op.limit.map(|l| l.saturating_sub(ordered.elapsed())), ..op.clone() };
        let started = Instant::now();
        *self.install_began.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::time::SystemTime::now());
        let installed = self.apt.install(set, InstallMode::Upgrade, op);
        // docker-ce's maintainer scripts restart the engine inside the transaction, which
        // archived the swarm state; otherwise the Restart phase's restart will.
        // (Kept while dpkg's lock is busy: the same order comes again.)
        let restarted = backup::of_run(&self.backups.0, &op.run_id).is_some();
        let failed = installed.as_ref().is_err_and(|e| !e.is_busy());
        if armed && (failed || restarted) {
            self.disarm_backup(&op.run_id);
        }
        installed?;
        let left = op.limit.map_or(UNLOCK_LIMIT, |l| l.saturating_sub(started.elapsed()));
        self.runtime.block_on(self.unlock_if_locked(left))
    }

    fn restart_engine(&self, op: &OpKey) -> Result<(), NodeError> {
        self.restart(op, false)
    }

    fn restart_engine_again(&self, op: &OpKey) -> Result<(), NodeError> {
        self.restart(op, true)
    }

    fn rollback(&self, previous: &PackageSet, op: &OpKey) -> Result<(), NodeError> {
        let started = Instant::now();
        // Each step gets what is left of the order's time.
        let left =
            || OpKey { limit: op.limit.map(|l| l.saturating_sub(started.elapsed())), ..op.clone() };
        // An upgrade cut short at its limit can leave the new engine's start pending (docker-ce's
        // postinst restarts it inside the transaction, and an engine that never becomes ready
        // holds that job: TimeoutStartSec=0) and dpkg half-way. The engine is masked (first, so
        // that nothing, a client on docker.sock included, starts it again in between) and
        // stopped (its pending job replaced) while the packages go back, so no maintainer script
        // starts the broken engine and hangs once more; the restart below starts the previous one.
        let systemd = self.runtime.block_on(self.systemd())?;
        let stop = left().limit.unwrap_or(self.restart_limit).min(self.restart_limit);
        let names: Vec<String> = previous.0.keys().cloned().collect();
        let result = self
            .runtime
            .block_on(async {
                mask::hold(&systemd).await?;
                systemd.stop(ENGINE_UNIT, stop).await
            })
            .map_err(failed)
            .and_then(|()| Ok(self.apt.finish_interrupted(&names, &left())?))
            .and_then(|()| Ok(self.apt.install(previous, InstallMode::Rollback, &left())?));
        // Lifted whatever happened (a mask half made, its reload failed, included).
        let unmasked = self.runtime.block_on(mask::release(&systemd)).map_err(failed);
        match result.and(unmasked) {
            Ok(()) => self.restart_engine(&left()),
            Err(e) => {
                // The engine was stopped for nothing: what is installed is started again (best
                // effort), so a rollback that failed does not leave the node worse than it was.
                if let Err(again) = self.restart_engine(&left()) {
                    tracing::warn!(error = %again, "restarting the engine after a failed rollback failed too");
                }
                Err(e)
            }
        }
    }

    fn rejoin(&self, token: &Secret, managers: &[String]) -> Result<String, NodeError> {
        self.runtime
            .block_on(crate::adapters::docker::rejoin::rejoin(&self.docker, token, managers))
            .map_err(failed)
    }

    fn node_id(&self) -> String {
        self.node_id.clone()
    }

    fn hooks(&self) -> Vec<HookStatus> {
        match self.hook_settings() {
            Ok(hooks) => super::hooks::statuses(&hooks),
            // (Refused by preflight as any hook that cannot run: the node's configuration is
            // the problem to fix.)
            Err(e) => vec![HookStatus {
                point: HookPoint::BeforeDrain,
                command: "(the configuration)".into(),
                problem: Some(format!("the agent cannot read its configuration for [hooks]: {e}")),
            }],
        }
    }

    fn run_hook(
        &self,
        point: HookPoint,
        env: &[(String, String)],
    ) -> Result<Option<HookRun>, NodeError> {
        let hooks = self.hook_settings().map_err(|e| {
            NodeError::Failed(format!("cannot read this node's configuration for [hooks]: {e}"))
        })?;
        let Some(command) = hooks.command(point) else { return Ok(None) };
        Ok(Some(super::hooks::run(point, command, env, hooks.timeout)))
    }

    fn managers(&self) -> Option<Managers> {
        let info = self.runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), self.docker.info()).await
        });
        let swarm = info.ok()?.ok()?.swarm?;
        if swarm.local_node_state != Some(bollard::models::LocalNodeState::ACTIVE) {
            return None;
        }
        let peers = swarm.remote_managers.unwrap_or_default();
        let managers = Managers {
            ids: peers.iter().filter_map(|p| p.node_id.clone()).collect(),
            addrs: peers.iter().filter_map(|p| p.addr.clone()).collect(),
        };
        (!managers.ids.is_empty()).then_some(managers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_refreshed_when_asked_or_never_done() {
        let last = LastRefresh::default();
        let runs = std::cell::Cell::new(0);
        let refresh = || -> Result<u32, ()> {
            runs.set(runs.get() + 1);
            Ok(runs.get())
        };
        assert_eq!(last.get(false, refresh), Ok(1), "never done: refreshed");
        assert_eq!(last.get(false, refresh), Ok(1), "the last outcome");
        assert_eq!(last.get(true, refresh), Ok(2), "asked: refreshed");
        assert_eq!(last.get(false, || Err(())), Ok(2));
        assert_eq!(last.get(true, || Err::<u32, _>(())), Err(()));
        assert_eq!(last.get(false, refresh), Ok(2), "a failed refresh keeps the last outcome");
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn asks_that_come_during_a_refresh_share_it() {
        let last = std::sync::Arc::new(LastRefresh::<u32>::default());
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ask = |delay: u64| {
            let (last, runs) = (last.clone(), runs.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                last.get(true, || {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok::<_, ()>(runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
                })
            })
        };
        let (first, second) = (ask(0), ask(100));
        assert_eq!((first.join().unwrap(), second.join().unwrap()), (Ok(1), Ok(1)));
        assert_eq!(ask(0).join().unwrap(), Ok(2), "an ask after it ended refreshes again");
    }

    #[test]
    fn df_output_is_read() {
        assert_eq!(super::parse_df("    Avail\n75776749568\n"), Some(75_776_749_568));
        assert_eq!(super::parse_df("Avail\n"), None);
    }
}
