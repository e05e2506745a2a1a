//! Applies one parsed file over the settings so far, validating each value it sets.

use std::time::Duration;

use super::fragments::*;
use super::window::{Window, parse_day};
use super::{ConfigError, CustomTls, LabelMatch, NodeOrder, Settings, TargetSetting};

/// Applies `f` (read from `path`) over `s`.
pub fn apply(s: &mut Settings, f: Fragment, path: &str) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: &dyn std::fmt::Debug, problem: &str| ConfigError::Invalid {
        path: path.to_string(),
        key: key.to_string(),
        value: format!("{value:?}"),
        problem: problem.to_string(),
    };
    if let Some(t) = f.target {
        match (t.version, t.policy) {
            (Some(v), Some(p)) => {
                return Err(invalid(
                    "target",
                    &format!("version {v:?}, policy {p:?}"),
                    "set either target.version or target.policy, not both",
                ));
            }
            (Some(v), None) => {
                let version = v.parse().map_err(|e| invalid("target.version", &v, &format!("{e}")))?;
                s.target = TargetSetting::Exact(version);
            }
            (None, Some(p)) => {
                s.target = match p.as_str() {
                    "latest" => TargetSetting::Latest,
                    "latest-patch" => TargetSetting::LatestPatch,
                    _ => return Err(invalid("target.policy", &p, "must be \"latest\" or \"latest-patch\"")),
                }
            }
            (None, None) => {}
        }
    }
    if let Some(p) = f.packages {
        if let Some(engine) = p.engine {
            if engine.is_empty() {
                return Err(invalid(
                    "packages.engine",
                    &engine,
                    "list at least the engine package, e.g. [\"docker-ce\", \"docker-ce-cli\"]",
                ));
            }
            check_package_names("packages.engine", &engine).map_err(|(v, why)| invalid("packages.engine", &v, why))?;
            s.engine_packages = engine;
        }
        if let Some(c) = p.companions {
            check_package_names("packages.companions", &c).map_err(|(v, why)| invalid("packages.companions", &v, why))?;
            s.companion_packages = c;
        }
        if let Some(both) = s.engine_packages.iter().find(|p| s.companion_packages.contains(p)) {
            return Err(invalid("packages.companions", &both, "a package is either an engine package or a companion, not both"));
        }
    }
    if let Some(u) = f.upgrade {
        if let Some(o) = u.order {
            s.order = match o.as_str() {
                "workers-first" => NodeOrder::WorkersFirst,
                "managers-first" => NodeOrder::ManagersFirst,
                _ => return Err(invalid("upgrade.order", &o, "must be \"workers-first\" or \"managers-first\"")),
            };
        }
        set(&mut s.surge, u.surge);
        set(&mut s.allow_single_manager, u.allow_single_manager);
        set(&mut s.allow_downgrade, u.allow_downgrade);
        set(&mut s.max_major_skew, u.max_major_skew);
        if let Some(d) = u.min_free_disk {
            s.min_free_disk =
                parse_size(&d).ok_or_else(|| invalid("upgrade.min_free_disk", &d, "write a size such as \"512MiB\" or \"2GiB\""))?;
        }
    }
    if let Some(n) = f.nodes {
        if let Some(l) = n.include_label {
            s.include_label = label(&l);
        }
        if let Some(l) = n.exclude_label {
            s.exclude_label = label(&l);
        }
    }
    if let Some(t) = f.timeouts {
        let timeouts = &mut s.timeouts;
        let slots: [(&str, Option<String>, &mut Duration); 11] = [
            ("prefetch", t.prefetch, &mut timeouts.prefetch),
            ("availability", t.availability, &mut timeouts.availability),
            ("surge", t.surge, &mut timeouts.surge),
            ("migrate", t.migrate, &mut timeouts.migrate),
            ("upgrade", t.upgrade, &mut timeouts.upgrade),
            ("restart", t.restart, &mut timeouts.restart),
            ("ready", t.ready, &mut timeouts.ready),
            ("verify", t.verify, &mut timeouts.verify),
            ("monitor", t.monitor, &mut timeouts.monitor),
            ("rollback", t.rollback, &mut timeouts.rollback),
            ("rejoin", t.rejoin, &mut timeouts.rejoin),
        ];
        for (name, value, slot) in slots {
            if let Some(v) = value {
                let key = format!("timeouts.{name}");
                *slot = parse_duration(&v).map_err(|why| invalid(&key, &v, why))?;
            }
        }
    }
    if let Some(l) = f.lock
        && let Some(v) = l.lease
    {
        let lease = parse_duration(&v).map_err(|why| invalid("lock.lease", &v, why))?;
        if lease < Duration::from_secs(30) {
            return Err(invalid(
                "lock.lease",
                &v,
                "must be at least 30s: it cannot be renewed while the swarm elects a leader, and the leader's own engine restart took up to 18 s in the lab",
            ));
        }
        s.lease = lease;
    }
    if let Some(ws) = f.windows {
        s.windows = ws.into_iter().enumerate().map(|(i, w)| window(i, w, &invalid)).collect::<Result<_, _>>()?;
    }
    if let Some(a) = f.agent {
        if let Some(p) = a.port {
            if p == 0 {
                return Err(invalid("agent.port", &p, "must be a TCP port between 1 and 65535"));
            }
            s.agent.port = p;
        }
        if let Some(d) = a.certificates_dir {
            s.agent.certificates_dir = d.into();
        }
        set(&mut s.agent.insecure, a.insecure);
        if let Some(d) = a.state_dir {
            s.agent.state_dir = d.into();
        }
        match (a.cert, a.key, a.ca) {
            (None, None, None) => {}
            (Some(cert), Some(key), Some(ca)) => s.agent.custom_tls = Some(CustomTls { cert: cert.into(), key: key.into(), ca: ca.into() }),
            other => return Err(invalid("agent.cert/key/ca", &other, "give all three of agent.cert, agent.key and agent.ca, or none")),
        }
    }
    if let Some(n) = f.notify
        && let Some(url) = n.webhook
    {
        if url.is_empty() {
            s.webhook = None;
        } else if url.starts_with("http://") || url.starts_with("https://") {
            s.webhook = Some(url);
        } else {
            return Err(invalid("notify.webhook", &url, "must be an http:// or https:// URL, or empty"));
        }
    }
    if let Some(m) = f.metrics {
        let addr = |key: &str, v: String| -> Result<Option<std::net::SocketAddr>, ConfigError> {
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| invalid(key, &v, "must be host:port with an IP address (e.g. \"0.0.0.0:9701\"), or empty for none"))
        };
        if let Some(v) = m.agent {
            s.agent_metrics = addr("metrics.agent", v)?;
        }
        if let Some(v) = m.coordinator {
            s.coordinator_metrics = addr("metrics.coordinator", v)?;
        }
    }
    Ok(())
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn label(text: &str) -> Option<LabelMatch> {
    LabelMatch::parse(text)
}

fn check_package_names(_key: &str, names: &[String]) -> Result<(), (String, &'static str)> {
    for n in names {
        let ok = n.len() >= 2
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !ok {
            return Err((n.clone(), "not a Debian package name (lower-case letters, digits, `+`, `-`, `.`)"));
        }
    }
    Ok(())
}

/// Parses a positive duration such as `90s`, `10m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let d: jiff::SignedDuration = text.parse().map_err(|_| "write a duration such as \"90s\", \"10m\" or \"1h 30m\"")?;
    if d.is_negative() || d.is_zero() {
        return Err("must be longer than zero");
    }
    Duration::try_from(d).map_err(|_| "must be longer than zero")
}

/// Parses a size such as `512MiB`, `2GiB`, `1GB` or a plain byte count.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn window(i: usize, w: WindowFragment, invalid: &dyn Fn(&str, &dyn std::fmt::Debug, &str) -> ConfigError) -> Result<Window, ConfigError> {
    let key = |k: &str| format!("windows[{i}].{k}");
    let days = match w.days {
        None => Vec::new(),
        Some(d) => d
            .iter()
            .map(|name| parse_day(name).ok_or_else(|| invalid(&key("days"), name, "day names are mon, tue, wed, thu, fri, sat, sun")))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let days = if days.is_empty() { all_days() } else { days };
    let time = |k: &str, v: Option<String>| -> Result<jiff::civil::Time, ConfigError> {
        let v = v.ok_or_else(|| invalid(&key(k), &"(missing)", "every window needs start and end as \"HH:MM\""))?;
        v.parse().map_err(|_| invalid(&key(k), &v, "write a local time as \"HH:MM\", e.g. \"02:00\""))
    };
    let start = time("start", w.start)?;
    let end = time("end", w.end)?;
    let timezone = w.timezone.unwrap_or_else(|| "UTC".into());
    if jiff::tz::TimeZone::get(&timezone).is_err() {
        return Err(invalid(
            &key("timezone"),
            &timezone,
            "not a known IANA time zone (e.g. \"Europe/Berlin\"); is the tzdata package installed?",
        ));
    }
    if start == end {
        return Err(invalid(&key("end"), &end.to_string(), "equals start: the window would be empty"));
    }
    Ok(Window { days, start, end, timezone })
}

fn all_days() -> Vec<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    vec![Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday]
}
