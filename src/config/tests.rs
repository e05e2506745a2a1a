use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("swarm-upgrade-config-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn drop_ins_override_key_by_key_in_name_order() {
    let d = tempdir("dropins");
    let main = write(
        &d,
        "config.toml",
        "[upgrade]\nsurge = false\norder = \"managers-first\"\n[timeouts]\nready = \"2m\"\n",
    );
    write(&d, "config.d/20-late.toml", "[upgrade]\nsurge = true\n");
    write(&d, "config.d/10-early.toml", "[upgrade]\nsurge = false\n[timeouts]\nready = \"7m\"\n");
    write(&d, "config.d/notes.txt", "not toml");
    let s = load(Some(&main)).unwrap();
    assert!(s.surge, "20-late.toml is applied last");
    assert_eq!(s.order, NodeOrder::ManagersFirst, "keys a drop-in does not set are kept");
    assert_eq!(s.timeouts.ready, Duration::from_secs(420));
    assert_eq!(s.timeouts.verify, Settings::default().timeouts.verify);
}

#[test]
fn unknown_key_names_file_line_column_and_fix() {
    let e = parse_fragment("[upgrade]\nsurge = true\nsurgee = false\n", Path::new("/etc/x.toml"))
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("/etc/x.toml:3:1: unknown field `surgee`"), "{msg}");
    assert!(msg.contains("remove the key or correct its spelling"), "{msg}");
}

#[test]
fn wrong_type_and_malformed_toml_are_located() {
    let e =
        parse_fragment("[agent]\nport = \"seven\"\n", Path::new("c.toml")).unwrap_err().to_string();
    assert!(e.starts_with("c.toml:2:8: invalid type"), "{e}");
    let e = parse_fragment("[agent\nport = 1\n", Path::new("c.toml")).unwrap_err().to_string();
    assert!(e.starts_with("c.toml:1:"), "{e}");
    assert!(e.contains("correct the TOML syntax"), "{e}");
}

#[test]
fn a_package_listed_as_engine_or_companion_leaves_the_default_plugins() {
    let dir = tempdir("plugins");
    let file = write(
        &dir,
        "config.toml",
        "[packages]\ncompanions = [\"containerd.io\", \"docker-compose-plugin\"]\n",
    );
    let s = load(Some(&file)).unwrap();
    assert_eq!(s.companion_packages, ["containerd.io", "docker-compose-plugin"]);
    assert_eq!(s.plugin_packages, ["docker-buildx-plugin", "docker-ce-rootless-extras"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_values_name_the_key_and_the_fix() {
    let cases = [
        ("[target]\nversion = \"latest!\"\n", "`target.version`"),
        ("[target]\npolicy = \"newest\"\n", "must be \"latest\" or \"latest-patch\""),
        ("[target]\npolicy = \"latest\"\nversion = \"28.5.2\"\n", "not both"),
        ("[target]\nversion = \"28.5\"\n", "three numbers"),
        ("[timeouts]\nready = \"soon\"\n", "`timeouts.ready`"),
        ("[timeouts]\nready = \"0s\"\n", "longer than zero"),
        ("[lock]\nlease = \"15s\"\n", "at least 30s"),
        ("[upgrade]\norder = \"random\"\n", "workers-first"),
        ("[packages]\nplugins = [\"containerd.io\"]\n", "`packages.plugins`"),
        ("[upgrade]\nstandalone = \"sometimes\"\n", "must be \"allow\" or \"refuse\""),
        ("[upgrade]\nbackup_keep = 0\n", "upgrade.backup_managers = false"),
        ("[upgrade]\nbackup_managers = \"yes\"\n", "expected a boolean"),
        ("[packages]\nengine = []\n", "at least the engine package"),
        ("[packages]\nengine = [\"Docker CE\"]\n", "not a Debian package name"),
        ("[agent]\ncert = \"/c.pem\"\n", "all three"),
        (
            "[[windows]]\ndays = [\"someday\"]\nstart = \"01:00\"\nend = \"02:00\"\n",
            "windows[0].days",
        ),
        ("[[windows]]\nstart = \"25:00\"\nend = \"02:00\"\n", "HH:MM"),
        ("[[windows]]\nstart = \"01:00\"\nend = \"02:00\"\ntimezone = \"Mars/Base\"\n", "IANA"),
        ("[notify]\nwebhook = \"ftp://x\"\n", "http://"),
        ("[metrics]\nagent = \"localhost:9701\"\n", "host:port with an IP address"),
        ("[agent]\nlisten = \"eth0\"\n", "`agent.listen` = \"eth0\": must be an IP address"),
        ("[agent]\nlisten = \"0.0.0.0:7443\"\n", "the port is agent.port"),
    ];
    for (text, expect) in cases {
        let d = tempdir("invalid");
        let p = write(&d, "config.toml", text);
        let e = load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains(expect), "{text:?} gave {e}");
        assert!(e.starts_with(&p.display().to_string()), "names the file: {e}");
    }
}

/// A value refused while the file is read is placed at the value itself (a list's element, not
/// the list), named by its key, and quoted with what to write instead.
#[test]
fn refused_values_name_line_column_and_key() {
    let e = parse_fragment("[timeouts]\nready = \"soon\"\n", Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "c.toml:2:9: `timeouts.ready` = \"soon\": write a duration such as \"90s\", \"10m\" or \"1h 30m\""
    );
    let e = parse_fragment(
        "[packages]\nengine = [\"docker-ce\", \"Docker CE\"]\n",
        Path::new("c.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("c.toml:2:24: `packages.engine` = \"Docker CE\": not a Debian package name"),
        "{e}"
    );
    let e = parse_fragment(
        "[[windows]]\nstart = \"01:00\"\nend = \"02:00\"\n[[windows]]\nstart = \"1am\"\n",
        Path::new("c.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("c.toml:5:9: `windows[1].start` = \"1am\": write a local time"), "{e}");
    // serde's own refusals (here a number out of range) keep their wording.
    let e = parse_fragment("[agent]\nport = 70000\n", Path::new("c.toml")).unwrap_err().to_string();
    assert!(e.starts_with("c.toml:2:8: invalid value: integer `70000`, expected u16"), "{e}");
}

/// /metrics answers without authentication: by default only on loopback. The agent's gRPC port,
/// which coordinators on other nodes dial, stays on every address; a drop-in narrows or widens each.
#[test]
fn metrics_default_to_loopback_and_drop_ins_set_the_addresses() {
    let s = Settings::default();
    assert_eq!(s.agent_metrics, Some("127.0.0.1:9701".parse().unwrap()));
    assert_eq!(s.coordinator_metrics, Some("127.0.0.1:9702".parse().unwrap()));
    assert!(s.agent.listen.is_unspecified());
    let d = tempdir("listen");
    let main = write(&d, "config.toml", "[agent]\nport = 9443\n");
    write(
        &d,
        "config.d/50-net.toml",
        "[agent]\nlisten = \"::1\"\n[metrics]\nagent = \"0.0.0.0:9701\"\ncoordinator = \"\"\n",
    );
    let s = load(Some(&main)).unwrap();
    assert_eq!(s.agent.listen, std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    assert_eq!(s.agent.port, 9443, "the main file's port is kept");
    assert_eq!(s.agent_metrics, Some("0.0.0.0:9701".parse().unwrap()));
    assert_eq!(s.coordinator_metrics, None);
}

/// A refused listen address is placed at its value, named by its key, with what to write.
#[test]
fn a_bad_listen_address_names_line_column_key_and_fix() {
    let e = parse_fragment("[agent]\nport = 7443\nlisten = \"eth0\"\n", Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "c.toml:3:10: `agent.listen` = \"eth0\": must be an IP address of this node (e.g. \"10.0.0.5\"), or \"0.0.0.0\" (\"::\" with IPv6) for all; the port is agent.port"
    );
}

#[test]
fn explicit_missing_file_is_an_error() {
    let e = load(Some(Path::new("/nonexistent/swarm-upgrade.toml"))).unwrap_err().to_string();
    assert!(e.contains("cannot read configuration file /nonexistent/swarm-upgrade.toml"), "{e}");
    assert!(e.ends_with("check the path given to --config"), "{e}");
}

/// The package installs config.toml 0640 root:root: a user who may not read it is told why.
#[test]
fn an_unreadable_file_says_to_run_as_root() {
    let e = ConfigError::Read {
        path: PathBuf::from(DEFAULT_PATH),
        source: std::io::ErrorKind::PermissionDenied.into(),
    };
    let e = e.to_string();
    assert!(
        e.starts_with("cannot read configuration file /etc/swarm-upgrade/config.toml: "),
        "{e}"
    );
    assert!(e.ends_with("run swarm-upgrade as root"), "{e}");
}

#[test]
fn every_section_parses_into_settings() {
    let d = tempdir("full");
    let p = write(
        &d,
        "config.toml",
        r#"
[target]
policy = "latest-patch"
[packages]
engine = ["docker.io"]
companions = ["containerd", "runc"]
[upgrade]
allow_single_manager = true
max_major_skew = 1
min_free_disk = "512MiB"
[nodes]
include_label = "upgrade"
exclude_label = ""
[[windows]]
days = ["sat", "sun"]
start = "22:00"
end = "04:00"
timezone = "Europe/Berlin"
[agent]
listen = "10.0.0.5"
port = 9443
cert = "/c.pem"
key = "/k.pem"
ca = "/ca.pem"
[notify]
webhook = "https://hooks.example.invalid/x"
"#,
    );
    let s = load(Some(&p)).unwrap();
    assert_eq!(s.target, TargetSetting::LatestPatch);
    assert_eq!(s.engine_packages, vec!["docker.io"]);
    assert_eq!(s.companion_packages, vec!["containerd", "runc"]);
    assert!(s.allow_single_manager);
    assert_eq!(s.min_free_disk, 512 << 20);
    assert_eq!(s.include_label, Some(LabelMatch { key: "upgrade".into(), value: None }));
    assert_eq!(s.exclude_label, None);
    assert_eq!(s.windows.len(), 1);
    assert_eq!(s.windows[0].days.len(), 2);
    assert_eq!(s.agent.listen, std::net::IpAddr::from([10, 0, 0, 5]));
    assert_eq!(s.agent.port, 9443);
    assert!(s.agent.custom_tls.is_some());
}

/// The packaged config.toml documents every key, commented out, with the default value: with the
/// comment marks removed it must parse to exactly the defaults.
#[test]
fn packaged_config_lists_the_defaults() {
    let text = include_str!("../../packaging/config.toml");
    // Convention: `#key = value` and `#[section]` (no space after `#`) are settings at their
    // default; `# text` is prose.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let fragment = parse_fragment(&uncommented, Path::new("packaging/config.toml")).unwrap();
    let mut s = Settings::default();
    merge::apply(&mut s, fragment, "packaging/config.toml").unwrap();
    assert_eq!(s, Settings::default());
    assert!(fragment_keys_documented(&uncommented), "every section is documented");
}

fn fragment_keys_documented(text: &str) -> bool {
    [
        "[target]",
        "[packages]",
        "[upgrade]",
        "[nodes]",
        "[timeouts]",
        "[lock]",
        "[agent]",
        "[notify]",
        "[metrics]",
        "[gates]",
        "[hooks]",
    ]
    .iter()
    .all(|s| text.contains(s))
}

#[test]
fn a_window_must_be_shorter_than_its_phase_once_every_file_is_read() {
    let d = tempdir("windows");
    let main = write(&d, "config.toml", "[timeouts]\nwarmup = \"10m\"\n");
    let err = load(Some(&main)).unwrap_err().to_string();
    assert!(
        err.contains("timeouts.warmup") && err.contains("shorter than timeouts.surge (300s)"),
        "{err}"
    );
    // A drop-in that raises the surge limit makes the same file valid: checked after the merge.
    write(&d, "config.d/50-surge.toml", "[timeouts]\nsurge = \"20m\"\n");
    assert_eq!(load(Some(&main)).unwrap().timeouts.warmup, Duration::from_secs(600));
    write(&d, "config.d/60-monitor.toml", "[timeouts]\nmonitor = \"10m\"\n");
    let err = load(Some(&main)).unwrap_err().to_string();
    assert!(err.contains("timeouts.monitor") && err.contains("timeouts.verify"), "{err}");
}

#[test]
fn a_warm_up_of_zero_turns_it_off_and_other_timeouts_stay_positive() {
    let d = tempdir("warmup-zero");
    let main = write(&d, "config.toml", "[timeouts]\nwarmup = \"0s\"\n");
    assert_eq!(load(Some(&main)).unwrap().timeouts.warmup, Duration::ZERO);
    let main = write(&d, "config.toml", "[timeouts]\nmonitor = \"0s\"\n");
    assert!(load(Some(&main)).unwrap_err().to_string().contains("longer than zero"));
}

#[test]
fn parallel_and_zones_are_read_and_a_bad_one_is_named_where_it_is_written() {
    let d = tempdir("parallel");
    let main =
        write(&d, "config.toml", "[upgrade]\nparallel = 4\nzone_label = \"node.labels.zone\"\n");
    let s = load(Some(&main)).unwrap();
    assert_eq!((s.parallel, s.zone_label.as_deref()), (Parallel::Nodes(4), Some("zone")));
    write(&d, "config.d/50-share.toml", "[upgrade]\nparallel = \"10%\"\nzone_label = \"\"\n");
    let s = load(Some(&main)).unwrap();
    assert_eq!((s.parallel, s.zone_label), (Parallel::Percent(10), None));
    for bad in
        ["parallel = 0", "parallel = \"150%\"", "parallel = \"all\"", "zone_label = \"zone=a\""]
    {
        let main = write(&d, "config.toml", &format!("[upgrade]\n{bad}\n"));
        let err = load(Some(&main)).unwrap_err().to_string();
        let key = bad.split(' ').next().unwrap();
        assert!(err.contains("config.toml:2:") && err.contains(key), "{bad}: {err}");
    }
}

#[test]
fn a_canary_s_soak_is_read_turned_off_by_a_later_0s_and_shorter_than_the_hold() {
    let d = tempdir("canary");
    let main = write(&d, "config.toml", "[upgrade]\ncanary = 2\nsoak = \"30m\"\n");
    let s = load(Some(&main)).unwrap();
    assert_eq!((s.canary, s.soak), (2, Some(Duration::from_secs(1800))));
    assert_eq!(s.timeouts.hold, Duration::from_secs(86_400));
    write(&d, "config.d/50-no-soak.toml", "[upgrade]\nsoak = \"0s\"\n");
    assert_eq!(load(Some(&main)).unwrap().soak, None, "a later 0s turns it off");
    write(&d, "config.d/50-no-soak.toml", "[upgrade]\nsoak = \"2h\"\n[timeouts]\nhold = \"1h\"\n");
    let err = load(Some(&main)).unwrap_err().to_string();
    assert!(
        err.contains("upgrade.soak") && err.contains("shorter than timeouts.hold (3600s)"),
        "{err}"
    );
}

#[test]
fn the_alert_gate_is_read_and_bad_gate_keys_are_refused_with_their_fix() {
    let d = tempdir("gates");
    let main = write(
        &d,
        "config.toml",
        "[gates]\nprometheus_url = \"http://prometheus:9090\"\nalert_filter = \"^(Watchdog|InfoInhibitor)$\"\nwait = \"20m\"\n",
    );
    let s = load(Some(&main)).unwrap();
    assert_eq!(s.gates.prometheus_url.as_deref(), Some("http://prometheus:9090"));
    assert_eq!(s.gates.wait, Duration::from_secs(1200));
    assert!(!s.gates.alert_filter.counts("Watchdog") && s.gates.alert_filter.counts("NodeDown"));
    write(&d, "config.d/50-include.toml", "[gates]\nalert_filter_mode = \"include\"\n");
    let s = load(Some(&main)).unwrap();
    assert!(s.gates.alert_filter.counts("Watchdog") && !s.gates.alert_filter.counts("NodeDown"));
    write(&d, "config.d/60-off.toml", "[gates]\nprometheus_url = \"\"\nalert_filter = \"\"\n");
    let err = load(Some(&main)).unwrap_err().to_string();
    assert!(
        err.contains("gates.alert_filter_mode") && err.contains("needs gates.alert_filter"),
        "include without an expression counts nothing: {err}"
    );
    let e = |text: &str| parse_fragment(text, Path::new("g.toml")).unwrap_err().to_string();
    let unknown = e("[gates]\nprometheus = \"http://p:9090\"\n");
    assert!(unknown.starts_with("g.toml:2:1: unknown field `prometheus`"), "{unknown}");
    let regex = e("[gates]\nalert_filter = \"(Watchdog\"\n");
    assert!(
        regex.contains("gates.alert_filter") && regex.contains("is not a regular expression"),
        "{regex}"
    );
    let url = e("[gates]\nprometheus_url = \"prometheus:9090\"\n");
    assert!(url.contains("must be an http:// or https:// URL"), "{url}");
    let mode = e("[gates]\nalert_filter_mode = \"only\"\n");
    assert!(mode.contains("must be \"exclude\" or \"include\""), "{mode}");
    assert!(e("[gates]\nwait = \"0s\"\n").contains("must be longer than zero"));
}

#[test]
fn hooks_are_absolute_commands_with_one_timeout() {
    let d = tempdir("hooks");
    let main = write(
        &d,
        "config.toml",
        "[hooks]\nbefore_drain = \"/etc/swarm-upgrade/hooks/lb-out\"\nafter_verify = \"/etc/swarm-upgrade/hooks/lb-in\"\ntimeout = \"2m\"\n",
    );
    let s = load(Some(&main)).unwrap();
    assert_eq!(s.hooks.before_drain, Some(PathBuf::from("/etc/swarm-upgrade/hooks/lb-out")));
    assert_eq!(s.hooks.on_failure, None);
    assert_eq!(s.hooks.timeout, Duration::from_secs(120));
    write(&d, "config.d/50-off.toml", "[hooks]\nbefore_drain = \"\"\n");
    assert_eq!(load(Some(&main)).unwrap().hooks.before_drain, None, "empty turns it off");
    let e = |text: &str| parse_fragment(text, Path::new("h.toml")).unwrap_err().to_string();
    let relative = e("[hooks]\nafter_verify = \"lb-in\"\n");
    assert!(
        relative.contains("hooks.after_verify") && relative.contains("must be the absolute path"),
        "{relative}"
    );
    let args = e("[hooks]\non_failure = \"/usr/bin/logger failed\"\n");
    assert!(args.contains("put a command line in a script"), "{args}");
    assert!(e("[hooks]\nbefore = \"/x\"\n").starts_with("h.toml:2:1: unknown field `before`"));
}
