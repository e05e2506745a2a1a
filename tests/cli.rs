//! The real binary: offline planning, and one clear message with a distinct exit code for bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

const FIXTURE: &str = "tests/fixtures/five-node.json";
const NEW: &str = "5:28.5.2-1~debian.13~trixie";

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm-upgrade")).args(args).env("SWARM_UPGRADE_CONFIG", empty_config()).output().unwrap()
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
    let order: Vec<&str> = out.lines().filter(|l| l.starts_with("  ") && l.trim_start().chars().next().unwrap().is_ascii_digit()).collect();
    assert_eq!(order.len(), 5, "{out}");
    for (line, host) in order.iter().zip(["worker1", "worker2", "manager2", "manager3", "manager1"]) {
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
    let hosts: Vec<&str> = v["plan"]["nodes"].as_array().unwrap().iter().map(|n| n["hostname"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["worker1", "worker2", "manager2", "manager3", "manager1"]);
    assert_eq!(v["plan"]["packages"]["containerd.io"], "2.1.9-1");
}

#[test]
fn invalid_version_is_bad_input() {
    let o = bin(&["plan", "--snapshot", FIXTURE, "--to", "latest!"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("`latest!` is not a Debian package version") && e.contains("apt-cache madison"), "{e}");
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
    let mut snap: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
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
fn a_malformed_snapshot_is_bad_input() {
    let file = temp("broken.json", "{\"nodes\": [}");
    let o = bin(&["plan", "--snapshot", file.to_str().unwrap(), "--to", NEW]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("broken.json:1:"), "{}", stderr(&o));
}

#[test]
fn unproven_commands_say_so_and_change_nothing() {
    for args in [vec!["run", "--to", NEW], vec!["resume"]] {
        let o = bin(&args);
        assert_eq!(o.status.code(), Some(5), "{args:?}");
        assert!(stderr(&o).contains("is not enabled yet") && stderr(&o).contains("nothing was changed"), "{args:?}: {}", stderr(&o));
    }
    let o = bin(&["unlock"]);
    assert_eq!(o.status.code(), Some(2), "unlock needs --force");
    assert!(stderr(&o).contains("--force"));
}
