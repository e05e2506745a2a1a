//! Runs apt and dpkg through duct, keeping stderr for the error an operator reads. Blocking: the
//! agent calls these from a blocking task.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::parse::{self, Installed, RepoProblem};
use crate::model::DebVersion;
use crate::ports::OpKey;
use crate::wire::error::NodeError;

/// A failed apt or dpkg command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{command}` failed ({status}): {detail}")]
pub struct AptError {
    /// The command line.
    pub command: String,
    /// Exit status, or why it could not run.
    pub status: String,
    /// apt's `E:` lines, or its whole stderr.
    pub detail: String,
}

impl AptError {
    /// Whether apt failed because another apt or dpkg holds a lock it needs (past
    /// `DPkg::Lock::Timeout`): the command did not run, and may pass later. (A whole install is
    /// more than one command: after the transaction, `apt-mark hold` may be the one that found
    /// the lock; repeating the exact set is harmless.) The same holds for a transient unit of the
    /// same name still running: the order's own transaction, started before the agent restarted.
    pub fn is_busy(&self) -> bool {
        [
            "Could not get lock ",
            "Unable to acquire the dpkg frontend lock",
            "Unable to lock ",
            // systemd-run's words (BUS_ERROR_UNIT_EXISTS) for a unit name in use.
            "was already loaded or has a fragment file",
        ]
        .iter()
        .any(|m| self.detail.contains(m))
    }
}

/// A busy lock is worth retrying; any other failure of a transaction is the order's failure.
impl From<AptError> for NodeError {
    fn from(e: AptError) -> NodeError {
        if e.is_busy() { NodeError::Busy(e.to_string()) } else { NodeError::Failed(e.to_string()) }
    }
}

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `args` (program first) without failing on a non-zero exit.
pub fn run(args: &[String]) -> Result<Ran, AptError> {
    run_within(args, None)
}

/// Runs `args` like [`run`], killed once `limit` has passed (`None`: no limit), which is then
/// the error.
pub fn run_within(args: &[String], limit: Option<Duration>) -> Result<Ran, AptError> {
    let (program, rest) = args.split_first().expect("a command has a program");
    let error =
        |status: String, detail: String| AptError { command: args.join(" "), status, detail };
    let handle = duct::cmd(program, rest)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .map_err(|e| error("could not start".into(), e.to_string()))?;
    let started = Instant::now();
    let out = loop {
        if let Some(out) = handle.try_wait().map_err(|e| error("lost".into(), e.to_string()))? {
            break out;
        }
        if let Some(limit) = limit.filter(|l| started.elapsed() >= *l) {
            let _ = handle.kill();
            return Err(error(
                format!("killed after {}s", limit.as_secs()),
                "it did not finish within the order's time limit".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `args` and fails with apt's own error lines when it exits non-zero.
pub fn run_checked(args: &[String]) -> Result<Ran, AptError> {
    run_checked_within(args, None)
}

/// [`run_checked`] within `limit`.
pub fn run_checked_within(args: &[String], limit: Option<Duration>) -> Result<Ran, AptError> {
    let ran = run_within(args, limit)?;
    if ran.code == 0 {
        return Ok(ran);
    }
    let both = format!("{}\n{}", ran.stdout, ran.stderr);
    let detail = parse::apt_errors(&both).unwrap_or_else(|| ran.stderr.trim().to_string());
    Err(AptError { command: args.join(" "), status: format!("exit {}", ran.code), detail })
}

fn strings(parts: &[&str], packages: &[String]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).chain(packages.iter().cloned()).collect()
}

/// The versions the node's repositories offer for each package.
pub fn available(packages: &[String]) -> Result<BTreeMap<String, Vec<DebVersion>>, AptError> {
    let ran = run_checked(&strings(&["apt-cache", "madison"], packages))?;
    Ok(parse::madison(&ran.stdout))
}

/// The files of `package` that `wanted` selects and that are no longer as it installed them:
/// their checksums against dpkg's md5sums list (what `dpkg --verify` does for every file of the
/// package, too slow to run on each observation). Nothing for a package that is not installed.
pub fn altered(
    package: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<parse::Altered>, AptError> {
    altered_in(std::path::Path::new("/var/lib/dpkg/info"), package, wanted)
}

/// [`altered`] with dpkg's lists in `info`.
fn altered_in(
    info: &std::path::Path,
    package: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<parse::Altered>, AptError> {
    let list = [format!("{package}.md5sums")]
        .into_iter()
        .chain(std::fs::read_dir(info).into_iter().flatten().filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            (name.starts_with(&format!("{package}:")) && name.ends_with(".md5sums")).then_some(name)
        }))
        .find_map(|name| std::fs::read_to_string(info.join(name)).ok());
    let Some(list) = list else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for (sum, path) in parse::md5sums(&list).into_iter().filter(|(_, p)| wanted(p)) {
        let ran = run(&strings(&["md5sum", "--"], std::slice::from_ref(&path)))?;
        if ran.code != 0 || ran.stdout.split_whitespace().next() != Some(sum.as_str()) {
            out.push(parse::Altered { path, conffile: false });
        }
    }
    Ok(out)
}

/// The packages dpkg knows, with their state; unknown packages are simply absent (dpkg-query
/// exits 1 for them, which is not an error here).
pub fn installed(packages: &[String]) -> Result<Vec<Installed>, AptError> {
    let args = strings(
        &["dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n"],
        packages,
    );
    let ran = run(&args)?;
    if ran.code > 1 {
        return Err(AptError {
            command: args.join(" "),
            status: format!("exit {}", ran.code),
            detail: ran.stderr.trim().to_string(),
        });
    }
    Ok(parse::dpkg_query(&ran.stdout))
}

/// Refreshes the package lists; the problems of each broken repository, if any.
pub fn update() -> Result<Vec<RepoProblem>, AptError> {
    let ran = run(&["apt-get".to_string(), "update".into(), "-q".into()])?;
    Ok(parse::update_problems(&format!("{}\n{}", ran.stdout, ran.stderr)))
}

/// apt as the agent runs it: extra `-o` options (tests point apt at a private sources list), and
/// installs in a transient systemd unit where systemd runs the host.
#[derive(Clone, Debug, Default)]
pub struct Apt {
    /// Extra `-o Key=Value` options for apt-get, apt-cache and apt-mark.
    pub options: Vec<String>,
    /// Run transactions in a transient unit (`systemd-run`), so an agent restart cannot kill dpkg.
    pub transient: bool,
}

/// Whether apt-get update found the lists locked by another apt.
fn lists_locked(text: &str) -> bool {
    text.contains("Could not get lock /var/lib/apt/lists/lock")
        || text.contains("Unable to lock directory /var/lib/apt/lists/")
}

impl Apt {
    /// apt on this host: transient units when systemd is PID 1.
    pub fn host() -> Self {
        Apt { options: Vec::new(), transient: std::path::Path::new("/run/systemd/system").is_dir() }
    }

    /// Adds the extra options last, so that they override ours (a test's short lock timeout).
    fn with_options(&self, mut args: Vec<String>) -> Vec<String> {
        if matches!(args.first().map(String::as_str), Some("apt-get" | "apt-cache" | "apt-mark")) {
            args.extend(self.options.iter().flat_map(|o| ["-o".to_string(), o.clone()]));
        }
        args
    }

    /// The versions the repositories offer.
    pub fn available(
        &self,
        packages: &[String],
    ) -> Result<BTreeMap<String, Vec<DebVersion>>, AptError> {
        let ran = run_checked(&self.with_options(strings(&["apt-cache", "madison"], packages)))?;
        Ok(parse::madison(&ran.stdout))
    }

    /// Refreshes the lists; each broken repository's problem. Refreshes in this process take turns,
    /// and one that finds the lists locked by another apt (two coordinators asking at once, or the
    /// node's own apt timer) waits for it, up to two minutes, instead of reporting a broken
    /// repository.
    pub fn update(&self) -> Result<Vec<RepoProblem>, AptError> {
        static LISTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = LISTS.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let ran =
                run(&self.with_options(vec!["apt-get".into(), "update".into(), "-q".into()]))?;
            let text = format!("{}\n{}", ran.stdout, ran.stderr);
            if lists_locked(&text) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(500));
                continue;
            }
            return Ok(parse::update_problems(&text));
        }
    }

    /// The command line of a transaction: apt options added, and wrapped in a transient unit
    /// named after the order (and limited to its time) when `transient`.
    pub fn transaction_args(&self, op: &str, args: Vec<String>, key: &OpKey) -> Vec<String> {
        let args = self.with_options(args);
        if self.transient {
            let unit = super::command::unit_name(op, &key.run_id, key.token);
            super::command::in_transient_unit(&unit, &args, key.limit)
        } else {
            args
        }
    }

    /// Runs a transaction within the order's limit. In a transient unit, systemd ends it at the
    /// limit (`RuntimeMaxSec`) and `systemd-run` reports that; the wait here is a backstop.
    fn transaction(&self, op: &str, args: Vec<String>, key: &OpKey) -> Result<Ran, AptError> {
        let backstop =
            key.limit.map(|l| if self.transient { l + Duration::from_secs(15) } else { l });
        let started = Instant::now();
        run_checked_within(&self.transaction_args(op, args, key), backstop).map_err(|mut e| {
            if let Some(limit) = key.limit.filter(|l| started.elapsed() >= *l) {
                e.detail = format!(
                    "{}; it ran into the order's time limit ({}s): the repository or a maintainer script may hang, see `journalctl -u 'swarm-upgrade-*'` on the node",
                    e.detail,
                    limit.as_secs()
                );
            }
            e
        })
    }

    /// Downloads the exact set.
    pub fn prefetch(&self, set: &crate::model::PackageSet, key: &OpKey) -> Result<(), AptError> {
        self.transaction("prefetch", super::command::prefetch(set), key).map(|_| ())
    }

    /// Finishes what an interrupted dpkg left half-way among `names` (`dpkg --configure -a`), if
    /// anything: a transaction cut short at an order's limit (a maintainer script that hung) must
    /// be finished before apt installs anything again. The caller keeps the scripts' service
    /// restarts from hanging again (the rollback masks the engine meanwhile).
    pub fn finish_interrupted(&self, names: &[String], key: &OpKey) -> Result<(), AptError> {
        if !installed(names)?.iter().any(Installed::is_interrupted) {
            return Ok(());
        }
        // dpkg has no lock timeout of its own: the transaction that was cut short may still be
        // ending (its unit's stop timeout), so a held lock is waited out within the order's time.
        let started = Instant::now();
        loop {
            let left = key.limit.map(|l| l.saturating_sub(started.elapsed()));
            let args = vec!["dpkg".to_string(), "--configure".into(), "-a".into()];
            match self.transaction("configure", args, &OpKey { limit: left, ..key.clone() }) {
                Err(e)
                    if e.detail.contains("locked by another process")
                        && left.is_none_or(|l| l > Duration::from_secs(2)) =>
                {
                    std::thread::sleep(Duration::from_secs(1));
                }
                other => return other.map(drop),
            }
        }
    }

    /// Installs the exact set in one transaction, refusing to start over an interrupted one, then
    /// holds it and checks dpkg's view.
    pub fn install(
        &self,
        set: &crate::model::PackageSet,
        mode: super::command::InstallMode,
        key: &OpKey,
    ) -> Result<(), AptError> {
        let names: Vec<String> = set.0.keys().cloned().collect();
        let fail = |detail: String| AptError {
            command: "dpkg-query".into(),
            status: "check".into(),
            detail,
        };
        if let Some(broken) = installed(&names)?.into_iter().find(Installed::is_interrupted) {
            return Err(fail(format!(
                "{} was left mid-transaction by an interrupted dpkg (state {}{}); run `dpkg --configure -a` on the node and check it",
                broken.package, broken.desired, broken.status
            )));
        }
        self.transaction("install", super::command::install(set, mode), key)?;
        run_checked(&self.with_options(super::command::hold(set)))?;
        let now = installed(&names)?;
        for (p, v) in &set.0 {
            let ok = now.iter().any(|i| {
                &i.package == p && i.version.as_ref() == Some(v) && i.is_installed() && i.is_held()
            });
            if !ok {
                return Err(fail(format!(
                    "after the install, {p} is not installed and held at {v}: {now:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// A file whose checksum no longer matches dpkg's list, or that is gone, is reported; one
    /// that matches, or that `wanted` leaves out, is not (md5sum, as on every Debian).
    #[test]
    fn files_are_checked_against_the_packages_md5sums_list() {
        let dir = std::env::temp_dir().join(format!("su-md5sums-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (same, edited) = (dir.join("same.service"), dir.join("edited.service"));
        std::fs::write(&same, "[Service]\n").unwrap();
        std::fs::write(&edited, "[Service]\n# an edit\n").unwrap();
        let sum = "8f2b1a5ee8e8d1a8b6c3b3f0ae1a4c33"; // not the edited file's
        let real = duct::cmd!("md5sum", &same).read().unwrap();
        let real = real.split_whitespace().next().unwrap();
        let rel = |p: &std::path::Path| p.display().to_string().trim_start_matches('/').to_string();
        let list = format!(
            "{real}  {}\n{sum}  {}\n{sum}  {}\n",
            rel(&same),
            rel(&edited),
            rel(&dir.join("gone.service"))
        );
        std::fs::write(dir.join("pkg:amd64.md5sums"), list).unwrap();
        let found = super::altered_in(&dir, "pkg", |p| p.ends_with(".service")).unwrap();
        let paths: Vec<&str> = found.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(
            paths,
            [edited.display().to_string(), dir.join("gone.service").display().to_string()]
        );
        assert!(
            super::altered_in(&dir, "pkg", |p| p.ends_with("same.service")).unwrap().is_empty()
        );
        assert!(super::altered_in(&dir, "other", |_| true).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use crate::wire::error::NodeError;

    #[test]
    fn a_held_lock_is_busy_and_a_broken_package_is_a_failure() {
        let e = |detail: &str| super::AptError {
            command: "apt-get install".into(),
            status: "exit 100".into(),
            detail: detail.into(),
        };
        let busy = [
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1424 (apt-get)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?",
            "E: Could not get lock /var/cache/apt/archives/lock. It is held by process 77 (apt-get)\nE: Unable to lock directory /var/cache/apt/archives/",
            "Failed to start transient service unit: Unit swarm-upgrade-prefetch-r1-3.service was already loaded or has a fragment file.",
        ];
        for d in busy {
            assert!(matches!(NodeError::from(e(d)), NodeError::Busy(_)), "{d}");
        }
        let broken = "E: Sub-process /usr/bin/dpkg returned an error code (1)";
        assert!(matches!(NodeError::from(e(broken)), NodeError::Failed(_)));
    }

    #[test]
    fn a_locked_list_directory_is_waited_for() {
        let text = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1424 (apt-get)\nE: Unable to lock directory /var/lib/apt/lists/";
        assert!(super::lists_locked(text));
        assert!(!super::lists_locked(
            "E: The repository 'http://repo/linux/debian trixie Release' is not signed."
        ));
    }
}
