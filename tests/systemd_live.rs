//! The systemd adapter against a real systemd in a node container, through its D-Bus system bus:
//! a restart awaited to its job's result (done, failed, dependency), our own time limit, a stop
//! that replaces a pending start, a runtime mask, unit state, and reset-failed.

mod common;

use std::time::Duration;

use common::dockerd::Dockerd;
use common::node::Node;
use swarm_upgrade::adapters::apt::command::{self, InstallMode};
use swarm_upgrade::adapters::apt::runner::Apt;
use swarm_upgrade::adapters::systemd::{Systemd, UnitError};
use swarm_upgrade::model::PackageSet;
use swarm_upgrade::ports::OpKey;

const UNITS: &str = r#"
cat > /etc/systemd/system/su-ok.service <<'U'
[Service]
ExecStart=/bin/sleep infinity
U
cat > /etc/systemd/system/su-fail.service <<'U'
[Service]
Type=oneshot
ExecStart=/bin/false
U
cat > /etc/systemd/system/su-dep.service <<'U'
[Unit]
Requires=su-fail.service
After=su-fail.service
[Service]
ExecStart=/bin/sleep infinity
U
cat > /etc/systemd/system/su-slow.service <<'U'
[Service]
Type=oneshot
ExecStart=/bin/sleep 30
U
systemctl daemon-reload
"#;

#[tokio::test]
async fn restarts_are_awaited_to_their_jobs_result() {
    let engine = Dockerd::start("systemd");
    let node = Node::start(&engine, "node1", common::node::SYSTEMD);
    node.exec(UNITS).unwrap();
    let systemd = Systemd::at(&node.system_bus()).await.unwrap();

    systemd.restart("su-ok.service", Duration::from_secs(30)).await.unwrap();
    assert_eq!(systemd.state("su-ok.service").await.unwrap(), ("active".into(), "running".into()));

    let e = systemd.restart("su-fail.service", Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(e, UnitError::Failed { unit: "su-fail.service".into(), job: "restart" });
    assert!(e.to_string().contains("journalctl -u su-fail.service"));
    assert_eq!(systemd.state("su-fail.service").await.unwrap().0, "failed");
    systemd.reset_failed("su-fail.service").await.unwrap();
    assert_eq!(systemd.state("su-fail.service").await.unwrap().0, "inactive");

    let e = systemd.restart("su-dep.service", Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(e, UnitError::Dependency { unit: "su-dep.service".into() });

    let e = systemd.restart("su-slow.service", Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(
        e,
        UnitError::Timeout {
            unit: "su-slow.service".into(),
            job: "restart",
            after: Some(Duration::from_secs(2)),
        }
    );
    // Our limit cancels the job: nothing stays queued behind it.
    assert_eq!(node.exec("systemctl list-jobs --no-legend").unwrap().trim(), "");

    // A start that never finishes (a oneshot stands in for an engine that never becomes ready),
    // queued by someone else (a maintainer script's restart): our stop replaces its job.
    node.exec("systemctl --no-block start su-slow.service").unwrap();
    assert!(node.exec("systemctl list-jobs --no-legend").unwrap().contains("su-slow.service"));
    systemd.stop("su-slow.service", Duration::from_secs(10)).await.unwrap();
    assert_eq!(node.exec("systemctl list-jobs --no-legend").unwrap().trim(), "");
    // Its start was ended (a oneshot killed by the stop's SIGTERM counts as failed).
    let (state, _) = systemd.state("su-slow.service").await.unwrap();
    assert!(state == "inactive" || state == "failed", "{state}");
    systemd.reset_failed("su-slow.service").await.unwrap();
    // Masked for the time being, nothing starts it (as `systemctl mask --runtime`); unmasked, it
    // starts again.
    // (A package's unit, as docker.service is: a unit file in /etc would take precedence over a
    // runtime mask, which `file_state` then shows.)
    node.exec("printf '[Service]\nExecStart=/bin/sleep infinity\n' > /lib/systemd/system/su-pkg.service && systemctl daemon-reload").unwrap();
    systemd.mask_for_now("su-pkg.service").await.unwrap();
    assert_eq!(systemd.file_state("su-pkg.service").await.unwrap(), "masked-runtime");
    let refused = node.exec("systemctl restart su-pkg.service").unwrap_err();
    assert!(refused.contains("masked"), "{refused}");
    systemd.unmask_for_now("su-pkg.service").await.unwrap();
    systemd.restart("su-pkg.service", Duration::from_secs(30)).await.unwrap();
    systemd.mask_for_now("su-ok.service").await.unwrap();
    assert_ne!(systemd.file_state("su-ok.service").await.unwrap(), "masked-runtime");
    systemd.unmask_for_now("su-ok.service").await.unwrap();

    // The transient unit our apt transactions run in: the command line exactly as the agent
    // builds it, executed under this node's real systemd-run (so an agent restart cannot kill
    // dpkg): the exact version is installed, the unit is collected, a failure comes back.
    let repo = std::env::temp_dir().join(format!("su-transient-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    let pkg = repo.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: su-transient-test\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@invalid>\nDescription: t\n",
    )
    .unwrap();
    let sh = |cmd: &mut std::process::Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    sh(std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&pkg)
        .arg(repo.join("su-transient-test_1.0_all.deb")));
    std::fs::remove_dir_all(&pkg).unwrap();
    let index = std::process::Command::new("dpkg-scanpackages")
        .args(["--multiversion", "."])
        .current_dir(&repo)
        .output()
        .unwrap();
    std::fs::write(repo.join("Packages"), index.stdout).unwrap();
    engine.cli(&["cp", repo.to_str().unwrap(), "node1:/root/repo"]).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
    let options: Vec<String> = [
        "Dir::Etc::SourceList=/root/repo.list",
        "Dir::Etc::SourceParts=/root/parts",
        "Dir::State::Lists=/root/lists",
    ]
    .map(String::from)
    .to_vec();
    let o = options.iter().map(|o| format!("-o {o}")).collect::<Vec<_>>().join(" ");
    node.exec(&format!(
        "mkdir -p /root/parts /root/lists/partial && echo 'deb [trusted=yes] file:/root/repo ./' > /root/repo.list && apt-get {o} update -q"
    ))
    .unwrap();
    let apt = Apt { options, transient: true };
    let set = |v: &str| PackageSet([("su-transient-test".to_string(), v.parse().unwrap())].into());
    let argv = apt.transaction_args(
        "install",
        command::install(&set("1.0"), InstallMode::Upgrade),
        &OpKey { run_id: "run-1".into(), token: 3, limit: None },
    );
    assert_eq!(argv[0], "systemd-run");
    let mut exec = vec!["exec", "node1"];
    exec.extend(argv.iter().map(String::as_str));
    engine.cli(&exec).unwrap();
    assert_eq!(node.exec("dpkg-query -W -f='${Version}' su-transient-test").unwrap(), "1.0");
    assert!(
        node.exec("systemctl list-units --all --no-legend 'swarm-upgrade-*'").unwrap().is_empty(),
        "the unit was collected"
    );
    let argv = apt.transaction_args(
        "install",
        command::install(&set("9.9"), InstallMode::Upgrade),
        &OpKey { run_id: "run-1".into(), token: 4, limit: None },
    );
    let mut exec = vec!["exec", "node1"];
    exec.extend(argv.iter().map(String::as_str));
    let e = engine.cli(&exec).unwrap_err();
    assert!(e.contains("Version '9.9' for 'su-transient-test' was not found"), "{e}");

    // An order's time limit becomes the unit's runtime limit: systemd ends a transaction that
    // hangs (here a pre-invoke hook) and the unit is gone; nothing was installed.
    let hang = Apt {
        options: [apt.options.clone(), vec!["DPkg::Pre-Invoke::=sleep 300".into()]].concat(),
        ..apt.clone()
    };
    let argv = hang.transaction_args(
        "install",
        command::install(&set("1.0"), InstallMode::Rollback),
        &OpKey { run_id: "run-1".into(), token: 5, limit: Some(Duration::from_secs(3)) },
    );
    assert!(argv.iter().any(|a| a == "--property=RuntimeMaxSec=3000ms"), "{argv:?}");
    node.exec("dpkg --purge su-transient-test").unwrap();
    let mut exec = vec!["exec", "node1"];
    exec.extend(argv.iter().map(String::as_str));
    engine.cli(&exec).unwrap_err();
    let status = node
        .exec("dpkg-query -W -f='${db:Status-Abbrev}' su-transient-test 2>/dev/null || true")
        .unwrap();
    assert!(!status.starts_with("ii"), "nothing was installed: {status}");
    assert!(
        node.exec("systemctl list-units --all --no-legend 'swarm-upgrade-*'").unwrap().is_empty(),
        "the unit was ended and collected"
    );
}
