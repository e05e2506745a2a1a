//! A set of packages at exact versions: what is installed on a node, or what a run installs.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::version::DebVersion;

/// Whether `name` is a Debian package name (Debian policy 5.6.1: lower-case letters, digits,
/// `+`, `-` and `.`, at least two characters, starting with a letter or digit). Anything else,
/// an option such as `-o...` above all, must never reach apt's command line.
pub fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Package name to exact version; installed as one apt transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackageSet(pub BTreeMap<String, DebVersion>);

impl PackageSet {
    /// The version of one package in the set.
    pub fn get(&self, package: &str) -> Option<&DebVersion> {
        self.0.get(package)
    }

    /// Whether the set names no package.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PackageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(p, v)| format!("{p}={v}")).collect();
        f.write_str(&parts.join(" "))
    }
}
