//! Applies one parsed file over the settings so far. Each value was checked as it was read (see
//! [`super::values`]); what is left here are the rules between keys, and between this file and
//! the settings so far.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use super::fragments::*;
use super::values::{PackageName, PositiveDuration, TargetPolicy, Written};
use super::window::{EVERY_DAY, Window};
use super::{AgentSettings, ConfigError, CustomTls, Settings, TargetSetting, Timeouts};

/// Applies `f` (read from `path`) over `s`.
pub fn apply(s: &mut Settings, f: Fragment, path: &str) -> Result<(), ConfigError> {
    // Taken apart so that a section added to `Fragment` cannot be forgotten here.
    let Fragment {
        target,
        packages,
        upgrade,
        nodes,
        timeouts,
        lock,
        windows,
        agent,
        notify,
        metrics,
        gates,
        hooks,
    } = f;
    if let Some(t) = target {
        apply_target(s, t, path)?;
    }
    if let Some(p) = packages {
        apply_packages(s, p, path)?;
    }
    if let Some(u) = upgrade {
        apply_upgrade(s, u, path)?;
    }
    if let Some(n) = nodes {
        set(&mut s.include_label, n.include_label.map(|l| l.0));
        set(&mut s.exclude_label, n.exclude_label.map(|l| l.0));
    }
    if let Some(t) = timeouts {
        apply_timeouts(&mut s.timeouts, t);
    }
    if let Some(lease) = lock.and_then(|l| l.lease) {
        s.lease = checked_lease(lease, path)?;
    }
    if let Some(ws) = windows {
        s.windows = ws
            .into_iter()
            .enumerate()
            .map(|(i, w)| window(i, w, path))
            .collect::<Result<_, _>>()?;
    }
    if let Some(a) = agent {
        apply_agent(&mut s.agent, a, path)?;
    }
    if let Some(url) = notify.and_then(|n| n.webhook) {
        s.webhook = url.0;
    }
    if let Some(m) = metrics {
        set(&mut s.agent_metrics, m.agent.map(|a| a.0));
        set(&mut s.coordinator_metrics, m.coordinator.map(|a| a.0));
    }
    if let Some(g) = gates {
        let gates = &mut s.gates;
        set(&mut gates.prometheus_url, g.prometheus_url.map(|u| u.0));
        set(&mut gates.alert_filter.pattern, g.alert_filter.map(|p| p.0));
        set(&mut gates.alert_filter.mode, g.alert_filter_mode.map(|m| m.0));
        set(&mut gates.wait, g.wait.map(|w| w.0));
    }
    if let Some(h) = hooks {
        let hooks = &mut s.hooks;
        set(&mut hooks.before_drain, h.before_drain.map(|c| c.0));
        set(&mut hooks.after_verify, h.after_verify.map(|c| c.0));
        set(&mut hooks.on_failure, h.on_failure.map(|c| c.0));
        set(&mut hooks.timeout, h.timeout.map(|t| t.0));
    }
    Ok(())
}

/// A value that breaks a rule between keys; `value` is quoted as `Debug` writes it.
fn invalid(path: &str, key: &str, value: &dyn Debug, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        key: key.to_string(),
        value: format!("{value:?}"),
        problem: problem.to_string(),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// `[target]`: a version or a policy, not both.
fn apply_target(s: &mut Settings, t: TargetFragment, path: &str) -> Result<(), ConfigError> {
    match (t.version, t.policy) {
        (Some(v), Some(p)) => {
            let both = format!("version {:?}, policy {:?}", v.text, p.name());
            return Err(invalid(
                path,
                "target",
                &both,
                "set either target.version or target.policy, not both",
            ));
        }
        (Some(v), None) => s.target = v.value.0,
        (None, Some(TargetPolicy::Latest)) => s.target = TargetSetting::Latest,
        (None, Some(TargetPolicy::LatestPatch)) => s.target = TargetSetting::LatestPatch,
        (None, None) => {}
    }
    Ok(())
}

/// `[packages]`: no package is in two of the lists, whichever file set each.
fn apply_packages(s: &mut Settings, p: PackagesFragment, path: &str) -> Result<(), ConfigError> {
    let names = |c: Vec<PackageName>| c.into_iter().map(|n| n.0).collect();
    set(&mut s.engine_packages, p.engine.map(|e| e.0));
    set(&mut s.companion_packages, p.companions.map(names));
    let plugins_written = p.plugins.is_some();
    set(&mut s.plugin_packages, p.plugins.map(names));
    if let Some(both) = s.engine_packages.iter().find(|p| s.companion_packages.contains(p)) {
        return Err(invalid(
            path,
            "packages.companions",
            both,
            "a package is either an engine package or a companion, not both",
        ));
    }
    let listed = |p: &String| s.engine_packages.contains(p) || s.companion_packages.contains(p);
    if !plugins_written {
        // The default plugins (or an earlier file's) give way to a package this file lists as
        // an engine package or a companion, as configurations written before plugins did.
        let kept: Vec<String> = s.plugin_packages.iter().filter(|p| !listed(p)).cloned().collect();
        s.plugin_packages = kept;
    }
    if let Some(both) = s.plugin_packages.iter().find(|p| listed(p)) {
        return Err(invalid(
            path,
            "packages.plugins",
            both,
            "a plugin is upgraded where it is installed: remove it from packages.engine or packages.companions, or from packages.plugins",
        ));
    }
    Ok(())
}

fn apply_upgrade(s: &mut Settings, u: UpgradeFragment, path: &str) -> Result<(), ConfigError> {
    if u.backup_keep == Some(0) {
        return Err(invalid(
            path,
            "upgrade.backup_keep",
            &0,
            "must be at least 1 (the archive just taken); to take none, set upgrade.backup_managers = false",
        ));
    }
    set(&mut s.order, u.order);
    set(&mut s.surge, u.surge);
    set(&mut s.parallel, u.parallel);
    set(&mut s.zone_label, u.zone_label.map(|z| z.0));
    set(&mut s.allow_single_manager, u.allow_single_manager);
    set(&mut s.allow_downgrade, u.allow_downgrade);
    set(&mut s.max_major_skew, u.max_major_skew);
    set(&mut s.min_free_disk, u.min_free_disk.map(|d| d.0));
    set(&mut s.standalone, u.standalone);
    set(&mut s.backup_managers, u.backup_managers);
    set(&mut s.backup_keep, u.backup_keep);
    set(&mut s.canary, u.canary);
    // ("0s" in a later file turns an earlier file's soak off.)
    set(&mut s.soak, u.soak.map(|d| Some(d.0).filter(|d| !d.is_zero())));
    Ok(())
}

fn apply_timeouts(t: &mut Timeouts, f: TimeoutsFragment) {
    // Taken apart so that a timeout added to `TimeoutsFragment` cannot be forgotten here.
    let TimeoutsFragment {
        prefetch,
        availability,
        surge,
        warmup,
        migrate,
        upgrade,
        restart,
        ready,
        verify,
        monitor,
        rollback,
        rejoin,
        hold,
    } = f;
    let slots = [
        (&mut t.prefetch, prefetch),
        (&mut t.availability, availability),
        (&mut t.surge, surge),
        (&mut t.migrate, migrate),
        (&mut t.upgrade, upgrade),
        (&mut t.restart, restart),
        (&mut t.ready, ready),
        (&mut t.verify, verify),
        (&mut t.monitor, monitor),
        (&mut t.rollback, rollback),
        (&mut t.rejoin, rejoin),
        (&mut t.hold, hold),
    ];
    for (slot, value) in slots {
        set(slot, value.map(|d: PositiveDuration| d.0));
    }
    set(&mut t.warmup, warmup.map(|d| d.0));
}

/// The rules between timeouts, checked once every file is merged (a later file may set either
/// key): a window held within a phase must be shorter than that phase's limit, or every node
/// fails the phase. `files` names the configuration read.
pub fn check_merged(s: &Settings, files: &str) -> Result<(), ConfigError> {
    let t = &s.timeouts;
    let soak = ("upgrade.soak", s.soak.unwrap_or_default(), "timeouts.hold", t.hold);
    let pairs = [
        ("timeouts.warmup", t.warmup, "timeouts.surge", t.surge),
        ("timeouts.monitor", t.monitor, "timeouts.verify", t.verify),
    ]
    .into_iter()
    .chain(s.soak.is_some().then_some(soak));
    let f = &s.gates.alert_filter;
    if f.mode == crate::model::alerts::FilterMode::Include && f.pattern.is_none() {
        return Err(invalid(
            files,
            "gates.alert_filter_mode",
            &"include",
            "needs gates.alert_filter: with no expression, include would count no alert at all; write the alerts that hold a run in gates.alert_filter, or use \"exclude\"",
        ));
    }
    for (key, window, limit_key, limit) in pairs {
        if window >= limit {
            return Err(invalid(
                files,
                key,
                &humantime(window),
                &format!(
                    "must be shorter than {limit_key} ({}): the phase would time out on every node; shorten it or raise {limit_key}",
                    humantime(limit)
                ),
            ));
        }
    }
    Ok(())
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// `lock.lease`, which must outlast a leader election.
fn checked_lease(lease: Written<PositiveDuration>, path: &str) -> Result<Duration, ConfigError> {
    if lease.value.0 < Duration::from_secs(30) {
        return Err(invalid(
            path,
            "lock.lease",
            &lease.text,
            "must be at least 30s: it cannot be renewed while the swarm elects a leader, and the leader's own engine restart took up to 18 s in the lab",
        ));
    }
    Ok(lease.value.0)
}

/// One `[[windows]]` entry: it needs a start and an end, and they differ.
fn window(i: usize, w: WindowFragment, path: &str) -> Result<Window, ConfigError> {
    let key = |k: &str| format!("windows[{i}].{k}");
    let missing = |k: &str| {
        invalid(path, &key(k), &"(missing)", "every window needs start and end as \"HH:MM\"")
    };
    let start = w.start.ok_or_else(|| missing("start"))?.0;
    let end = w.end.ok_or_else(|| missing("end"))?.0;
    if start == end {
        return Err(invalid(
            path,
            &key("end"),
            &end.to_string(),
            "equals start: the window would be empty",
        ));
    }
    let days: Vec<_> = w.days.unwrap_or_default().into_iter().map(|d| d.0).collect();
    let days = if days.is_empty() { EVERY_DAY.to_vec() } else { days };
    let timezone = w.timezone.map_or_else(|| "UTC".to_string(), |tz| tz.0);
    Ok(Window { days, start, end, timezone })
}

/// `[agent]`: operator TLS material comes as all three files or none.
fn apply_agent(a: &mut AgentSettings, f: AgentFragment, path: &str) -> Result<(), ConfigError> {
    set(&mut a.listen, f.listen.map(|l| l.0));
    set(&mut a.port, f.port.map(|p| p.0));
    set(&mut a.certificates_dir, f.certificates_dir.map(PathBuf::from));
    set(&mut a.insecure, f.insecure);
    set(&mut a.state_dir, f.state_dir.map(PathBuf::from));
    if let Some(file) = f.unlock_key_file {
        a.unlock_key_file = (!file.is_empty()).then(|| PathBuf::from(file));
    }
    match (f.cert, f.key, f.ca) {
        (None, None, None) => {}
        (Some(cert), Some(key), Some(ca)) => {
            a.custom_tls = Some(CustomTls { cert: cert.into(), key: key.into(), ca: ca.into() })
        }
        other => {
            return Err(invalid(
                path,
                "agent.cert/key/ca",
                &other,
                "give all three of agent.cert, agent.key and agent.ca, or none",
            ));
        }
    }
    Ok(())
}
