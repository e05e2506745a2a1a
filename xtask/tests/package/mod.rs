//! The package on real nodes (issue 6): what `cargo deb` builds, installed by the lab on every
//! node. The agent is a Type=notify service that reported READY and pings its watchdog; every
//! unit passes `systemd-analyze verify`; the timer ships disabled; the man page and completions
//! are in place; apt refuses one transaction that changes both this package and the engine; the
//! package upgrades over itself (the agent restarted, not stopped), removes and purges cleanly,
//! and installs again. The same on a plain Debian 12 (bookworm) node, where the agent, not yet
//! in a swarm, waits for the node's swarm certificates instead of failing.
//!
//! Needs root, as the README's test command runs it. `SWARM_UPGRADE_DEB` names a prebuilt `.deb`;
//! without it one is built with cargo-deb.

use std::path::{Path, PathBuf};

use xtask::scenario::LabGuard;
use xtask::{lab, repo};

fn deb() -> PathBuf {
    std::env::var_os("SWARM_UPGRADE_DEB")
        .map(PathBuf::from)
        .unwrap_or_else(|| lab::build_deb().expect("cargo deb"))
}

fn show(l: &LabGuard, node: &str, unit: &str, props: &str) -> String {
    l.sh(node, &format!("systemctl show -p {props} {unit}"))
}

#[test]
fn the_package_installs_runs_guards_apt_and_removes_cleanly() {
    let deb = deb();
    // What the package holds.
    let out =
        std::process::Command::new("dpkg-deb").arg("-c").arg(&deb).output().expect("dpkg-deb");
    let listing = String::from_utf8_lossy(&out.stdout);
    for path in [
        "usr/bin/swarm-upgrade",
        "usr/lib/systemd/system/swarm-upgrade-agent.service",
        "usr/lib/systemd/system/swarm-upgrade.service",
        "usr/lib/systemd/system/swarm-upgrade.timer",
        "etc/swarm-upgrade/config.toml",
        "usr/share/man/man1/swarm-upgrade.1.gz",
        "usr/share/bash-completion/completions/swarm-upgrade",
        "usr/share/zsh/vendor-completions/_swarm-upgrade",
        "usr/share/fish/vendor_completions.d/swarm-upgrade.fish",
        "usr/share/swarm-upgrade/apt-guard.conf",
        "usr/lib/swarm-upgrade/apt-guard",
    ] {
        let found = listing
            .lines()
            .any(|l| l.ends_with(&format!(" {path}")) || l.ends_with(&format!(" ./{path}")));
        assert!(found, "{path} is in the package:\n{listing}");
    }
    // The configuration may hold the webhook URL: root's alone to read.
    // (dpkg-deb lists the owner as cargo-deb writes it: `0/0`.)
    let config = listing.lines().find(|l| l.ends_with("etc/swarm-upgrade/config.toml")).unwrap();
    let fields: Vec<&str> = config.split_whitespace().collect();
    assert!(
        fields[0] == "-rw-r-----" && ["0/0", "root/root"].contains(&fields[1]),
        "config.toml is 0640 root:root: {config}"
    );

    let l = LabGuard::up("package", Path::new(env!("CARGO_BIN_EXE_xtask")));
    // On every node the agent is a notify service that said READY, with a watchdog; the timer is off.
    lab::parallel(&l.nodes, |n| {
        let agent =
            l.engine.sh(&n.name, "systemctl show -p Type,ActiveState,SubState,StatusText,WatchdogUSec,NRestarts swarm-upgrade-agent")?;
        for want in [
            "Type=notify",
            "ActiveState=active",
            "SubState=running",
            "StatusText=serving on 0.0.0.0:7443 with mutual TLS",
            "WatchdogUSec=30s",
            "NRestarts=0",
        ] {
            anyhow::ensure!(agent.lines().any(|l| l == want), "{}: {want} in\n{agent}", n.name);
        }
        let timer = l.engine.sh(&n.name, "systemctl is-enabled swarm-upgrade.timer || true")?;
        anyhow::ensure!(timer == "disabled", "{}: the timer ships disabled, not {timer}", n.name);
        Ok(())
    })
    .unwrap();
    let node = "worker2";
    let mode = l.sh(node, "stat -c '%a %U:%G' /etc/swarm-upgrade/config.toml");
    assert_eq!(mode, "640 root:root", "the installed configuration keeps the package's mode");
    // The agent logs to the journal with its events' fields as journal fields.
    let listening = l.sh(node, "journalctl --no-pager -o cat -u swarm-upgrade-agent PORT=7443");
    assert!(listening.starts_with("agent listening node="), "{listening}");
    // systemd-analyze verify is clean on every unit (--man=no: the node image has no man-db; the
    // page itself is checked below).
    let verify = l.sh(
        node,
        "cd /usr/lib/systemd/system && systemd-analyze verify --man=no swarm-upgrade-agent.service swarm-upgrade.service swarm-upgrade.timer 2>&1; echo \"exit $?\"",
    );
    assert_eq!(verify, "exit 0", "systemd-analyze verify says:\n{verify}");
    // The man page and completions are where man and the shells look.
    let man = l.sh(node, "zcat /usr/share/man/man1/swarm-upgrade.1.gz | head -3");
    assert!(man.contains(".TH swarm-upgrade 1"), "{man}");
    let completion = l.sh(node, "bash -c '. /usr/share/bash-completion/completions/swarm-upgrade && complete -p swarm-upgrade'");
    assert!(completion.contains("swarm-upgrade"), "{completion}");

    // apt refuses a transaction that changes this package and the engine together.
    assert_eq!(
        l.sh(node, "readlink /etc/apt/apt.conf.d/50swarm-upgrade"),
        "/usr/share/swarm-upgrade/apt-guard.conf"
    );
    l.engine
        .docker(&["cp", &deb.display().to_string(), &format!("{node}:/root/swarm-upgrade.deb")])
        .unwrap();
    let together = l.sh(
        node,
        &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /root/swarm-upgrade.deb docker-ce={v} docker-ce-cli={v} 2>&1; echo \"exit $?\"",
            v = repo::NEW
        ),
    );
    assert!(
        together.contains(
            "refusing one apt transaction that changes both swarm-upgrade and the Docker Engine"
        ),
        "{together}"
    );
    assert!(!together.ends_with("exit 0"), "{together}");
    let engine = l.sh(node, "dpkg-query -W -f '${Version}' docker-ce");
    assert_eq!(engine, repo::OLD, "the engine was not touched");

    // Alone, it upgrades over itself: the agent is restarted (a new PID), READY again.
    let pid = show(&l, node, "swarm-upgrade-agent", "MainPID");
    let alone =
        l.sh(node, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall /root/swarm-upgrade.deb >/dev/null 2>&1; echo $?");
    assert_eq!(alone, "0");
    let after = show(&l, node, "swarm-upgrade-agent", "MainPID,ActiveState,StatusText");
    assert!(
        !after.contains(&pid)
            && after.contains("ActiveState=active")
            && after.contains("StatusText=serving on"),
        "{pid} then\n{after}"
    );

    // Remove: the agent stops, the binary goes, the configuration stays; apt still works (the
    // guard is skipped once its script is gone). Purge: the configuration goes too.
    let removed = l.sh(
        node,
        "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q swarm-upgrade >/dev/null 2>&1; echo $?; systemctl is-active swarm-upgrade-agent || true; ls /usr/bin/swarm-upgrade 2>&1 || true; ls /etc/swarm-upgrade/config.toml; ls /etc/apt/apt.conf.d/50swarm-upgrade 2>&1 || true",
    );
    let lines: Vec<&str> = removed.lines().collect();
    assert_eq!(lines[0], "0", "{removed}");
    assert!(lines[1] == "inactive" || lines[1] == "unknown", "{removed}");
    assert!(lines[2].contains("No such file"), "{removed}");
    assert_eq!(lines[3], "/etc/swarm-upgrade/config.toml", "{removed}");
    assert!(lines[4].contains("No such file"), "the apt guard's link goes: {removed}");
    let apt = l.sh(
        node,
        &format!(
            "apt-get install -y -q --reinstall docker-ce-cli={} 2>&1; echo \"exit $?\"",
            repo::OLD
        ),
    );
    assert!(
        apt.ends_with("exit 0") && !apt.contains("apt-guard"),
        "apt works after removal:\n{apt}"
    );
    let purged = l.sh(
        node,
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q swarm-upgrade >/dev/null 2>&1; echo $?; ls /etc/swarm-upgrade /var/lib/swarm-upgrade 2>&1 | grep -c 'No such file'; dpkg-query -W -f '${Status}' swarm-upgrade 2>&1 || true",
    );
    let lines: Vec<&str> = purged.lines().collect();
    assert_eq!(lines[..2], ["0", "2"], "{purged}");
    assert!(
        lines.get(2).is_none_or(|s| !s.contains("installed") || s.contains("not-installed")),
        "{purged}"
    );
    // And it installs again: enabled and READY.
    let again = l.sh(node, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/swarm-upgrade.deb >/dev/null 2>&1; echo $?; systemctl is-enabled swarm-upgrade-agent");
    assert_eq!(again, "0\nenabled");
    assert!(
        show(&l, node, "swarm-upgrade-agent", "StatusText").starts_with("StatusText=serving on")
    );

    debian_12(&l, &deb);
}

/// Install, upgrade over itself, remove, purge and install again on a plain Debian 12 node: no
/// engine, not in a swarm. The agent is up and READY, says what it waits for, and does not
/// crash-loop; given a swarm node's certificates it goes on to wait for the local engine.
fn debian_12(l: &LabGuard, deb: &Path) {
    let image = xtask::images::bookworm_image(&l.engine).expect("the Debian 12 node image");
    let node = "bookworm";
    let label = format!("{}=package", lab::LABEL);
    let mut args = vec![
        "run",
        "-d",
        "--name",
        node,
        "--hostname",
        node,
        "--label",
        &label,
        "--network",
        lab::NETWORK,
    ];
    args.extend(["--tmpfs", "/run", "--tmpfs", "/tmp", "--stop-signal", "SIGRTMIN+3"]);
    args.extend(lab::SYSTEMD_NODE_FLAGS);
    args.push(&image);
    l.engine.docker(&args).expect("the Debian 12 node starts");
    let booted = l.sh(
        node,
        "for i in $(seq 60); do s=$(systemctl is-system-running 2>/dev/null); case $s in running|degraded) echo $s; exit;; esac; sleep 1; done; echo $s",
    );
    assert!(booted == "running" || booted == "degraded", "systemd on Debian 12: {booted}");
    assert_eq!(l.sh(node, ". /etc/os-release; echo $VERSION_ID"), "12");
    l.engine
        .docker(&["cp", &deb.display().to_string(), &format!("{node}:/root/swarm-upgrade.deb")])
        .unwrap();
    let install = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/swarm-upgrade.deb >/dev/null 2>&1; echo $?";
    assert_eq!(l.sh(node, install), "0", "installs on Debian 12");
    let waiting = "StatusText=waiting for this node's swarm certificates in /var/lib/docker/swarm/certificates";
    let agent = wait_status(l, node, waiting);
    for want in [
        "Type=notify",
        "ActiveState=active",
        "SubState=running",
        "NRestarts=0",
        "WatchdogUSec=30s",
        "UnitFileState=enabled",
    ] {
        assert!(agent.lines().any(|line| line == want), "Debian 12: {want} in\n{agent}");
    }
    assert_eq!(l.sh(node, "systemctl is-enabled swarm-upgrade.timer || true"), "disabled");
    let verify = l.sh(
        node,
        "cd /usr/lib/systemd/system && systemd-analyze verify --man=no swarm-upgrade-agent.service swarm-upgrade.service swarm-upgrade.timer 2>&1; echo \"exit $?\"",
    );
    assert_eq!(verify, "exit 0", "systemd-analyze verify on Debian 12 says:\n{verify}");
    assert_eq!(
        l.sh(node, "readlink /etc/apt/apt.conf.d/50swarm-upgrade"),
        "/usr/share/swarm-upgrade/apt-guard.conf"
    );

    // Given a swarm node's certificates (worker2's), it stops waiting for them and waits for the
    // local engine, which this node does not have; still no restart.
    let certs = l.reports.join("bookworm-certificates");
    let _ = std::fs::remove_dir_all(&certs);
    l.engine
        .docker(&["cp", "worker2:/var/lib/docker/swarm/certificates", &certs.display().to_string()])
        .unwrap();
    l.sh(node, "mkdir -p /var/lib/docker/swarm");
    l.engine
        .docker(&[
            "cp",
            &certs.display().to_string(),
            &format!("{node}:/var/lib/docker/swarm/certificates"),
        ])
        .unwrap();
    std::fs::remove_dir_all(&certs).unwrap();
    let engine = wait_status(l, node, "StatusText=waiting for the local Docker engine");
    assert!(
        engine.lines().any(|line| line == "NRestarts=0") && engine.contains("ActiveState=active"),
        "{engine}"
    );
    l.sh(node, "rm -rf /var/lib/docker");

    // Upgrade over itself: restarted (a new PID), waiting again.
    let pid = show(l, node, "swarm-upgrade-agent", "MainPID");
    assert_eq!(l.sh(node, &install.replace("install -y", "install --reinstall -y")), "0");
    let after = wait_status(l, node, waiting);
    assert!(!after.lines().any(|line| line == pid), "{pid} then\n{after}");

    // Remove keeps the configuration and unlinks the guard; apt still works; purge; install again.
    let removed = l.sh(
        node,
        "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q swarm-upgrade >/dev/null 2>&1; echo $?; systemctl is-active swarm-upgrade-agent || true; ls /etc/swarm-upgrade/config.toml; ls /etc/apt/apt.conf.d/50swarm-upgrade 2>&1 || true; apt-get check -q >/dev/null 2>&1; echo $?",
    );
    let lines: Vec<&str> = removed.lines().collect();
    assert_eq!(lines[0], "0", "{removed}");
    assert!(lines[1] == "inactive" || lines[1] == "unknown", "{removed}");
    assert_eq!(lines[2], "/etc/swarm-upgrade/config.toml", "{removed}");
    assert!(lines[3].contains("No such file"), "{removed}");
    assert_eq!(lines[4], "0", "apt works after removal: {removed}");
    let purged = l.sh(
        node,
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q swarm-upgrade >/dev/null 2>&1; echo $?; ls /etc/swarm-upgrade /var/lib/swarm-upgrade /usr/bin/swarm-upgrade 2>&1 | grep -c 'No such file'",
    );
    assert_eq!(purged, "0\n3", "purge on Debian 12");
    assert_eq!(l.sh(node, install), "0", "installs again on Debian 12");
    wait_status(l, node, waiting);
}

/// The agent's unit properties once its status line starts with `status` (panics after 30 s).
fn wait_status(l: &LabGuard, node: &str, status: &str) -> String {
    let props = "Type,ActiveState,SubState,StatusText,NRestarts,WatchdogUSec,UnitFileState,MainPID";
    let t0 = std::time::Instant::now();
    loop {
        let agent = show(l, node, "swarm-upgrade-agent", props);
        if agent.lines().any(|line| line.starts_with(status)) {
            return agent;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "{node}: no {status} after 30 s:\n{agent}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
