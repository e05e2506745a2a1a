//! What a run upgrades to: an engine version (`28.5.2`), which each node's own repository names
//! in its own way (`5:28.5.2-1~debian.13~trixie`, `5:28.5.2-1~ubuntu.24.04~noble`, the older
//! `5:19.03.15~3-0~ubuntu-focal`), or an exact package version, which means exactly that.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::version::{DebVersion, EngineVersion};

/// A run's target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Target {
    /// An engine version: each node installs the package versions its repository has for it.
    Engine(EngineVersion),
    /// An exact package version: every node installs the engine packages at exactly it.
    Package(DebVersion),
}

/// Why a text is not a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a target: {why}; write an engine version such as `28.5.2`, an exact package version as `apt-cache madison docker-ce` shows it such as `5:28.5.2-1~debian.13~trixie`, or a policy (`latest`, `latest-patch`)"
)]
pub struct TargetError {
    text: String,
    why: String,
}

impl Target {
    /// The engine version the target carries.
    pub fn engine_version(&self) -> EngineVersion {
        match self {
            Target::Engine(v) => v.clone(),
            Target::Package(v) => v.engine_version(),
        }
    }

    /// The version of one package that carries this target, among the versions a node's
    /// repository offers of it: for an engine version, the newest release carrying it (a
    /// pre-release such as `28.0.0~rc.1` never stands for `28.0.0`); for a package version,
    /// itself when offered.
    pub fn pick(&self, offered: &[DebVersion]) -> Option<DebVersion> {
        offered.iter().filter(|v| self.is_carried_by(v)).max().cloned()
    }

    /// Whether a package version is this target: the package version itself, or a release
    /// (not a pre-release) carrying the engine version.
    pub fn is_carried_by(&self, version: &DebVersion) -> bool {
        match self {
            Target::Package(v) => v == version,
            Target::Engine(e) => !version.is_prerelease() && &version.engine_version() == e,
        }
    }
}

/// The engine versions a package's offered versions carry (releases only), ascending.
pub fn engine_versions(offered: &[DebVersion]) -> BTreeSet<EngineVersion> {
    offered.iter().filter(|v| !v.is_prerelease()).map(DebVersion::engine_version).collect()
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| TargetError { text: text.to_string(), why: why.to_string() };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            let parts: Vec<&str> = text.split('.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(err(
                    "an engine version has three numbers, major.minor.patch, as `docker version` shows it",
                ));
            }
            return Ok(Target::Engine(EngineVersion::parse_lenient(text)));
        }
        text.parse::<DebVersion>().map(Target::Package).map_err(|e| err(e.why()))
    }
}

/// A stored target (a run record, a lock, a plan): as [`FromStr`], and any other Debian version
/// an older build accepted as an exact package version (`1.0`).
impl TryFrom<String> for Target {
    type Error = TargetError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().or_else(|e| s.parse::<DebVersion>().map(Target::Package).map_err(|_| e))
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Engine(v) => write!(f, "{v}"),
            Target::Package(v) => write!(f, "{v}"),
        }
    }
}
