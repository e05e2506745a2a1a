//! The systemd adapter against a real systemd in a node container, through its D-Bus system bus:
//! a restart awaited to its job's result (done, failed, dependency), our own time limit, unit
//! state, and reset-failed.

mod common;

use std::time::Duration;

use common::dockerd::Dockerd;
use common::node::Node;
use swarm_upgrade::adapters::systemd::{Systemd, UnitError};

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
    assert_eq!(e, UnitError::Failed { unit: "su-fail.service".into() });
    assert!(e.to_string().contains("journalctl -u su-fail.service"));
    assert_eq!(systemd.state("su-fail.service").await.unwrap().0, "failed");
    systemd.reset_failed("su-fail.service").await.unwrap();
    assert_eq!(systemd.state("su-fail.service").await.unwrap().0, "inactive");

    let e = systemd.restart("su-dep.service", Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(e, UnitError::Dependency { unit: "su-dep.service".into() });

    let e = systemd.restart("su-slow.service", Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(e, UnitError::Timeout { unit: "su-slow.service".into(), after: Some(Duration::from_secs(2)) });
}
