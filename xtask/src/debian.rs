//! The engine binaries the lab repository carries, fetched from Debian itself: trixie's docker.io
//! 26.1.5 and forky's 28.5.2 with their containerd, runc and tini. apt fetches them through a private
//! sources list on the machine's own mirror; nothing of the machine's apt state is touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cache, host};

/// One Debian package to fetch: the newest version of `suite` whose upstream part is `upstream`.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// Debian package name.
    pub package: &'static str,
    /// Debian suite.
    pub suite: &'static str,
    /// Upstream version the lab needs.
    pub upstream: &'static str,
}

const fn src(package: &'static str, suite: &'static str, upstream: &'static str) -> Source {
    Source { package, suite, upstream }
}

/// Everything the lab repository is made of.
pub const SOURCES: &[Source] = &[
    src("docker.io", "trixie", "26.1.5"),
    src("docker-cli", "trixie", "26.1.5"),
    src("containerd", "trixie", "1.7.24"),
    src("runc", "trixie", "1.1.15"),
    src("tini", "trixie", "0.19.0"),
    src("docker.io", "forky", "28.5.2"),
    src("docker-cli", "forky", "28.5.2"),
    src("containerd", "forky", "2.1.9"),
    src("runc", "forky", "1.3.6"),
];

/// The unpacked packages, one tree per (package, suite).
pub struct Unpacked(PathBuf);

impl Unpacked {
    /// The unpacked tree of `package` from `suite`.
    pub fn tree(&self, package: &str, suite: &str) -> PathBuf {
        self.0.join(format!("{package}@{suite}"))
    }
}

/// Picks the newest version in `suite` whose upstream part is `upstream` from `apt-cache madison`.
pub fn pick(madison: &str, suite: &str, upstream: &str) -> Option<String> {
    madison
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (cols.len() == 3
                && cols[2].split_whitespace().any(|w| w.starts_with(&format!("{suite}/"))))
            .then(|| cols[1].to_string())
        })
        .find(|v| v.strip_prefix(upstream).is_some_and(|rest| rest.starts_with(['+', '~', '-'])))
}

/// Prometheus for the lab's alert gate (issue 17), from Debian 12 as the issue asks.
pub const PROMETHEUS: &[Source] = &[src("prometheus", "bookworm", "2.42.0")];

/// Fetches and unpacks every source of the lab repository (cached).
pub fn fetch() -> Result<Unpacked> {
    fetch_sources(SOURCES)
}

/// Fetches and unpacks `sources` (cached, keyed by the list).
pub fn fetch_sources(sources: &[Source]) -> Result<Unpacked> {
    let recipe: Vec<String> =
        sources.iter().map(|s| format!("{}@{}={}", s.package, s.suite, s.upstream)).collect();
    let hash = cache::fnv(&[recipe.join(" ").as_bytes()]);
    let dir = cache::cached(&format!("debian-{hash:016x}"), |out| {
        let apt = out.join("apt");
        for d in ["lists/partial", "cache/archives/partial", "deb"] {
            std::fs::create_dir_all(apt.join(d))?;
        }
        let mirror = host::mirror()?;
        let mut suites: Vec<&str> = Vec::new();
        for s in sources {
            if !suites.contains(&s.suite) {
                suites.push(s.suite);
            }
        }
        let list: String = suites
            .iter()
            .map(|s| format!("deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {s} main\n"))
            .collect();
        std::fs::write(apt.join("sources.list"), list)?;
        let opts = |c: &mut Command| {
            for (k, v) in [
                ("Dir::Etc::SourceList", apt.join("sources.list")),
                ("Dir::Etc::SourceParts", PathBuf::from("/dev/null")),
                ("Dir::State::Lists", apt.join("lists")),
                ("Dir::Cache", apt.join("cache")),
                ("Dir::State::Status", PathBuf::from("/dev/null")),
            ] {
                c.arg("-o").arg(format!("{k}={}", v.display()));
            }
            c.args(["-o", "APT::Architecture=amd64", "-o", "APT::Sandbox::User=root"]);
        };
        let mut update = Command::new("apt-get");
        opts(&mut update);
        host::run(update.arg("update").arg("-q")).with_context(|| {
            format!("apt-get update of {} from the machine's mirror", suites.join(" and "))
        })?;
        for s in sources {
            let mut madison = Command::new("apt-cache");
            opts(&mut madison);
            let listed = host::run(madison.args(["madison", s.package]))?;
            let Some(version) = pick(&listed, s.suite, s.upstream) else {
                bail!(
                    "the mirror has no {} {} in {}; it lists:\n{listed}\nupdate debian::SOURCES",
                    s.package,
                    s.upstream,
                    s.suite
                );
            };
            let mut download = Command::new("apt-get");
            opts(&mut download);
            host::run(download.current_dir(apt.join("deb")).args([
                "download",
                "-q",
                &format!("{}={version}", s.package),
            ]))?;
            let deb = find_deb(&apt.join("deb"), s.package, &version)?;
            host::run(
                Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb)
                    .arg(out.join(format!("{}@{}", s.package, s.suite))),
            )?;
            std::fs::remove_file(deb)?;
        }
        std::fs::remove_dir_all(&apt)?;
        Ok(())
    })?;
    Ok(Unpacked(dir))
}

fn find_deb(dir: &Path, package: &str, version: &str) -> Result<PathBuf> {
    let file_version = version.split_once(':').map_or(version, |(_, v)| v);
    let name = format!("{package}_{file_version}_amd64.deb");
    let path = dir.join(&name);
    if path.exists() {
        Ok(path)
    } else {
        bail!("apt-get download left no {name} in {}", dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    const MADISON: &str =
        " docker.io | 28.5.2+dfsg4-5 | http://mirror.invalid/debian forky/main amd64 Packages
 docker.io | 26.1.5+dfsg1-9+deb13u1+b1 | http://mirror.invalid/debian trixie/main amd64 Packages
";

    #[test]
    fn picks_by_suite_and_upstream() {
        assert_eq!(pick(MADISON, "trixie", "26.1.5").as_deref(), Some("26.1.5+dfsg1-9+deb13u1+b1"));
        assert_eq!(pick(MADISON, "forky", "28.5.2").as_deref(), Some("28.5.2+dfsg4-5"));
        assert_eq!(pick(MADISON, "trixie", "28.5.2"), None, "wrong suite");
        assert_eq!(pick(MADISON, "forky", "28.5"), None, "28.5 is not the upstream 28.5.2");
    }
}
