//! The apt and dpkg command lines the agent runs, as pure functions.

use crate::model::PackageSet;

/// Why packages are installed: a rollback may go down in version, an upgrade may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallMode {
    /// Towards the run's target.
    Upgrade,
    /// Back to the recorded previous set.
    Rollback,
}

/// Options every apt-get run gets: no prompts, old conffiles kept, wait for the dpkg lock instead
/// of failing at once (an unattended-upgrades run may hold it).
fn common() -> Vec<String> {
    [
        "-y",
        "-q",
        "-o",
        "Dpkg::Options::=--force-confold",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "DPkg::Lock::Timeout=300",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

fn pins(set: &PackageSet) -> Vec<String> {
    set.0.iter().map(|(p, v)| format!("{p}={v}")).collect()
}

/// `apt-get install --download-only` of the exact set: fills the cache, changes nothing. apt
/// refuses even a download of a held package without `--allow-change-held-packages`.
pub fn prefetch(set: &PackageSet) -> Vec<String> {
    let mut args = vec!["apt-get".to_string(), "install".into(), "--download-only".into()];
    args.extend(common());
    args.push("--allow-change-held-packages".into());
    args.extend(pins(set));
    args
}

/// One transaction installing the whole set at exact versions. Our own hold is lifted by the
/// transaction itself (`--allow-change-held-packages`), and downgrades are allowed only when
/// rolling back.
pub fn install(set: &PackageSet, mode: InstallMode) -> Vec<String> {
    let mut args = vec!["apt-get".to_string(), "install".into()];
    args.extend(common());
    args.push("--allow-change-held-packages".into());
    if mode == InstallMode::Rollback {
        args.push("--allow-downgrades".into());
    }
    args.extend(pins(set));
    args
}

/// `apt-mark hold`, so unattended upgrades leave the engine alone between runs.
pub fn hold(set: &PackageSet) -> Vec<String> {
    let mut args = vec!["apt-mark".to_string(), "hold".into()];
    args.extend(set.0.keys().cloned());
    args
}

/// Runs `args` in a transient systemd unit, so a restart or crash of the agent (whose cgroup
/// systemd would kill) can never kill dpkg in the middle of a transaction. `--wait --pipe`
/// hands the output and exit status back to the agent while it lives.
/// With a `limit`, systemd ends the unit once it has run that long (`RuntimeMaxSec`): nothing an
/// order starts outlives the coordinator's patience. Its processes then get 5 s after SIGTERM
/// before SIGKILL (`TimeoutStopSec`, 90 s by default): a dpkg stuck in a maintainer script would
/// otherwise hold dpkg's lock well past the limit, and the rollback that follows needs it.
pub(crate) fn in_transient_unit(
    unit: &str,
    args: &[String],
    limit: Option<std::time::Duration>,
) -> Vec<String> {
    let mut out: Vec<String> = [
        "systemd-run",
        "--quiet",
        "--collect",
        "--wait",
        "--pipe",
        "--property=KillMode=mixed",
        "--setenv=DEBIAN_FRONTEND=noninteractive",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    out.push(format!("--unit={unit}"));
    if let Some(limit) = limit {
        out.push(format!("--property=RuntimeMaxSec={}ms", limit.as_millis().max(1)));
        out.push("--property=TimeoutStopSec=5s".into());
    }
    out.push("--".into());
    out.extend(args.iter().cloned());
    out
}

/// A transient unit name for an operation, unique per run and fencing token (so a retried order
/// finds its unit again, and a new coordinator's order gets a new one).
pub(crate) fn unit_name(op: &str, run_id: &str, token: u64) -> String {
    let clean: String =
        run_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    format!("swarm-upgrade-{op}-{clean}-{token}.service")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PackageSet {
        PackageSet(
            [("docker-ce", "5:28.5.2-1~debian.13~trixie"), ("containerd.io", "2.1.9-1")]
                .into_iter()
                .map(|(p, v)| (p.to_string(), v.parse().unwrap()))
                .collect(),
        )
    }

    #[test]
    fn install_pins_every_package_and_allows_downgrades_only_for_rollback() {
        let up = install(&set(), InstallMode::Upgrade);
        assert_eq!(&up[..2], ["apt-get", "install"]);
        assert!(up.ends_with(&[
            "containerd.io=2.1.9-1".to_string(),
            "docker-ce=5:28.5.2-1~debian.13~trixie".to_string()
        ]));
        assert!(up.contains(&"Dpkg::Options::=--force-confold".to_string()));
        assert!(up.contains(&"DPkg::Lock::Timeout=300".to_string()));
        assert!(!up.contains(&"--allow-downgrades".to_string()));
        assert!(install(&set(), InstallMode::Rollback).contains(&"--allow-downgrades".to_string()));
        assert!(prefetch(&set()).contains(&"--download-only".to_string()));
        assert_eq!(hold(&set()), ["apt-mark", "hold", "containerd.io", "docker-ce"]);
    }

    #[test]
    fn transient_units_are_named_per_run_and_token() {
        let u = unit_name("install", "run 2026/11/25", 7);
        assert_eq!(u, "swarm-upgrade-install-run20261125-7.service");
        let cmd = in_transient_unit(&u, &install(&set(), InstallMode::Upgrade), None);
        assert_eq!(cmd[0], "systemd-run");
        let sep = cmd.iter().position(|a| a == "--").unwrap();
        assert_eq!(cmd[sep + 1], "apt-get");
        assert!(cmd[..sep].contains(&format!("--unit={u}")));
        assert!(!cmd.iter().any(|a| a.contains("RuntimeMaxSec")));
        let limited = in_transient_unit(&u, &[], Some(std::time::Duration::from_secs(90)));
        assert!(limited.contains(&"--property=RuntimeMaxSec=90000ms".to_string()), "{limited:?}");
    }
}
