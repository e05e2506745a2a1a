//! The lab, whole, on real parts (issue 4): `up` on this machine gives five Ready nodes at
//! docker-ce 26.1.5 with the signed repository's three versions, the real agent from the `.deb`,
//! the converged workload and a balancer that answers; a quiet lab loses no request; one node
//! upgraded by hand works; the broken version leaves dockerd failed; the naive baseline runs and
//! its cost is recorded; `down` leaves nothing behind.
//!
//! Needs root, as the README's test command runs it. `SWARM_UPGRADE_DEB` names a prebuilt `.deb`
//! (./scripts/test.sh builds it first); without it the lab builds one with cargo-deb. Reports and,
//! on failure, every node's logs go to `target/lab/reports/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::engine::Engine;
use xtask::{lab, load, naive, repo};

fn reports() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lab/reports");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Takes the lab down when the test ends; on failure, saves every node's logs first.
struct Lab {
    engine: Engine,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = reports().join("lab-failure");
            let _ = lab::save_logs(&self.engine, &dir);
            eprintln!("lab test failed: logs of every node in {}", dir.display());
            if std::env::var_os("LAB_KEEP").is_some() {
                return;
            }
        }
        lab::down(false).expect("lab down");
    }
}

fn sh(l: &Lab, node: &str, script: &str) -> String {
    l.engine.sh(node, script).unwrap_or_else(|e| panic!("{e:#}"))
}

fn load(seconds: u64) -> load::Report {
    let running = load::start(load::Options {
        targets: vec![format!("{}/", lab::balancer_web()), format!("{}/", lab::balancer_solo())],
        rate: 50,
        timeout: Duration::from_secs(5),
    });
    std::thread::sleep(Duration::from_secs(seconds));
    running.stop()
}

fn save(name: &str, value: &impl serde::Serialize) {
    std::fs::write(reports().join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn install(version: &str, containerd: &str) -> String {
    format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades docker-ce={version} docker-ce-cli={version} containerd.io={containerd} >/dev/null 2>&1; echo $?"
    )
}

#[test]
fn lab_comes_up_healthy_upgrades_by_hand_and_goes_down_clean() {
    let opts =
        lab::Options { tool: PathBuf::from(env!("CARGO_BIN_EXE_xtask")), deb: std::env::var_os("SWARM_UPGRADE_DEB").map(PathBuf::from) };
    let (engine, timings) = lab::up(&opts).expect("lab up");
    eprintln!("lab up in {:.1} s: {:?}", timings.total().as_secs_f64(), timings.0);
    let l = Lab { engine };

    // Five Ready nodes at 26.1.5, managers and workers as planned.
    let nodes = sh(&l, lab::MANAGER, "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}} {{.EngineVersion}}'");
    assert_eq!(nodes.lines().count(), 5, "{nodes}");
    for line in nodes.lines() {
        assert!(line.contains(" Ready ") && line.ends_with(" 26.1.5+dfsg1"), "{line}");
        assert_eq!(line.starts_with("manager"), line.contains("Leader") || line.contains("Reachable"), "{line}");
    }
    // The signed repository's three versions on every node, installed from the lab's .deb.
    lab::parallel(lab::NODES, |n| {
        let madison = l.engine.sh(n.name, "apt-cache madison docker-ce")?;
        for v in [repo::OLD, repo::NEW, repo::BROKEN] {
            anyhow::ensure!(madison.contains(&format!("docker-ce | {v} | {}", repo::URL)), "{}: {v} missing from\n{madison}", n.name);
        }
        let installed = l.engine.sh(n.name, "dpkg-query -W -f '${Version} ${db:Status-Abbrev}' docker-ce")?;
        anyhow::ensure!(installed.starts_with(&format!("{} ii", repo::OLD)), "{}: docker-ce {installed}", n.name);
        let agent = l.engine.sh(n.name, "systemctl is-active swarm-upgrade-agent; dpkg-query -W -f '${Status}' swarm-upgrade")?;
        anyhow::ensure!(agent.starts_with("active") && agent.ends_with("install ok installed"), "{}: {agent}", n.name);
        Ok(())
    })
    .unwrap();
    // The repository is signed: apt refuses it without the key.
    let unsigned = sh(
        &l,
        "worker1",
        "mv /etc/apt/keyrings/docker.asc /root/ && (apt-get update -q 2>&1 || true); mv /root/docker.asc /etc/apt/keyrings/",
    );
    assert!(unsigned.contains("signature verification failed") || unsigned.contains("NO_PUBKEY"), "{unsigned}");
    // The agents answer the coordinator over mTLS: a live plan reaches all five.
    let plan = sh(&l, lab::MANAGER, &format!("swarm-upgrade plan --to {}", repo::NEW));
    assert!(plan.contains("Preflight: passed") && plan.contains("5. manager1 (manager, leader)"), "{plan}");

    // A quiet lab loses nothing.
    let quiet = load(10);
    save("quiet-load.json", &quiet);
    eprintln!("quiet lab: {}", quiet.summary());
    assert!(quiet.requests >= 450, "{}", quiet.summary());
    assert_eq!(quiet.failed, 0, "{}", quiet.summary());

    // One node upgraded by hand: drain, install the 28.5.2 set, restart, activate.
    sh(&l, lab::MANAGER, "docker node update --availability drain worker2");
    assert_eq!(sh(&l, "worker2", &install(repo::NEW, repo::CONTAINERD[1].0)), "0");
    sh(&l, "worker2", "systemctl restart docker");
    assert_eq!(sh(&l, "worker2", "docker version --format '{{.Server.Version}}'"), "28.5.2+dfsg4");
    sh(&l, lab::MANAGER, "docker node update --availability active worker2");
    let w2 = sh(&l, lab::MANAGER, "docker node inspect worker2 --format '{{.Status.State}} {{.Description.Engine.EngineVersion}}'");
    assert_eq!(w2, "ready 28.5.2+dfsg4");

    // The broken version installs (its postinst swallows the failed restart) and dockerd fails.
    sh(&l, lab::MANAGER, "docker node update --availability drain worker1");
    assert_eq!(sh(&l, "worker1", &install(repo::BROKEN, repo::CONTAINERD[1].0)), "0", "the install itself succeeds");
    let restart = sh(&l, "worker1", "systemctl restart docker 2>/dev/null; echo $?; journalctl -u docker -n 20 --no-pager");
    assert!(restart.starts_with('1'), "{restart}");
    assert!(restart.contains("broken on purpose"), "{restart}");
    // Put it back as it was, the way a rollback does.
    assert_eq!(sh(&l, "worker1", &install(repo::OLD, repo::CONTAINERD[0].0)), "0");
    sh(&l, "worker1", "systemctl reset-failed docker; systemctl restart docker");
    sh(&l, lab::MANAGER, "docker node update --availability active worker1");
    xtask::workload::wait_converged(&l.engine, Duration::from_secs(120)).unwrap();

    // The naive baseline under load: recorded, not asserted.
    let running = load::start(load::Options {
        targets: vec![format!("{}/", lab::balancer_web()), format!("{}/", lab::balancer_solo())],
        rate: 50,
        timeout: Duration::from_secs(5),
    });
    let baseline = naive::upgrade(&l.engine, repo::NEW, Duration::from_secs(10)).expect("the naive baseline runs");
    let naive_load = running.stop();
    save("naive-baseline.json", &baseline);
    save("naive-baseline-load.json", &naive_load);
    eprintln!("naive baseline: {:.0} s; load: {}", baseline.total_s, naive_load.summary());
    let after = sh(&l, lab::MANAGER, "docker node ls --format '{{.EngineVersion}}'");
    assert!(after.lines().all(|v| v == "28.5.2+dfsg4"), "{after}");

    // Down leaves no lab container, network or volume.
    let engine = l.engine.clone();
    drop(l);
    if let Some(e) = Engine::find() {
        assert_eq!(lab::leftovers(&e).unwrap(), Vec::<String>::new());
    } else {
        assert!(engine.private, "only the lab's own engine stops on down");
    }
}
