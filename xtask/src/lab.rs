//! The lab: `manager1..M` and `worker1..W` (3 and 2 unless asked; systemd containers, each running
//! its own dockerd from the lab repository's docker-ce 26.1.5), `repo` (the apt repository over HTTP) and `balancer`
//! (haproxy) on one bridge network, all labelled so `down` removes exactly what `up` made.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::engine::{self, Engine};
use crate::{debian, http, images, repo, workload};

pub use crate::topology::*;

/// The `web` frontend of a slot's balancer, as `host:port`.
pub fn balancer_web(slot: u8) -> String {
    format!("{}:{}", balancer(slot).ip, workload::WEB_PORT)
}

/// The `solo` frontend of a slot's balancer, as `host:port`.
pub fn balancer_solo(slot: u8) -> String {
    format!("{}:{}", balancer(slot).ip, workload::SOLO_PORT)
}

/// What `up` needs from the caller.
pub struct Options {
    /// This tool's own binary (copied into the workload image as `lab-web`).
    pub tool: PathBuf,
    /// The project's `.deb`; built with cargo-deb when `None`.
    pub deb: Option<PathBuf>,
    /// How many managers and workers.
    pub shape: Shape,
    /// Which lab: 0 is the one `cargo xtask lab` works on; tests run two side by side.
    pub slot: u8,
}

/// Timings of `up`, printed in its summary.
#[derive(Debug, Default)]
pub struct Timings(pub Vec<(&'static str, Duration)>);

impl Timings {
    fn step<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t0 = Instant::now();
        eprintln!("lab: {name}...");
        let out = f().with_context(|| format!("lab up: {name}"))?;
        self.0.push((name, t0.elapsed()));
        Ok(out)
    }

    /// The whole time.
    pub fn total(&self) -> Duration {
        self.0.iter().map(|(_, d)| *d).sum()
    }
}

/// Builds what is missing and starts the whole lab; returns when all of it is healthy.
pub fn up(opts: &Options) -> Result<(Engine, Timings)> {
    let mut t = Timings::default();
    let engine = t.step("engine", || Engine::ensure_slot(opts.slot))?;
    t.step("remove stale lab objects", || remove_objects(&engine))?;
    // Labs side by side share the caches these steps fill: one builds at a time.
    let building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let debian = t.step("Debian engine packages", debian::fetch)?;
    let repo = t.step("signed repository", || repo::build(&debian))?;
    let node_image = t.step("node image", || images::node_image(&engine, &repo))?;
    let web_tar = t.step("workload image", || images::web_tar(&opts.tool))?;
    let web_image = t.step("repository server image", || images::web_image(&engine, &web_tar))?;
    let deb = t.step("swarm-upgrade .deb", || match &opts.deb {
        Some(d) => Ok(d.clone()),
        None => build_deb(),
    })?;
    drop(building);
    let nodes = opts.shape.nodes(opts.slot);
    t.step("network and containers", || {
        start_containers(&engine, &nodes, &node_image, &web_image, &repo.root)
    })?;
    t.step("systemd and engines up", || parallel(&nodes, |n| wait_booted(&engine, &n.name)))?;
    t.step("swarm", || form_swarm(&engine, &nodes))?;
    t.step("repository on every node", || {
        parallel(&nodes, |n| engine.sh(&n.name, "apt-get update -q").map(drop))
    })?;
    t.step("agent from the .deb", || parallel(&nodes, |n| install_agent(&engine, &n.name, &deb)))?;
    t.step("workload image on every node", || {
        parallel(&nodes, |n| workload::load_image(&engine, &n.name, &web_tar))
    })?;
    t.step("workload converged", || {
        workload::deploy(&engine, nodes.len())?;
        workload::wait_converged(&engine, Duration::from_secs(120))
    })?;
    t.step("balancer answers", || wait_balancer(opts.slot, Duration::from_secs(60)))?;
    Ok((engine, t))
}

/// Held while a lab fills the caches (packages, repository, images, the .deb).
static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` for every host at once; the first error wins.
pub fn parallel(hosts: &[Host], f: impl Fn(&Host) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts.iter().map(|h| (&h.name, s.spawn(|| f(h)))).collect();
        let mut first = Ok(());
        for (name, h) in handles {
            let r = h
                .join()
                .map_err(|_| anyhow::anyhow!("{name}: panicked"))
                .and_then(|r| r.with_context(|| name.to_string()));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Removes every container, network and volume labelled by the lab.
pub fn remove_objects(engine: &Engine) -> Result<()> {
    let filter = format!("label={LABEL}");
    let containers = engine.docker(&["ps", "-aq", "--filter", &filter])?;
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.lines());
        engine.docker(&args)?;
    }
    let networks = engine.docker(&["network", "ls", "-q", "--filter", &filter])?;
    for n in networks.lines() {
        engine.docker(&["network", "rm", n])?;
    }
    let volumes = engine.docker(&["volume", "ls", "-q", "--filter", &filter])?;
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.lines());
        engine.docker(&args)?;
    }
    Ok(())
}

/// The lab's objects still present (containers, networks, volumes), for `down`'s check.
pub fn leftovers(engine: &Engine) -> Result<Vec<String>> {
    let filter = format!("label={LABEL}");
    let mut all = vec![];
    for (kind, args) in [
        ("container", vec!["ps", "-a", "--format", "{{.Names}}", "--filter", &filter]),
        ("network", vec!["network", "ls", "--format", "{{.Name}}", "--filter", &filter]),
        ("volume", vec!["volume", "ls", "--format", "{{.Name}}", "--filter", &filter]),
    ] {
        all.extend(engine.docker(&args)?.lines().map(|l| format!("{kind} {l}")));
    }
    Ok(all)
}

/// Removes every slot's lab; stops each private engine the lab started. Caches (built images and
/// packages) stay unless `purge`.
pub fn down(purge: bool) -> Result<()> {
    for slot in 0..engine::SLOTS {
        down_slot(slot, purge)?;
    }
    if purge {
        let _ = std::fs::remove_dir_all(crate::cache::DIR);
    }
    Ok(())
}

/// Removes one slot's lab and stops its private engine (if the lab started it); its image store
/// stays unless `purge`.
pub fn down_slot(slot: u8, purge: bool) -> Result<()> {
    if let Some(engine) = Engine::find_slot(slot) {
        remove_objects(&engine)?;
        let left = leftovers(&engine)?;
        if !left.is_empty() {
            bail!("lab down: still present: {}", left.join(", "));
        }
        if purge && !engine.private {
            let images =
                engine.docker(&["images", "-q", "--filter", "label=io.swarm-upgrade.lab.image"])?;
            for id in images.lines() {
                engine.docker(&["rmi", "-f", id])?;
            }
        }
        engine.stop_private()?;
    }
    // The private engine's runtime directory (nothing is mounted there once it stopped).
    if Engine::find_slot(slot).is_none_or(|e| !e.private) {
        let _ = std::fs::remove_dir_all(engine::run_dir(slot));
        if purge {
            let _ = std::fs::remove_dir_all(engine::data_dir(slot));
        }
    }
    Ok(())
}

/// Writes what is needed to read a failure without rerunning into `dir`: each node's journal of
/// the agent and of docker.service, the swarm's nodes, services and tasks, the balancer's log.
pub fn save_logs(engine: &Engine, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // The lab's own nodes if they can be listed, else the default lab's names.
    for n in running_nodes(engine).unwrap_or_else(|_| Shape::default().nodes(engine.slot)) {
        for unit in ["swarm-upgrade-agent", "docker", "containerd"] {
            let log = engine
                .sh(&n.name, &format!("journalctl -u {unit} --no-pager -o short-precise"))
                .unwrap_or_else(|e| format!("{e:#}"));
            std::fs::write(dir.join(format!("{}-{unit}.log", n.name)), log)?;
        }
    }
    let swarm =
        ["docker node ls", "docker service ls", "docker service ps --no-trunc web solo agentcheck"]
            .iter()
            .map(|c| {
                format!("$ {c}\n{}\n", engine.sh(MANAGER, c).unwrap_or_else(|e| format!("{e:#}")))
            })
            .collect::<String>();
    std::fs::write(dir.join("swarm.txt"), swarm)?;
    let balancer = engine.docker(&["logs", BALANCER]).unwrap_or_else(|e| format!("{e:#}"));
    std::fs::write(dir.join("balancer.log"), balancer)?;
    Ok(())
}

/// The balancer's last `n` server state changes (a server UP or DOWN), with their times: what a
/// failed request is laid over when the saved logs are gone (CI keeps only the output).
pub fn balancer_events(engine: &Engine, n: usize) -> String {
    let log = match engine.command(&["logs", "-t", BALANCER]).output() {
        Ok(out) => {
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr)
        }
        Err(e) => return format!("docker logs {BALANCER}: {e}"),
    };
    // stdout and stderr arrive apart: their timestamps (fixed width) put them back in order.
    let mut events: Vec<&str> =
        log.lines().filter(|l| l.contains(" is UP") || l.contains(" is DOWN")).collect();
    events.sort_unstable();
    if events.is_empty() {
        return "(none in the balancer's log)".into();
    }
    // The reason (a Layer4 timeout, a Layer7 status) stays; the counters after it go.
    events[events.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            l.split(", info:").next().unwrap_or(l).split(", check duration").next().unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds the project's `.deb` with cargo-deb (installing it once), once per process: labs side
/// by side install the same file, which a second build would rewrite under the first. Returns
/// its path.
pub fn build_deb() -> Result<PathBuf> {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return Ok(p.clone());
    }
    let path = cargo_deb()?;
    *built = Some(path.clone());
    Ok(path)
}

fn cargo_deb() -> Result<PathBuf> {
    crate::host::ensure_packages(&[("dpkg-shlibdeps", "dpkg-dev")])?;
    if !crate::host::have("cargo-deb") {
        eprintln!("lab: installing cargo-deb (once)");
        crate::host::run(std::process::Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-deb",
            "--version",
            "3.6.0",
        ]))?;
    }
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("the workspace")?;
    let out = crate::host::run(
        std::process::Command::new("cargo").current_dir(top).args(["deb", "--locked", "--quiet"]),
    )?;
    let path =
        out.lines().last().map(PathBuf::from).context("cargo deb printed no package path")?;
    if !path.is_file() {
        bail!("cargo deb printed {}, which is not a file", path.display());
    }
    Ok(path)
}

fn label_arg() -> String {
    format!("{LABEL}=1")
}

fn add_hosts(nodes: &[Host], slot: u8) -> Vec<String> {
    nodes
        .iter()
        .cloned()
        .chain([balancer(slot), repository(slot)])
        .flat_map(|h| ["--add-host".to_string(), format!("{}:{}", h.name, h.ip)])
        .collect()
}

fn start_containers(
    engine: &Engine,
    nodes: &[Host],
    node_image: &str,
    web_image: &str,
    repo_root: &Path,
) -> Result<()> {
    let label = label_arg();
    let slot = engine.slot;
    engine.docker(&[
        "network",
        "create",
        "--label",
        &label,
        "--subnet",
        &subnet(slot),
        "--gateway",
        &gateway(slot),
        NETWORK,
    ])?;
    let repo_mount = format!("{}:/srv:ro", repo_root.display());
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        REPO,
        "--hostname",
        REPO,
        "--label",
        &label,
        "--network",
        NETWORK,
        "--ip",
        &repository(slot).ip,
    ]
    .map(String::from)
    .to_vec();
    args.extend(["-v".into(), repo_mount, web_image.into()]);
    args.extend(["/lab-web", "web", "files", "/srv", "80"].map(String::from));
    engine.docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;

    for n in nodes {
        for dir in ["docker", "containerd"] {
            engine.docker(&[
                "volume",
                "create",
                "--label",
                &label,
                &format!("swarm-upgrade-lab-{}-{dir}", n.name),
            ])?;
        }
        let role = if n.name.starts_with("manager") { "manager" } else { "worker" };
        let mut a: Vec<String> = [
            "run",
            "-d",
            "--name",
            &n.name,
            "--hostname",
            &n.name,
            "--label",
            &label,
            "--label",
            &format!("{ROLE_LABEL}={role}"),
            "--network",
            NETWORK,
            "--ip",
            &n.ip,
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/tmp",
            "--stop-signal",
            "SIGRTMIN+3",
        ]
        .map(String::from)
        .to_vec();
        a.extend(SYSTEMD_NODE_FLAGS.iter().map(|f| f.to_string()));
        a.extend(["-v".into(), format!("swarm-upgrade-lab-{}-docker:/var/lib/docker", n.name)]);
        a.extend([
            "-v".into(),
            format!("swarm-upgrade-lab-{}-containerd:/var/lib/containerd", n.name),
        ]);
        a.extend(add_hosts(nodes, slot));
        a.push(node_image.into());
        engine.docker(&a.iter().map(String::as_str).collect::<Vec<_>>())?;
        // Docker's embedded DNS (127.0.0.11) needs iptables rules this engine does not make, so
        // every lookup of a name not in /etc/hosts would wait 10 s (apt's SRV lookups do): a
        // resolver that refuses at once instead. The lab's names are in /etc/hosts.
        engine.sh(&n.name, "echo 'nameserver 127.0.0.1' > /etc/resolv.conf")?;
    }

    let cfg = engine.run_path("haproxy.cfg");
    std::fs::create_dir_all(cfg.parent().unwrap())?;
    std::fs::write(&cfg, workload::haproxy_cfg(nodes))?;
    let cfg_mount = format!("{}:/etc/haproxy/lab.cfg:ro", cfg.display());
    let mut b: Vec<String> = [
        "run",
        "-d",
        "--name",
        BALANCER,
        "--hostname",
        BALANCER,
        "--label",
        &label,
        "--network",
        NETWORK,
        "--ip",
        &balancer(slot).ip,
    ]
    .map(String::from)
    .to_vec();
    b.extend([
        "-v".into(),
        cfg_mount,
        node_image.into(),
        "haproxy".into(),
        "-db".into(),
        "-f".into(),
        "/etc/haproxy/lab.cfg".into(),
    ]);
    engine.docker(&b.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(())
}

fn wait_booted(engine: &Engine, node: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let state = engine.sh(node, "systemctl is-system-running || true").unwrap_or_default();
        let docker = engine
            .sh(node, "docker version --format '{{.Server.Version}}' 2>/dev/null || true")
            .unwrap_or_default();
        if (state == "running" || state == "degraded") && !docker.is_empty() {
            if state == "degraded" {
                let failed = engine
                    .sh(node, "systemctl list-units --failed --plain --no-legend")
                    .unwrap_or_default();
                bail!("{node} booted degraded: {failed}");
            }
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(90) {
            bail!(
                "{node}: systemd is {state:?} and dockerd does not answer after 90 s; see `cargo xtask lab exec {node} -- journalctl -b`"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn form_swarm(engine: &Engine, nodes: &[Host]) -> Result<()> {
    let first = &nodes[0];
    engine.sh(
        &first.name,
        &format!("docker swarm init --advertise-addr {ip} --listen-addr {ip}:2377", ip = first.ip),
    )?;
    let manager_token = engine.sh(&first.name, "docker swarm join-token -q manager")?;
    let worker_token = engine.sh(&first.name, "docker swarm join-token -q worker")?;
    for n in &nodes[1..] {
        let token = if n.name.starts_with("manager") { &manager_token } else { &worker_token };
        engine.sh(
            &n.name,
            &format!("docker swarm join --advertise-addr {ip} --listen-addr {ip}:2377 --token {token} {}:2377", first.ip, ip = n.ip),
        )?;
    }
    let t0 = Instant::now();
    loop {
        let ls = engine.sh(MANAGER, "docker node ls --format '{{.Hostname}} {{.Status}}'")?;
        if ls.lines().filter(|l| l.ends_with(" Ready")).count() == nodes.len() {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("not every node is Ready after 60 s:\n{ls}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn install_agent(engine: &Engine, node: &str, deb: &Path) -> Result<()> {
    engine.docker(&[
        "cp",
        &deb.display().to_string(),
        &format!("{node}:/root/swarm-upgrade.deb"),
    ])?;
    engine.sh(node, "dpkg -i /root/swarm-upgrade.deb >/dev/null && rm /root/swarm-upgrade.deb")?;
    let t0 = Instant::now();
    loop {
        let listening = engine.sh(node, "ss -Hltn 'sport = :7443' | wc -l")?;
        if listening.trim() != "0" {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let log =
                engine.sh(node, "journalctl -u swarm-upgrade-agent --no-pager -n 20 || true")?;
            bail!("the agent on {node} does not listen on 7443 after 30 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn wait_balancer(slot: u8, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut ok_in_a_row = 0;
    loop {
        let web = http::get_blocking(&balancer_web(slot), "/", Duration::from_secs(2));
        let solo = http::get_blocking(&balancer_solo(slot), "/", Duration::from_secs(2));
        if matches!(web, http::Outcome::Status(200, _))
            && matches!(solo, http::Outcome::Status(200, _))
        {
            ok_in_a_row += 1;
            if ok_in_a_row >= 10 {
                return Ok(());
            }
        } else {
            ok_in_a_row = 0;
        }
        if t0.elapsed() > limit {
            bail!("the balancer does not answer 200 after {limit:?}: web {web:?}, solo {solo:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
