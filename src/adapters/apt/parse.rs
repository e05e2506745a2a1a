//! Pure parsers of apt and dpkg output, each tested on output captured from the real tools
//! (tests/fixtures/apt; mirror host names and paths replaced).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::DebVersion;

/// `apt-cache madison P...`: the versions each package's repositories offer (deduplicated, sorted).
pub fn madison(text: &str) -> BTreeMap<String, Vec<DebVersion>> {
    let mut out: BTreeMap<String, Vec<DebVersion>> = BTreeMap::new();
    for line in text.lines() {
        let mut cols = line.split('|').map(str::trim);
        let (Some(pkg), Some(ver), Some(_source)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let Ok(v) = ver.parse::<DebVersion>() else { continue };
        let vs = out.entry(pkg.to_string()).or_default();
        if !vs.contains(&v) {
            vs.push(v);
        }
    }
    for vs in out.values_mut() {
        vs.sort();
    }
    out
}

/// A package's state in dpkg's database (`${db:Status-Abbrev}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// Package name.
    pub package: String,
    /// Installed version.
    pub version: Option<DebVersion>,
    /// Wanted state: `i` install, `h` hold, `r` remove, `p` purge, `u` unknown.
    pub desired: char,
    /// Current state: `i` installed, `n` not installed, `c` config files, `U` unpacked,
    /// `F` half-configured, `H` half-installed, `W` triggers awaited, `t` triggers pending.
    pub status: char,
    /// `R` when dpkg marked the package as needing reinstallation.
    pub error: char,
}

impl Installed {
    /// Installed and configured.
    pub fn is_installed(&self) -> bool {
        self.status == 'i'
    }

    /// Held by `apt-mark hold`.
    pub(crate) fn is_held(&self) -> bool {
        self.desired == 'h'
    }

    /// Left mid-transaction by an interrupted dpkg.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.status, 'U' | 'F' | 'H' | 'W' | 't') || self.error == 'R'
    }
}

/// `dpkg-query -W -f='${Package}\t${Version}\t${db:Status-Abbrev}\n' P...`.
pub(crate) fn dpkg_query(text: &str) -> Vec<Installed> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let package = cols.next()?.trim().to_string();
            let version = cols.next()?.trim();
            let abbrev: Vec<char> = cols.next().unwrap_or("").chars().collect();
            if package.is_empty() {
                return None;
            }
            Some(Installed {
                package,
                version: version.parse().ok(),
                desired: abbrev.first().copied().unwrap_or('u'),
                status: abbrev.get(1).copied().unwrap_or('n'),
                error: abbrev.get(2).copied().unwrap_or(' '),
            })
        })
        .collect()
}

/// What is wrong with a repository, from `apt-get update`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RepoProblem {
    /// Signed with a key the node does not have.
    MissingKey {
        /// The repository line apt names.
        repo: String,
        /// The key ID.
        key: String,
    },
    /// Not signed (or the signature could not be used).
    NotSigned {
        /// The repository.
        repo: String,
    },
    /// No Release file: wrong URL or suite.
    NoRelease {
        /// The repository.
        repo: String,
    },
    /// The Release file has no strong hashes.
    WeakSecurity {
        /// The repository.
        repo: String,
    },
    /// The repository could not be reached.
    Unreachable {
        /// What apt said.
        detail: String,
    },
    /// Any other error line.
    Other {
        /// What apt said.
        detail: String,
    },
}

impl std::fmt::Display for RepoProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoProblem::MissingKey { repo, key } => write!(
                f,
                "repository {repo} is signed with key {key}, which the node lacks: install the key in the keyring named by its signed-by option"
            ),
            RepoProblem::NotSigned { repo } => {
                write!(
                    f,
                    "repository {repo} is not signed: check its InRelease file and the signed-by keyring"
                )
            }
            RepoProblem::NoRelease { repo } => {
                write!(
                    f,
                    "repository {repo} has no Release file: check the URL and suite in the sources list"
                )
            }
            RepoProblem::WeakSecurity { repo } => {
                write!(
                    f,
                    "repository {repo} provides only weak security information: its Release file lacks SHA256 hashes"
                )
            }
            RepoProblem::Unreachable { detail } => {
                write!(f, "repository unreachable: {detail}: check the node's network and proxy")
            }
            RepoProblem::Other { detail } => write!(f, "apt: {detail}"),
        }
    }
}

/// The repository named in `The repository 'X' ...`.
fn quoted(line: &str) -> String {
    line.split('\'').nth(1).unwrap_or(line).to_string()
}

/// A file of a package that is no longer as the package installed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Altered {
    /// The file.
    pub path: String,
    /// A conffile (dpkg keeps an operator's version on upgrade; other files are replaced).
    pub conffile: bool,
}

/// The entries of a package's md5sums list (`/var/lib/dpkg/info/PACKAGE.md5sums`: a checksum,
/// two spaces, the path without its leading `/`): (checksum, absolute path).
pub(crate) fn md5sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(sum, path)| (sum.trim().to_string(), format!("/{}", path.trim())))
        .collect()
}

/// The problems `apt-get update` reported (empty when the update was clean).
pub(crate) fn update_problems(text: &str) -> Vec<RepoProblem> {
    let mut out = Vec::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("W: GPG error: ") {
            if let Some(key) = rest.split("NO_PUBKEY ").nth(1) {
                let repo = rest.split(": ").next().unwrap_or("").to_string();
                keys.insert(repo, key.split_whitespace().next().unwrap_or("").to_string());
            }
            continue;
        }
        let Some(msg) = line.strip_prefix("E: ") else { continue };
        let repo = quoted(msg);
        let problem = if msg.contains("is not signed") {
            match keys.iter().find(|(r, _)| repo.starts_with(r.as_str()) || r.starts_with(&repo)) {
                Some((_, key)) => RepoProblem::MissingKey { repo, key: key.clone() },
                None => RepoProblem::NotSigned { repo },
            }
        } else if msg.contains("does not have a Release file") {
            RepoProblem::NoRelease { repo }
        } else if msg.contains("weak security information") {
            RepoProblem::WeakSecurity { repo }
        } else if msg.starts_with("Failed to fetch")
            || msg.contains("Could not resolve")
            || msg.contains("Connection failed")
        {
            RepoProblem::Unreachable { detail: msg.to_string() }
        } else if msg.starts_with("Some index files failed to download") {
            continue;
        } else {
            RepoProblem::Other { detail: msg.to_string() }
        };
        out.push(problem);
    }
    out
}

/// What to show the operator when apt fails: dpkg's own `error processing package` lines (they
/// name the package that failed), then apt's `E:` lines, joined.
pub(crate) fn apt_errors(text: &str) -> Option<String> {
    let dpkg =
        text.lines().map(str::trim).filter(|l| l.starts_with("dpkg: error processing package"));
    let apt = text.lines().filter_map(|l| l.trim().strip_prefix("E: "));
    let errors: Vec<&str> = dpkg.chain(apt).collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/apt/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    #[test]
    fn madison_lists_each_version_once_in_order() {
        let m = madison(&fixture("madison.txt"));
        let s = |p: &str| m[p].iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(s("docker.io"), ["20.10.24+dfsg1-1+deb12u1+b6"]);
        assert_eq!(
            s("containerd"),
            ["1.6.20~ds1-1+deb12u2", "1.6.20~ds1-1+deb12u3"],
            "two suites, sorted"
        );
        assert_eq!(s("runc"), ["1.1.5+ds1-1+deb12u1"], "the same version from two suites, once");
    }

    #[test]
    fn dpkg_query_reads_versions_and_states() {
        let rows = dpkg_query(&fixture("dpkg-query.txt"));
        assert_eq!(rows.len(), 3);
        let docker = rows.iter().find(|r| r.package == "docker.io").unwrap();
        assert_eq!(docker.version.as_ref().unwrap().to_string(), "20.10.24+dfsg1-1+deb12u1+b6");
        assert!(docker.is_installed() && !docker.is_held() && !docker.is_interrupted());
        let odd = dpkg_query(
            "docker-ce\t5:28.5.2-1~debian.13~trixie\thU \ncontainerd.io\t2.1.9-1\tiFR\n",
        );
        assert!(odd[0].is_held() && odd[0].is_interrupted());
        assert!(odd[1].is_interrupted() && !odd[1].is_installed());
    }

    #[test]
    fn update_problems_name_the_repository_and_the_fix() {
        let p = update_problems(&fixture("update-missing-key.txt"));
        assert_eq!(
            p,
            [RepoProblem::MissingKey {
                repo: "file:/srv/lab/repo trixie InRelease".into(),
                key: "E2D07D06D346C8AE".into()
            }]
        );
        assert!(p[0].to_string().contains("signed-by"));
        assert_eq!(
            update_problems(&fixture("update-no-release.txt")),
            [RepoProblem::NoRelease { repo: "file:/srv/lab/repo trixie Release".into() }]
        );
        assert!(matches!(
            update_problems(&fixture("update-weak-security.txt"))[..],
            [RepoProblem::WeakSecurity { .. }]
        ));
        assert!(
            update_problems(
                "Hit:1 http://mirror.invalid/debian bookworm InRelease\nReading package lists...\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn apt_errors_keep_the_e_lines() {
        assert_eq!(
            apt_errors(&fixture("install-missing-version.txt")).as_deref(),
            Some("Version '99.0' for 'docker.io' was not found")
        );
        assert_eq!(apt_errors("Reading package lists...\n"), None);
        let failed = "Setting up x (3.0) ...\ndpkg: error processing package x (--configure):\n installed x package post-installation script subprocess returned error exit status 1\nE: Sub-process /usr/bin/dpkg returned an error code (1)\n";
        assert_eq!(
            apt_errors(failed).as_deref(),
            Some(
                "dpkg: error processing package x (--configure):; Sub-process /usr/bin/dpkg returned an error code (1)"
            )
        );
    }

    /// The layout of dpkg's md5sums lists (docker-ce's, from a lab node).
    #[test]
    fn md5sums_lists_are_read_with_absolute_paths() {
        let text = "3c6d1f5d0c1fd4dbb04fbb8f1bd2a3d5  usr/bin/dockerd\nb2f0a1f62a87a1fbe6a1c1b0a4c6d7e8  usr/lib/systemd/system/docker.service\n";
        assert_eq!(
            md5sums(text),
            [
                ("3c6d1f5d0c1fd4dbb04fbb8f1bd2a3d5".to_string(), "/usr/bin/dockerd".to_string()),
                (
                    "b2f0a1f62a87a1fbe6a1c1b0a4c6d7e8".to_string(),
                    "/usr/lib/systemd/system/docker.service".to_string()
                ),
            ]
        );
        assert!(md5sums("").is_empty());
    }
}
