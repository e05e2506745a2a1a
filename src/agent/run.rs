//! `swarm-upgrade agent`: serve the agent on this node until a signal. The first SIGTERM or
//! SIGINT stops accepting calls and lets calls in flight finish; a second one forces the exit.

use super::error::AgentError;
use super::host::HostBackend;
use super::mask;
use super::service::{AgentService, serve, serve_reloading};
use crate::adapters::docker::DockerSwarm;
use crate::adapters::docker::raw::Endpoint;
use crate::config::Settings;
use crate::wire::auth::AuthError;
use crate::wire::tls;

/// Runs the agent with `settings`, read from `config` (the default place when `None`), which
/// is read again for each hook.
pub async fn run(settings: &Settings, config: Option<&std::path::Path>) -> Result<(), AgentError> {
    crate::sd_notify::spawn_watchdog();
    // Before anything waits for the engine: a mask left by a rollback cut short keeps it down.
    mask::release_left_over().await;
    super::backup::disarm_left_over().await;
    if !settings.agent.insecure {
        let certificates = || async {
            match tls::awaited_swarm_certificates(&settings.agent) {
                None => Ok(()),
                Some(dir) => Err(format!(
                    "waiting for this node's swarm certificates in {}: join the node to a swarm (or set agent.custom_tls)",
                    dir.display()
                )),
            }
        };
        if wait_for(certificates).await.is_none() {
            return Ok(());
        }
    }
    let engine = || async {
        DockerSwarm::connect()
            .await
            .map_err(|e| format!("waiting for the local Docker engine: {e}"))
    };
    let Some(docker) = wait_for(engine).await else { return Ok(()) };
    let docker = docker.docker().clone();
    let (_, cluster, node_id) = if settings.agent.insecure {
        tracing::warn!(
            "agent.insecure is set: plaintext gRPC, ANY caller that reaches the port is obeyed; for labs only"
        );
        let info = docker.info().await.map_err(|e| AgentError::Engine(e.to_string()))?;
        let swarm = info.swarm.unwrap_or_default();
        let cluster = swarm.cluster.and_then(|c| c.id).unwrap_or_default();
        (None, cluster, swarm.node_id.unwrap_or_default())
    } else {
        let m = tls::load(&settings.agent)?;
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&m.cert, &m.key))
            .client_ca_root(tonic::transport::Certificate::from_pem(&m.ca));
        (Some(config), m.cluster, m.node_id)
    };
    // A transaction cut short (power loss, a killed dpkg) is reported at once, not at the next run.
    let packages = settings.all_packages();
    match crate::adapters::apt::runner::installed(&packages)
        .map(|rows| super::host::interrupted(&rows))
    {
        Ok(Some(what)) => {
            tracing::error!(packages = %what, "dpkg was interrupted mid-transaction: run `dpkg --configure -a` and check them; upgrades of this node are refused until then")
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read dpkg's state"),
    }
    if let Some(addr) = settings.agent_metrics {
        // Metrics are not worth refusing to serve the agent for.
        if let Err(e) = crate::metrics::serve(addr).await {
            tracing::warn!(%addr, error = %e, "cannot serve metrics (metrics.agent)");
        }
    }
    let unlock_key = crate::config::unlock_key(&settings.agent)
        .map_err(|e| AuthError::UnlockKey(e.to_string()))?;
    let raw = Endpoint::from_env().map_err(AgentError::Engine)?;
    let backend = HostBackend::new(docker, node_id.clone(), settings.timeouts.restart)
        .with_unlock_key(unlock_key, raw)
        .with_backups(
            settings.agent.state_dir.join(super::backup::DIR),
            settings.backup_keep as usize,
        )
        .with_config(config.map(std::path::Path::to_path_buf));
    let state = &settings.agent.state_dir;
    std::fs::create_dir_all(state).map_err(|e| AgentError::State {
        what: "create",
        path: state.display().to_string(),
        why: e.to_string(),
    })?;
    let service = AgentService::new(backend, cluster.clone(), settings.agent.insecure)
        .with_packages(packages)
        .with_fence_file(state.join("fence.json"))?;
    let addr = std::net::SocketAddr::new(settings.agent.listen, settings.agent.port);
    tracing::info!(node = %node_id, cluster = %cluster, port = settings.agent.port, address = %settings.agent.listen, "agent listening");
    if settings.agent.insecure {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| AgentError::listen(addr, e))?;
        crate::sd_notify::ready(&format!("serving on {addr} in PLAINTEXT (agent.insecure)"));
        return Ok(serve(service, listener, None, shutdown()).await?);
    }
    let agent = settings.agent.clone();
    let load = || tls::load(&agent);
    let stamp = || tls::stamp(&agent);
    serve_reloading(
        std::sync::Arc::new(service),
        addr,
        load,
        stamp,
        std::time::Duration::from_secs(30),
        shutdown(),
    )
    .await
}

/// Waits, up and saying why to systemd, until `check` passes: the node's swarm certificates (a
/// package installed before the node joins a swarm) or the local engine (the agent started before
/// docker.service). `None` when a signal came first.
async fn wait_for<T, Fut: std::future::Future<Output = Result<T, String>>>(
    check: impl Fn() -> Fut,
) -> Option<T> {
    let stop = shutdown();
    tokio::pin!(stop);
    let mut said = None;
    loop {
        match check().await {
            Ok(v) => {
                if said.is_some() {
                    tracing::info!("done waiting: starting");
                }
                return Some(v);
            }
            Err(why) => {
                if said.as_ref() != Some(&why) {
                    tracing::warn!("{why}");
                    crate::sd_notify::ready(&why);
                    said = Some(why);
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return None,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

/// Resolves at the first signal; a second one exits at once.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: calls in flight finish first (a second signal forces)");
    crate::sd_notify::stopping("stopping: calls in flight finish first");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}
