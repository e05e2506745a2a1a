//! The engine-configuration check the agent makes when it describes its node, with real dockerds:
//! the lab's engines (Debian's docker.io 26.1.5 and 28.5.2, unpacked once and cached by
//! `xtask::debian`), which have `--validate`, and this machine's own (`./scripts/test.sh` installs
//! docker.io; bookworm's 20.10 has no `--validate`, so it cannot tell). Only `--validate` runs:
//! no engine is started.

use std::path::{Path, PathBuf};
use std::process::Command;

use swarm_upgrade::adapters::engine::{Validation, engine_config_problem, validate};

/// A configuration file in a directory of the test's own (`test`), so tests running at once and
/// their clean-ups never meet.
fn daemon_json(test: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("su-engine-config-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

/// The major version `dockerd --version` prints ("Docker version 20.10.24+dfsg1, build …").
fn major(dockerd: &Path) -> u32 {
    let out = Command::new(dockerd).arg("--version").output().expect("dockerd --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.split_whitespace().nth(2).unwrap_or_default();
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn the_lab_engines_refuse_a_bad_option_in_their_own_words() {
    let debian = xtask::debian::fetch().expect("the lab's Debian engines (xtask::debian)");
    let unknown = daemon_json("lab", "unknown.json", r#"{"no-such-option": true}"#);
    let level = daemon_json("lab", "level.json", r#"{"log-level": "nope"}"#);
    let good =
        daemon_json("lab", "good.json", r#"{"log-level": "info", "log-driver": "journald"}"#);
    let live = daemon_json("lab", "live.json", r#"{"live-restore": true}"#);
    let hosts = daemon_json("lab", "hosts.json", r#"{"hosts": ["unix:///run/other.sock"]}"#);
    for suite in ["trixie", "forky"] {
        let dockerd = debian.tree("docker.io", suite).join("usr/sbin/dockerd");
        assert!(major(&dockerd) >= 23, "{suite}'s dockerd has --validate");
        let p =
            engine_config_problem(&unknown, &dockerd, &[]).expect("an unknown option is refused");
        assert_eq!(p.keys, ["no-such-option"], "{suite}: {p:?}");
        assert!(
            p.detail.starts_with("dockerd --validate: unable to configure the Docker daemon")
                && p.detail.contains(&unknown.display().to_string()),
            "{suite}: dockerd's own words: {p:?}"
        );
        let p = engine_config_problem(&level, &dockerd, &[]).expect("a bad value is refused");
        assert!(p.keys.is_empty() && p.detail.ends_with("invalid logging level: nope"), "{p:?}");
        assert_eq!(engine_config_problem(&good, &dockerd, &[]), None, "{suite}");
        // dockerd --validate accepts live-restore (it does not know the node is in a swarm): our
        // own check is what refuses it.
        assert_eq!(validate(&dockerd, Some(&live), &[]), Validation::Accepted, "{suite}");
        let p = engine_config_problem(&live, &dockerd, &[]).expect("live-restore is refused");
        assert_eq!(p.keys, ["live-restore"], "{suite}");
        // The unit's ExecStart flags (a drop-in's) are checked with the file: Docker's own unit
        // line passes; a flag it does not know, or a setting given both as a flag and in the
        // file (`hosts`, a classic: `-H fd://` in the unit, "hosts" in daemon.json), is refused,
        // named as the unit's.
        let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let unit = flags(&["-H", "fd://", "--containerd=/run/containerd/containerd.sock"]);
        assert_eq!(engine_config_problem(&good, &dockerd, &unit), None, "{suite}");
        let mut bad = unit.clone();
        bad.push("--no-such-flag".into());
        let p = engine_config_problem(&good, &dockerd, &bad).expect("an unknown flag is refused");
        assert_eq!(p.file, "docker.service", "{suite}: {p:?}");
        assert!(
            p.detail.contains("unknown flag: --no-such-flag") && !p.detail.contains("Usage"),
            "{p:?}"
        );
        let p = engine_config_problem(&hosts, &dockerd, &unit).expect("hosts twice is refused");
        assert!(
            p.detail.contains("specified both as a flag and in the configuration file"),
            "{p:?}"
        );
    }
    let _ = std::fs::remove_dir_all(unknown.parent().unwrap());
}

#[test]
fn a_dockerd_without_validate_cannot_tell_and_the_file_is_still_checked() {
    let dockerd = Path::new("/usr/sbin/dockerd");
    let unknown = daemon_json("host", "unknown.json", r#"{"no-such-option": true}"#);
    match validate(dockerd, Some(&unknown), &[]) {
        Validation::Unknown(why) => {
            assert!(major(dockerd) < 23, "{why}");
            assert_eq!(
                engine_config_problem(&unknown, dockerd, &[]),
                None,
                "cannot tell: no problem"
            );
        }
        Validation::Refused(said) => assert!(major(dockerd) >= 23, "{said}"),
        Validation::Accepted => panic!("{} accepted an unknown option", dockerd.display()),
    }
    let live = daemon_json("host", "live.json", r#"{"live-restore": true}"#);
    let p =
        engine_config_problem(&live, dockerd, &[]).expect("live-restore is refused by our check");
    assert_eq!(p.keys, ["live-restore"]);
    let _ = std::fs::remove_dir_all(live.parent().unwrap());
}
