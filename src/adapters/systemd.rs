//! systemd over D-Bus (zbus): restart or stop a unit and wait for its job's result, mask it for
//! the time being, read its state, reset a failed unit. The JobRemoved stream is opened (and the manager subscribed) before the
//! restart is asked for, so a job that ends at once is never missed.

use std::time::{Duration, SystemTime};

use tokio_stream::StreamExt;
use zbus::zvariant::OwnedObjectPath;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn mask_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn unmask_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn reload(&self) -> zbus::Result<()>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unit_file_state(&self) -> zbus::Result<String>;
    /// When the unit last entered the active state: microseconds since the epoch (0: never).
    #[zbus(property)]
    fn active_enter_timestamp(&self) -> zbus::Result<u64>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait Service {
    /// Each command: path, argv, ignore-failure, then times and status systemd keeps.
    #[zbus(property)]
    #[allow(clippy::type_complexity)]
    fn exec_start(
        &self,
    ) -> zbus::Result<Vec<(String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32)>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Job",
    default_service = "org.freedesktop.systemd1"
)]
trait Job {
    fn cancel(&self) -> zbus::Result<()>;
}

/// Why a unit operation failed, as systemd reports the job's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The unit failed (result `failed`).
    #[error("{unit}: the {job} job failed; see `journalctl -u {unit}`")]
    Failed {
        /// The unit.
        unit: String,
        /// `restart` or `stop`.
        job: &'static str,
    },
    /// systemd's own job timeout hit (result `timeout`), or ours (the job is then cancelled).
    #[error("{unit}: the {job} job timed out{}", .after.map(|d| format!(" after {}s and was cancelled; see `journalctl -u {unit}`", d.as_secs())).unwrap_or_default())]
    Timeout {
        /// The unit.
        unit: String,
        /// `restart` or `stop`.
        job: &'static str,
        /// Our limit, when it was ours.
        after: Option<Duration>,
    },
    /// A dependency failed (result `dependency`).
    #[error(
        "{unit}: a unit it depends on failed (e.g. containerd.service); see `systemctl list-dependencies {unit}`"
    )]
    Dependency {
        /// The unit.
        unit: String,
    },
    /// Another result (`canceled`, `skipped`, `invalid`, ...).
    #[error("{unit}: the {job} job ended `{result}`")]
    Other {
        /// The unit.
        unit: String,
        /// `restart` or `stop`.
        job: &'static str,
        /// systemd's word.
        result: String,
    },
    /// D-Bus itself failed.
    #[error("talking to systemd over D-Bus: {0}")]
    Bus(String),
}

fn bus(e: zbus::Error) -> UnitError {
    UnitError::Bus(e.to_string())
}

/// systemd, through a D-Bus connection.
#[derive(Clone, Debug)]
pub struct Systemd {
    conn: zbus::Connection,
}

impl Systemd {
    /// The system bus of this host.
    pub async fn system() -> Result<Self, UnitError> {
        Ok(Systemd { conn: zbus::Connection::system().await.map_err(bus)? })
    }

    /// A bus at `address` (`unix:path=...`), e.g. a node container's system bus in tests.
    pub async fn at(address: &str) -> Result<Self, UnitError> {
        let conn =
            zbus::connection::Builder::address(address).map_err(bus)?.build().await.map_err(bus)?;
        Ok(Systemd { conn })
    }

    /// Restarts `unit` and waits (at most `limit`) for the job's result.
    pub async fn restart(&self, unit: &str, limit: Duration) -> Result<(), UnitError> {
        self.job(unit, "restart", limit).await
    }

    /// Stops `unit` (a start job still pending, such as an engine that never became ready, is
    /// replaced and so cancelled) and waits (at most `limit`) for the job's result.
    pub async fn stop(&self, unit: &str, limit: Duration) -> Result<(), UnitError> {
        self.job(unit, "stop", limit).await
    }

    /// Masks `unit` until the next boot or [`Systemd::unmask_for_now`] (`systemctl mask
    /// --runtime`): nothing, a package's maintainer script included, can start it meanwhile.
    pub async fn mask_for_now(&self, unit: &str) -> Result<(), UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        manager.mask_unit_files(&[unit], true, true).await.map_err(bus)?;
        manager.reload().await.map_err(bus)
    }

    /// Lifts [`Systemd::mask_for_now`].
    pub async fn unmask_for_now(&self, unit: &str) -> Result<(), UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        manager.unmask_unit_files(&[unit], true).await.map_err(bus)?;
        manager.reload().await.map_err(bus)
    }

    /// Has systemd read its unit files again (`systemctl daemon-reload`).
    pub async fn reload(&self) -> Result<(), UnitError> {
        ManagerProxy::new(&self.conn).await.map_err(bus)?.reload().await.map_err(bus)
    }

    /// Queues the `kind` job (`restart` or `stop`) of `unit`, replacing any pending one, and
    /// waits (at most `limit`) for its result.
    async fn job(&self, unit: &str, kind: &'static str, limit: Duration) -> Result<(), UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        // Subscribing twice on one connection is refused as AlreadySubscribed: that is success.
        match manager.subscribe().await {
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            other => other.map_err(bus)?,
        }
        let mut removed = manager.receive_job_removed().await.map_err(bus)?;
        let job = match kind {
            "stop" => manager.stop_unit(unit, "replace").await,
            _ => manager.restart_unit(unit, "replace").await,
        }
        .map_err(bus)?;
        let u = unit.to_string();
        let wait = async {
            while let Some(signal) = removed.next().await {
                let args = signal.args().map_err(bus)?;
                if args.job().as_str() != job.as_str() {
                    continue;
                }
                return match *args.result() {
                    "done" => Ok(()),
                    "failed" => Err(UnitError::Failed { unit: u.clone(), job: kind }),
                    "timeout" => {
                        Err(UnitError::Timeout { unit: u.clone(), job: kind, after: None })
                    }
                    "dependency" => Err(UnitError::Dependency { unit: u.clone() }),
                    other => Err(UnitError::Other {
                        unit: u.clone(),
                        job: kind,
                        result: other.to_string(),
                    }),
                };
            }
            Err(UnitError::Bus("the JobRemoved stream ended".into()))
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(result) => result,
            Err(_) => {
                // A job left queued would keep the unit starting (docker.service waits forever:
                // TimeoutStartSec=0) and block the rollback's own restart behind it.
                self.cancel(&job).await;
                Err(UnitError::Timeout { unit: unit.to_string(), job: kind, after: Some(limit) })
            }
        }
    }

    /// Cancels `job`; one that ended meanwhile is fine (it is gone, which is all we ask).
    async fn cancel(&self, job: &OwnedObjectPath) {
        let proxy = match JobProxy::builder(&self.conn).path(job.clone()) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        };
        if let Err(e) = match proxy {
            Ok(p) => p.cancel().await,
            Err(e) => Err(e),
        } {
            tracing::debug!(job = %job.as_str(), error = %e, "cancelling the job (it may have ended)");
        }
    }

    /// `ActiveState` and `SubState` of `unit`, e.g. `("active", "running")`.
    pub async fn state(&self, unit: &str) -> Result<(String, String), UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        let path = manager.load_unit(unit).await.map_err(bus)?;
        let u =
            UnitProxy::builder(&self.conn).path(path).map_err(bus)?.build().await.map_err(bus)?;
        Ok((u.active_state().await.map_err(bus)?, u.sub_state().await.map_err(bus)?))
    }

    /// When `unit` last entered the active state (`None`: it never did since systemd started).
    pub async fn active_since(&self, unit: &str) -> Result<Option<SystemTime>, UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        let path = manager.load_unit(unit).await.map_err(bus)?;
        let u =
            UnitProxy::builder(&self.conn).path(path).map_err(bus)?.build().await.map_err(bus)?;
        let micros = u.active_enter_timestamp().await.map_err(bus)?;
        Ok((micros > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_micros(micros)))
    }

    /// The command line of a service's first `ExecStart`, as systemd runs it (drop-ins applied).
    pub async fn exec_start(&self, unit: &str) -> Result<Vec<String>, UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        let path = manager.load_unit(unit).await.map_err(bus)?;
        let s = ServiceProxy::builder(&self.conn)
            .path(path)
            .map_err(bus)?
            .build()
            .await
            .map_err(bus)?;
        Ok(s.exec_start().await.map_err(bus)?.into_iter().next().map(|c| c.1).unwrap_or_default())
    }

    /// `UnitFileState` of `unit` (what `systemctl is-enabled` says: `enabled`,
    /// `masked-runtime`, …).
    pub async fn file_state(&self, unit: &str) -> Result<String, UnitError> {
        let manager = ManagerProxy::new(&self.conn).await.map_err(bus)?;
        let path = manager.load_unit(unit).await.map_err(bus)?;
        let u =
            UnitProxy::builder(&self.conn).path(path).map_err(bus)?.build().await.map_err(bus)?;
        u.unit_file_state().await.map_err(bus)
    }

    /// Clears a unit's failed state (so a restart is not refused by its start limit).
    pub async fn reset_failed(&self, unit: &str) -> Result<(), UnitError> {
        ManagerProxy::new(&self.conn).await.map_err(bus)?.reset_failed_unit(unit).await.map_err(bus)
    }
}
