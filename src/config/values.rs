//! Single configuration values, checked while a file is read: serde refuses a bad value, and
//! [`parse_fragment`](super::parse_fragment) reports it with its file, line, column and key.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use serde::Deserialize;
use serde::de::Visitor;

use super::window::parse_day;
use super::{LabelMatch, NodeOrder, StandalonePolicy};
use crate::model::alerts::FilterMode;

/// How a refused value's message starts. serde carries an error from here to the TOML parser as
/// text only, so this is how `parse_fragment` tells a refused value, which it names by its key,
/// from TOML's own errors, whose wording it keeps.
pub(super) const REFUSED: &str = "= ";

/// A refused value: as written, and what is wrong with it or what to write instead.
#[derive(Debug)]
pub struct ValueError {
    value: String,
    problem: String,
}

impl ValueError {
    fn new(value: &dyn fmt::Debug, problem: impl Into<String>) -> Self {
        ValueError { value: format!("{value:?}"), problem: problem.into() }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REFUSED}{}: {}", self.value, self.problem)
    }
}

/// A value with the text it was written as, for the checks after parsing that quote it.
#[derive(Debug)]
pub struct Written<T> {
    /// The parsed value.
    pub value: T,
    /// The text in the file.
    pub text: String,
}

impl<'de, T: TryFrom<String, Error = ValueError>> Deserialize<'de> for Written<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let value = T::try_from(text.clone()).map_err(serde::de::Error::custom)?;
        Ok(Written { value, text })
    }
}

/// Deserializes `T` from a string, refusing it from inside the deserializer. Unlike
/// `#[serde(try_from = "String")]`, whose refusal the parser can only place at the enclosing key,
/// this places it at the value itself: the element of a list rather than the list.
fn from_text<'de, D: serde::Deserializer<'de>, T: TryFrom<String, Error = ValueError>>(
    d: D,
) -> Result<T, D::Error> {
    struct Text<T>(PhantomData<T>);
    impl<T: TryFrom<String, Error = ValueError>> Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            T::try_from(text.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_string(Text(PhantomData))
}

/// The name among `choices` that `text` is; the refusal lists them all.
fn one_of<T: Copy>(text: String, choices: &[(&str, T)]) -> Result<T, ValueError> {
    choices.iter().find(|(name, _)| *name == text).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<String> = choices.iter().map(|(name, _)| format!("{name:?}")).collect();
        ValueError::new(&text, format!("must be {}", names.join(" or ")))
    })
}

/// `target.version`: an engine version, an exact package version, or a policy's name.
#[derive(Debug)]
pub struct TargetVersion(pub super::TargetSetting);

impl TryFrom<String> for TargetVersion {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        text.parse().map(TargetVersion).map_err(|e| ValueError::new(&text, e.to_string()))
    }
}

/// `target.policy`: which version the repository's offer gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TargetPolicy {
    /// `latest`: the newest engine version every selected node offers.
    Latest,
    /// `latest-patch`: the newest engine version of the cluster's lowest installed major.minor.
    LatestPatch,
}

const POLICIES: [(&str, TargetPolicy); 2] =
    [("latest", TargetPolicy::Latest), ("latest-patch", TargetPolicy::LatestPatch)];

impl TargetPolicy {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        POLICIES.iter().find(|(_, p)| *p == self).map(|(name, _)| *name).unwrap_or_default()
    }
}

impl TryFrom<String> for TargetPolicy {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        one_of(text, &POLICIES)
    }
}

// The names `rename_all` gives `NodeOrder` when it is written.
const ORDERS: [(&str, NodeOrder); 2] =
    [("workers-first", NodeOrder::WorkersFirst), ("managers-first", NodeOrder::ManagersFirst)];

impl TryFrom<String> for NodeOrder {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        one_of(text, &ORDERS)
    }
}

const STANDALONE: [(&str, StandalonePolicy); 2] =
    [("allow", StandalonePolicy::Allow), ("refuse", StandalonePolicy::Refuse)];

impl TryFrom<String> for StandalonePolicy {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        one_of(text, &STANDALONE)
    }
}

/// A Debian package name.
#[derive(Debug)]
pub struct PackageName(pub String);

impl<'de> Deserialize<'de> for PackageName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

impl TryFrom<String> for PackageName {
    type Error = ValueError;
    fn try_from(n: String) -> Result<Self, ValueError> {
        if !crate::model::is_package_name(&n) {
            return Err(ValueError::new(
                &n,
                "not a Debian package name (lower-case letters, digits, `+`, `-`, `.`)",
            ));
        }
        Ok(PackageName(n))
    }
}

/// `packages.engine`: at least one package.
#[derive(Debug, Deserialize)]
#[serde(try_from = "Vec<PackageName>")]
pub struct EnginePackages(pub Vec<String>);

impl TryFrom<Vec<PackageName>> for EnginePackages {
    type Error = ValueError;
    fn try_from(names: Vec<PackageName>) -> Result<Self, ValueError> {
        if names.is_empty() {
            return Err(ValueError::new(
                &names,
                "list at least the engine package, e.g. [\"docker-ce\", \"docker-ce-cli\"]",
            ));
        }
        Ok(EnginePackages(names.into_iter().map(|n| n.0).collect()))
    }
}

/// A size in bytes, written such as `512MiB`, `2GiB`, `1GB` or a plain byte count.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Size(pub u64);

impl TryFrom<String> for Size {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        parse_size(&text)
            .map(Size)
            .ok_or_else(|| ValueError::new(&text, "write a size such as \"512MiB\" or \"2GiB\""))
    }
}

fn parse_size(text: &str) -> Option<u64> {
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

/// A duration longer than zero, written such as `90s`, `10m` or `1h 30m`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct PositiveDuration(pub Duration);

impl TryFrom<String> for PositiveDuration {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        parse_duration(&text)
            .map(PositiveDuration)
            .map_err(|problem| ValueError::new(&text, problem))
    }
}

/// A duration of zero or more (zero turns off what it times), written such as `0s` or `4s`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct NonNegativeDuration(pub Duration);

impl TryFrom<String> for NonNegativeDuration {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        parse_any_duration(&text)
            .map(NonNegativeDuration)
            .map_err(|problem| ValueError::new(&text, problem))
    }
}

fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    match parse_any_duration(text)? {
        d if d.is_zero() => Err("must be longer than zero"),
        d => Ok(d),
    }
}

fn parse_any_duration(text: &str) -> Result<Duration, &'static str> {
    let d: jiff::SignedDuration =
        text.parse().map_err(|_| "write a duration such as \"90s\", \"10m\" or \"1h 30m\"")?;
    Duration::try_from(d).map_err(|_| "must not be negative")
}

/// A node label selector; empty means none.
#[derive(Debug, Deserialize)]
#[serde(from = "String")]
pub struct Label(pub Option<LabelMatch>);

impl From<String> for Label {
    fn from(text: String) -> Self {
        Label(LabelMatch::parse(&text))
    }
}

/// `upgrade.zone_label`: a node label's key, written `zone` or as in a placement constraint,
/// `node.labels.zone`; empty means none.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct ZoneLabel(pub Option<String>);

impl TryFrom<String> for ZoneLabel {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        let key = text.trim();
        let key = key.strip_prefix("node.labels.").unwrap_or(key);
        if key.contains(['=', ' ']) {
            return Err(ValueError::new(
                &text,
                "write the label's key only, e.g. \"zone\" or \"node.labels.zone\"",
            ));
        }
        Ok(ZoneLabel((!key.is_empty()).then(|| key.to_string())))
    }
}

/// A week day, written `mon` .. `sun` (or in full).
#[derive(Debug)]
pub struct Day(pub Weekday);

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

impl TryFrom<String> for Day {
    type Error = ValueError;
    fn try_from(name: String) -> Result<Self, ValueError> {
        parse_day(&name).map(Day).ok_or_else(|| {
            ValueError::new(&name, "day names are mon, tue, wed, thu, fri, sat, sun")
        })
    }
}

/// A local time of day, written `HH:MM`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct LocalTime(pub Time);

impl TryFrom<String> for LocalTime {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        text.parse()
            .map(LocalTime)
            .map_err(|_| ValueError::new(&text, "write a local time as \"HH:MM\", e.g. \"02:00\""))
    }
}

/// The IANA name of a time zone this machine knows.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct TimeZoneName(pub String);

impl TryFrom<String> for TimeZoneName {
    type Error = ValueError;
    fn try_from(name: String) -> Result<Self, ValueError> {
        if jiff::tz::TimeZone::get(&name).is_err() {
            let problem = "not a known IANA time zone (e.g. \"Europe/Berlin\"); is the tzdata package installed?";
            return Err(ValueError::new(&name, problem));
        }
        Ok(TimeZoneName(name))
    }
}

/// A TCP port to listen on (not 0).
#[derive(Debug, Deserialize)]
#[serde(try_from = "u16")]
pub struct Port(pub u16);

impl TryFrom<u16> for Port {
    type Error = ValueError;
    fn try_from(port: u16) -> Result<Self, ValueError> {
        if port == 0 {
            return Err(ValueError::new(&port, "must be a TCP port between 1 and 65535"));
        }
        Ok(Port(port))
    }
}

/// An http(s) URL (a webhook, a Prometheus); empty means none.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(pub Option<String>);

impl TryFrom<String> for HttpUrl {
    type Error = ValueError;
    fn try_from(url: String) -> Result<Self, ValueError> {
        if url.is_empty() {
            Ok(HttpUrl(None))
        } else if (url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(&url).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
        {
            Ok(HttpUrl(Some(url)))
        } else {
            Err(ValueError::new(&url, "must be an http:// or https:// URL with a host, or empty"))
        }
    }
}

/// A hook's command: an absolute path (run as it is, without a shell); empty means none.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct HookCommand(pub Option<std::path::PathBuf>);

impl TryFrom<String> for HookCommand {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Ok(HookCommand(None));
        }
        if !text.starts_with('/') || text.contains(char::is_whitespace) {
            return Err(ValueError::new(
                &text,
                "must be the absolute path of an executable (run without a shell and without arguments: put a command line in a script), or empty for none",
            ));
        }
        Ok(HookCommand(Some(text.into())))
    }
}

/// A regular expression on alert names (`gates.alert_filter`); empty means none.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct AlertPattern(pub Option<regex::Regex>);

impl TryFrom<String> for AlertPattern {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Ok(AlertPattern(None));
        }
        regex::Regex::new(&text).map(|re| AlertPattern(Some(re))).map_err(|e| {
            let why = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            ValueError::new(
                &text,
                format!(
                    "is not a regular expression ({why}); write one in Rust's regex syntax, e.g. \"^(Watchdog|InfoInhibitor)$\""
                ),
            )
        })
    }
}

const FILTER_MODES: [(&str, FilterModeName); 2] = [
    ("exclude", FilterModeName(FilterMode::Exclude)),
    ("include", FilterModeName(FilterMode::Include)),
];

/// `gates.alert_filter_mode`: `exclude` or `include`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FilterModeName(pub FilterMode);

impl TryFrom<String> for FilterModeName {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        one_of(text, &FILTER_MODES)
    }
}

/// The IP address the agent binds (its port is `agent.port`, which the coordinator dials).
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenIp(pub IpAddr);

impl TryFrom<String> for ListenIp {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        text.parse().map(ListenIp).map_err(|_| {
            ValueError::new(
                &text,
                "must be an IP address of this node (e.g. \"10.0.0.5\"), or \"0.0.0.0\" (\"::\" with IPv6) for all; the port is agent.port",
            )
        })
    }
}

/// Where to serve /metrics, `ip:port`; empty means not at all.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddr(pub Option<SocketAddr>);

impl TryFrom<String> for ListenAddr {
    type Error = ValueError;
    fn try_from(text: String) -> Result<Self, ValueError> {
        if text.is_empty() {
            return Ok(ListenAddr(None));
        }
        text.parse().map(|a| ListenAddr(Some(a))).map_err(|_| {
            ValueError::new(
                &text,
                "must be host:port with an IP address (e.g. \"127.0.0.1:9701\", or \"0.0.0.0:9701\" for all addresses), or empty for none",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("2 TiB"), None);
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Err("must be longer than zero"));
        assert_eq!(parse_any_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_any_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_any_duration("-4s"), Err("must not be negative"));
    }

    #[test]
    fn a_refusal_quotes_the_value_and_lists_the_names() {
        let e = NodeOrder::try_from("random".to_string()).unwrap_err();
        assert_eq!(e.to_string(), "= \"random\": must be \"workers-first\" or \"managers-first\"");
        assert_eq!(TargetPolicy::LatestPatch.name(), "latest-patch");
    }

    #[test]
    fn orders_are_read_by_the_names_they_are_written_with() {
        for (name, order) in ORDERS {
            assert_eq!(serde_json::to_value(order).unwrap(), name);
        }
    }
}
