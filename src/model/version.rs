//! Debian package versions (`[epoch:]upstream[-revision]`) and the engine versions derived from them.
//!
//! Comparison follows dpkg's `verrevcmp` exactly: `~` sorts before everything, even the end of the
//! string; letters sort before other characters; digit runs compare numerically.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Debian package version such as `5:28.5.2-1~debian.13~trixie`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DebVersion {
    epoch: u32,
    upstream: String,
    revision: String,
}

/// Why a text is not a Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a Debian package version ({why}); write it as apt shows it, e.g. `5:28.5.2-1~debian.13~trixie` (see `apt-cache madison docker-ce`)"
)]
pub struct VersionError {
    text: String,
    why: &'static str,
}

impl VersionError {
    /// What is wrong with the text, without the advice.
    pub fn why(&self) -> &'static str {
        self.why
    }
}

/// Words that mark a pre-release in an upstream version (`28.0.0~rc.1`, `19.03.0~3-0~beta1`,
/// `18.09.0~tp4`): an engine version never stands for them.
const PRERELEASE: [&str; 5] = ["rc", "beta", "alpha", "tp", "dev"];

impl DebVersion {
    /// Whether this is a pre-release of its engine version: a word after the leading numbers
    /// starts with `rc`, `beta`, `alpha`, `tp` or `dev` (`+dfsg1`, `~ce~3` and `~3` do not).
    pub fn is_prerelease(&self) -> bool {
        let rest = self.upstream.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        rest.split(|c: char| !c.is_ascii_alphabetic())
            .any(|w| PRERELEASE.iter().any(|p| w.to_ascii_lowercase().starts_with(p)))
    }

    /// The upstream part, between the epoch and the last `-`.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The engine version this package version carries, as `docker version` reports it:
    /// the upstream part up to the first character that is neither a digit nor a dot
    /// (`5:28.5.2-1~debian.13~trixie` and `26.1.5+dfsg1-9` give `28.5.2` and `26.1.5`).
    pub fn engine_version(&self) -> EngineVersion {
        EngineVersion::parse_lenient(&self.upstream)
    }
}

impl FromStr for DebVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why| VersionError { text: text.to_string(), why };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(err("it contains white space"));
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => {
                let epoch =
                    e.parse::<u32>().map_err(|_| err("the epoch before `:` is not a number"))?;
                (epoch, rest)
            }
            None => (0, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(err("the upstream version is empty"));
        }
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("the upstream version must start with a digit"));
        }
        let allowed_up = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(allowed_up) {
            return Err(err("the upstream version has a character dpkg does not allow"));
        }
        if rest.contains('-') && revision.is_empty() {
            return Err(err("the revision after the last `-` is empty"));
        }
        if !revision.chars().all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c)) {
            return Err(err("the revision has a character dpkg does not allow"));
        }
        Ok(DebVersion { epoch, upstream: upstream.to_string(), revision: revision.to_string() })
    }
}

impl TryFrom<String> for DebVersion {
    type Error = VersionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DebVersion> for String {
    fn from(v: DebVersion) -> String {
        v.to_string()
    }
}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's character weight: `~` lowest, end of string next, letters before other characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = a[i] as i32 - b[j] as i32;
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

/// An engine version as the Docker API reports it (`28.5.2`), compared numerically.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct EngineVersion(Vec<u32>);

impl EngineVersion {
    /// Reads the leading `N.N.N` of a text; missing parts count as 0 and the rest is ignored.
    pub(crate) fn parse_lenient(text: &str) -> Self {
        let head: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        EngineVersion(
            head.split('.')
                .filter(|p| !p.is_empty())
                .map(|p| p.parse().unwrap_or(u32::MAX))
                .collect(),
        )
    }

    /// The major version (`28` for `28.5.2`).
    pub(crate) fn major(&self) -> u32 {
        self.0.first().copied().unwrap_or(0)
    }

    /// The minor version (`5` for `28.5.2`).
    pub(crate) fn minor(&self) -> u32 {
        self.0.get(1).copied().unwrap_or(0)
    }
}

impl From<String> for EngineVersion {
    fn from(s: String) -> Self {
        EngineVersion::parse_lenient(&s)
    }
}

impl From<EngineVersion> for String {
    fn from(v: EngineVersion) -> String {
        v.to_string()
    }
}

impl fmt::Display for EngineVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        s.parse().unwrap()
    }

    /// Orderings as `dpkg --compare-versions A lt B` answers them (each pair checked with dpkg 1.21).
    #[test]
    fn orders_like_dpkg() {
        let ascending = [
            "1.0~rc1",
            "1.0",
            "1.0-1",
            "1.0-1+b1",
            "1.0a",
            "1.0+dfsg1",
            "1.0.1",
            "1.10",
            "20.10.24+dfsg1-1",
            "26.1.5+dfsg1-9",
            "5:26.1.5-1~debian.13~trixie",
            "5:28.5.2-1~debian.12~bookworm",
            "5:28.5.2-1~debian.13~trixie",
            "5:28.5.3-1~debian.13~trixie",
            "5:28.10.0-1~debian.13~trixie",
        ];
        for pair in ascending.windows(2) {
            assert_eq!(v(pair[0]).cmp(&v(pair[1])), Ordering::Less, "{} < {}", pair[0], pair[1]);
            assert_eq!(v(pair[1]).cmp(&v(pair[0])), Ordering::Greater, "{} > {}", pair[1], pair[0]);
        }
        assert_eq!(v("1.0-1~").cmp(&v("1.0-1")), Ordering::Less);
        assert_eq!(v("0:1.0").cmp(&v("1.0")), Ordering::Equal);
        assert_eq!(v("1.001").cmp(&v("1.1")), Ordering::Equal);
        assert_eq!(v("1.0").cmp(&v("1.0-0")), Ordering::Equal, "an absent revision equals 0");
    }

    #[test]
    fn round_trips_and_derives_engine_version() {
        let t = v("5:28.5.2-1~debian.13~trixie");
        assert_eq!(t.to_string(), "5:28.5.2-1~debian.13~trixie");
        assert_eq!(t.engine_version().to_string(), "28.5.2");
        assert_eq!(v("26.1.5+dfsg1-9").engine_version().to_string(), "26.1.5");
        assert_eq!(v("1.2-3-4").upstream(), "1.2-3");
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        for bad in ["", "x1.0", "a:1.0", "1.0-", "1 0", "1.0_1", "5:"] {
            let e = bad.parse::<DebVersion>().unwrap_err();
            assert!(e.to_string().contains("apt-cache madison"), "{e}");
        }
    }

    #[test]
    fn engine_versions_compare_numerically() {
        assert!(EngineVersion::parse_lenient("28.10.0") > EngineVersion::parse_lenient("28.9.9"));
        assert_eq!(EngineVersion::parse_lenient("26.1.5").major(), 26);
        assert_eq!(EngineVersion::parse_lenient("26.1.5").minor(), 1);
    }
}
