//! The lab, whole, on real parts (issue 4): `up` on this machine gives five Ready nodes at
//! docker-ce 26.1.5 with the signed repository's four versions, the real agent from the `.deb`,
//! the converged workload and a balancer that answers; a quiet lab loses no request; one node
//! upgraded by hand works; the broken version leaves dockerd failed;
//! `down` leaves nothing behind. (The naive baseline runs in tests/e2e.rs beside ours.)
//!
//! Needs root, as the README's test command runs it. `SWARM_UPGRADE_DEB` names a prebuilt `.deb`
//! (./scripts/test.sh builds it first); without it the lab builds one with cargo-deb. Reports and,
//! on failure, every node's logs go to `target/lab/reports/`.

use std::path::Path;
use std::time::Duration;

use xtask::scenario::{LabGuard, save};
use xtask::{lab, repo};

fn install(version: &str, containerd: &str) -> String {
    format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades docker-ce={version} docker-ce-cli={version} containerd.io={containerd} >/dev/null 2>&1; echo $?"
    )
}

#[test]
fn lab_comes_up_healthy_upgrades_by_hand_and_goes_down_clean() {
    let l = LabGuard::up("lab", Path::new(env!("CARGO_BIN_EXE_xtask")));

    // Five Ready nodes at 26.1.5, managers and workers as planned.
    let nodes = l.sh(
        lab::MANAGER,
        "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}} {{.EngineVersion}}'",
    );
    assert_eq!(nodes.lines().count(), 5, "{nodes}");
    for line in nodes.lines() {
        assert!(line.contains(" Ready ") && line.ends_with(" 26.1.5+dfsg1"), "{line}");
        assert_eq!(
            line.starts_with("manager"),
            line.contains("Leader") || line.contains("Reachable"),
            "{line}"
        );
    }
    // The signed repository's four versions on every node, installed from the lab's .deb.
    lab::parallel(&l.nodes, |n| {
        let madison = l.engine.sh(&n.name, "apt-cache madison docker-ce")?;
        for v in [repo::OLD, repo::NEW, repo::BROKEN, repo::HANGS] {
            anyhow::ensure!(
                madison.contains(&format!("docker-ce | {v} | {}", repo::URL)),
                "{}: {v} missing from\n{madison}",
                n.name
            );
        }
        let installed =
            l.engine.sh(&n.name, "dpkg-query -W -f '${Version} ${db:Status-Abbrev}' docker-ce")?;
        anyhow::ensure!(
            installed.starts_with(&format!("{} ii", repo::OLD)),
            "{}: docker-ce {installed}",
            n.name
        );
        let agent = l.engine.sh(
            &n.name,
            "systemctl is-active swarm-upgrade-agent; dpkg-query -W -f '${Status}' swarm-upgrade",
        )?;
        anyhow::ensure!(
            agent.starts_with("active") && agent.ends_with("install ok installed"),
            "{}: {agent}",
            n.name
        );
        Ok(())
    })
    .unwrap();
    // The repository is signed: apt refuses it without the key.
    let unsigned = l.sh(
        "worker1",
        "mv /etc/apt/keyrings/docker.asc /root/ && (apt-get update -q 2>&1 || true); mv /root/docker.asc /etc/apt/keyrings/",
    );
    assert!(
        unsigned.contains("signature verification failed") || unsigned.contains("NO_PUBKEY"),
        "{unsigned}"
    );
    // The agents answer the coordinator over mTLS: a live plan reaches all five.
    let plan = l.sh(lab::MANAGER, &format!("swarm-upgrade plan --to {}", repo::NEW));
    assert!(
        plan.contains("Preflight: passed") && plan.contains("5. manager1 (manager, leader)"),
        "{plan}"
    );

    // A quiet lab loses nothing.
    let running = l.balancer_load();
    std::thread::sleep(Duration::from_secs(10));
    let quiet = running.stop();
    save(&l.reports, "quiet-load.json", &quiet);
    eprintln!("quiet lab: {}", quiet.summary());
    assert!(quiet.requests >= 450, "{}", quiet.summary());
    assert_eq!(quiet.failed, 0, "{}", quiet.summary());

    // One node upgraded by hand: drain, install the 28.5.2 set, restart, activate.
    l.sh(lab::MANAGER, "docker node update --availability drain worker2");
    assert_eq!(l.sh("worker2", &install(repo::NEW, repo::CONTAINERD[1].0)), "0");
    l.sh("worker2", "systemctl restart docker");
    assert_eq!(l.sh("worker2", "docker version --format '{{.Server.Version}}'"), "28.5.2+dfsg4");
    l.sh(lab::MANAGER, "docker node update --availability active worker2");
    let w2 = l.sh(lab::MANAGER, &format!("docker node inspect {} --format '{{{{.Status.State}}}} {{{{.Description.Engine.EngineVersion}}}}'", l.node_id("worker2")));
    assert_eq!(w2, "ready 28.5.2+dfsg4");

    // The broken version installs (its postinst swallows the failed restart) and dockerd fails.
    l.sh(lab::MANAGER, "docker node update --availability drain worker1");
    assert_eq!(
        l.sh("worker1", &install(repo::BROKEN, repo::CONTAINERD[1].0)),
        "0",
        "the install itself succeeds"
    );
    let restart = l.sh(
        "worker1",
        "systemctl restart docker 2>/dev/null; echo $?; journalctl -u docker -n 20 --no-pager",
    );
    assert!(restart.starts_with('1'), "{restart}");
    assert!(restart.contains("broken on purpose"), "{restart}");
    // Put it back as it was, the way a rollback does.
    assert_eq!(l.sh("worker1", &install(repo::OLD, repo::CONTAINERD[0].0)), "0");
    l.sh("worker1", "systemctl reset-failed docker; systemctl restart docker");
    l.sh(lab::MANAGER, "docker node update --availability active worker1");
    xtask::workload::wait_converged(&l.engine, Duration::from_secs(120)).unwrap();

    // Down leaves no lab container, network or volume (checked before its slot is given back).
    let private = l.engine.private;
    match l.take_down() {
        Some(left) => assert_eq!(left, Vec::<String>::new()),
        None => assert!(private, "only the lab's own engine stops on down"),
    }
}
