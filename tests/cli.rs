//! The real binary: offline planning, and one clear message with a distinct exit code for bad input.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

const FIXTURE: &str = "tests/fixtures/five-node.json";
const NEW: &str = "5:28.5.2-1~debian.13~trixie";

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args(args)
        .env("SWARM_UPGRADE_CONFIG", empty_config())
        .output()
        .unwrap()
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("swarm-upgrade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An empty configuration, so the machine's /etc does not leak into the tests.
fn empty_config() -> PathBuf {
    temp("empty.toml", "")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn plan_prints_order_and_actions() {
    let o = bin(&["plan", "--snapshot", FIXTURE, "--to", NEW]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let order: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  ") && l.trim_start().chars().next().unwrap().is_ascii_digit())
        .collect();
    assert_eq!(order.len(), 5, "{out}");
    for (line, host) in order.iter().zip(["worker1", "worker2", "manager2", "manager3", "manager1"])
    {
        assert!(line.contains(host), "{line} should be {host}");
    }
    assert!(order[4].contains("(manager, leader)"));
    assert!(out.contains("surge: solo 1->2 (on manager1); web 4->5 (on manager1)"), "{out}");
}

#[test]
fn plan_as_json_has_the_same_order() {
    let o = bin(&["plan", "--snapshot", FIXTURE, "--to", NEW, "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "ready");
    let hosts: Vec<&str> = v["plan"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["worker1", "worker2", "manager2", "manager3", "manager1"]);
    assert_eq!(v["plan"]["target"], NEW);
    assert_eq!(v["plan"]["nodes"][0]["packages"]["containerd.io"], "2.1.9-1");
    assert_eq!(v["plan"]["nodes"][0]["packages"]["docker-ce"], NEW);
}

#[test]
fn an_engine_version_plans_each_nodes_packages() {
    let o = bin(&["plan", "--snapshot", FIXTURE, "--to", "28.5.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.starts_with("Target: 28.5.2\n"), "{out}");
    let sets = out.lines().filter(|l| l.trim_start().starts_with("packages: ")).count();
    assert_eq!(sets, 5, "one package line per node: {out}");
    assert!(
        out.contains("packages: containerd.io=2.1.9-1 docker-ce=5:28.5.2-1~debian.13~trixie docker-ce-cli=5:28.5.2-1~debian.13~trixie"),
        "{out}"
    );
}

#[test]
fn invalid_version_is_bad_input() {
    for (bad, why) in [
        ("latest!", "must start with a digit"),
        ("28.5", "three numbers"),
        ("banana", "must start with a digit"),
    ] {
        let o = bin(&["plan", "--snapshot", FIXTURE, "--to", bad]);
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(e.contains(&format!("`{bad}` is not a target: ")) && e.contains(why), "{e}");
        for form in ["28.5.2", "5:28.5.2-1~debian.13~trixie", "`latest`", "apt-cache madison"] {
            assert!(e.contains(form), "{bad}: {e}");
        }
        assert_eq!(
            e.trim_end().lines().filter(|l| l.contains("is not a target")).count(),
            1,
            "{e}"
        );
    }
}

#[test]
fn config_errors_name_file_line_and_fix() {
    for (text, expect) in [
        ("[upgrade\n", ":1:"),
        ("[upgrade]\nsurje = true\n", ":2:1: unknown field `surje`"),
        ("[agent]\nport = \"x\"\n", ":2:8: invalid type"),
        ("[timeouts]\nready = \"soon\"\n", "`timeouts.ready` = \"soon\""),
    ] {
        let cfg = temp("bad.toml", text);
        let o = Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
            .args(["--config", cfg.to_str().unwrap(), "plan", "--snapshot", FIXTURE, "--to", NEW])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{text:?}");
        let e = stderr(&o);
        assert!(e.starts_with(&format!("error: {}", cfg.display())), "{e}");
        assert!(e.contains(expect), "{text:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "one message: {e}");
    }
}

#[test]
fn a_snapshot_that_fails_preflight_is_refused_with_node_and_fix() {
    let mut snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    snap["nodes"][2]["manager"]["reachability"] = "unreachable".into();
    let file = temp("refused.json", &snap.to_string());
    let o = bin(&["plan", "--snapshot", file.to_str().unwrap(), "--to", NEW]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(e.contains("[manager3] manager manager3 is unreachable by the other managers"), "{e}");
    assert!(e.contains("fix: restore it"), "{e}");
    assert!(o.stdout.is_empty());
}

#[test]
fn an_engine_configuration_an_agent_reports_is_refused_for_people_and_programs() {
    let mut snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    snap["agents"]["worker1-id"]["engine_config"] = serde_json::json!({
        "file": "/etc/docker/daemon.json",
        "keys": ["live-restore"],
        "detail": "\"live-restore\": true is not supported in swarm mode",
    });
    let file = temp("engine-config.json", &snap.to_string());
    let o = bin(&["plan", "--snapshot", file.to_str().unwrap(), "--to", NEW]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(
        e.contains("[worker1] dockerd on worker1 would not start with /etc/docker/daemon.json"),
        "{e}"
    );
    assert!(
        e.contains("fix: remove \"live-restore\" from /etc/docker/daemon.json on worker1"),
        "{e}"
    );
    let o = bin(&["plan", "--snapshot", file.to_str().unwrap(), "--to", NEW, "--output", "json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "refused");
    assert_eq!(v["refusals"][0]["kind"], "engine-config", "{v}");
    assert_eq!(v["refusals"][0]["node"], "worker1", "{v}");
}

#[test]
fn a_malformed_snapshot_is_bad_input() {
    let file = temp("broken.json", "{\"nodes\": [}");
    let o = bin(&["plan", "--snapshot", file.to_str().unwrap(), "--to", NEW]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("broken.json:1:"), "{}", stderr(&o));
}

#[test]
fn run_refuses_bad_input_and_closed_windows_before_touching_anything() {
    // A malformed configuration: bad input, named.
    let bad = temp("run-bad.toml", "[upgrade]\norder = \"sideways\"\n");
    let o = Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args(["run", "--to", NEW])
        .env("SWARM_UPGRADE_CONFIG", &bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("run-bad.toml"), "{}", stderr(&o));
    // Outside every window: refused before any engine is contacted (none answers here).
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).weekday();
    let tomorrow = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [(today.to_monday_zero_offset() as usize + 1) % 7];
    let closed = temp(
        "closed.toml",
        &format!(
            "[[windows]]\ndays = [\"{tomorrow}\"]\nstart = \"00:00\"\nend = \"23:59\"\ntimezone = \"UTC\"\n"
        ),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args(["run", "--to", NEW])
        .env("SWARM_UPGRADE_CONFIG", &closed)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("outside every maintenance window")
            && stderr(&o).contains("--ignore-window"),
        "{}",
        stderr(&o)
    );
    // No engine: one clear error, not a panic.
    for args in [vec!["run", "--to", NEW], vec!["resume"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
            .args(&args)
            .env("SWARM_UPGRADE_CONFIG", empty_config())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: ") && stderr(&o).lines().count() == 1,
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn unlock_needs_force() {
    let o = bin(&["unlock"]);
    assert_eq!(o.status.code(), Some(2), "unlock needs --force");
    assert!(stderr(&o).contains("--force"));
}

/// A reader that stops early (`swarm-upgrade plan | head`) ends the output, not the command: no
/// panic, and the command's own exit code (here: a fleet's plan, far longer than a pipe holds).
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    let snap = serde_json::to_string(&common::fleet::fleet(1000)).unwrap();
    let file = temp("fleet.json", &snap);
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm-upgrade"))
        .args(["plan", "--snapshot", file.to_str().unwrap(), "--to", NEW])
        .env("SWARM_UPGRADE_CONFIG", empty_config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("Target: "));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}
