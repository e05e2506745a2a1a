//! Exact-version installs and rollback with the real apt and dpkg, from a local repository of
//! dummy packages (no files, built here with dpkg-deb), through a private sources list so the
//! machine's own sources are never touched. The packages are purged at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use swarm_upgrade::adapters::apt::command::InstallMode;
use swarm_upgrade::adapters::apt::runner::{Apt, installed};
use swarm_upgrade::model::PackageSet;
use swarm_upgrade::ports::OpKey;
use swarm_upgrade::wire::error::NodeError;

const ENGINE: &str = "su-upgrade-test-engine";
const COMPANION: &str = "su-upgrade-test-companion";

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A package with no files; `postinst_fails` makes its configuration fail.
fn deb(dir: &Path, name: &str, version: &str, depends: Option<&str>, postinst_fails: bool) {
    let root = dir.join(format!("{name}-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    let depends = depends.map(|d| format!("Depends: {d}\n")).unwrap_or_default();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: swarm-upgrade tests <tests@invalid>\n{depends}Description: swarm-upgrade test package\n"),
    )
    .unwrap();
    if postinst_fails {
        let p = root.join("DEBIAN/postinst");
        std::fs::write(&p, "#!/bin/sh\necho 'the engine does not start' >&2\nexit 1\n").unwrap();
        sh(Command::new("chmod").arg("755").arg(&p));
    }
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&root)
        .arg(dir.join(format!("{name}_{version}_all.deb"))));
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = Command::new("apt-mark").args(["unhold", ENGINE, COMPANION]).output();
        let _ = Command::new("dpkg").args(["--purge", "--force-all", ENGINE, COMPANION]).output();
    }
}

/// The order a test's transaction runs under.
fn key(limit: Option<Duration>) -> OpKey {
    OpKey { run_id: "t".into(), token: 1, limit }
}

fn set(engine: &str, companion: &str) -> PackageSet {
    PackageSet(
        [
            (ENGINE.to_string(), engine.parse().unwrap()),
            (COMPANION.to_string(), companion.parse().unwrap()),
        ]
        .into(),
    )
}

fn versions() -> Vec<(String, String, char, char)> {
    installed(&[ENGINE.to_string(), COMPANION.to_string()])
        .unwrap()
        .into_iter()
        .map(|i| {
            (
                i.package.clone(),
                i.version.map(|v| v.to_string()).unwrap_or_default(),
                i.desired,
                i.status,
            )
        })
        .collect()
}

/// Runs `f` while another apt holds dpkg's lock (its `DPkg::Pre-Invoke` hook sleeps with the lock
/// held, as an unattended upgrade would), then waits for that apt to end.
fn hold_the_lock_while<T>(dir: &Path, apt: &Apt, f: impl FnOnce() -> T) -> T {
    let locked = dir.join("locked");
    let hook = format!("DPkg::Pre-Invoke::=touch {} && sleep 6", locked.display());
    let mut other = Command::new("apt-get");
    other.args(["install", "-y", "-q", "--reinstall", "-o", &hook]);
    for o in &apt.options {
        other.args(["-o", o]);
    }
    let mut other = other
        .arg(format!("{COMPANION}=2.0"))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !locked.exists() {
        assert!(std::time::Instant::now() < deadline, "the other apt never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = f();
    assert!(other.wait().unwrap().success(), "the other apt finished");
    out
}

#[test]
fn installs_exact_sets_refuses_silent_downgrades_rolls_back_and_detects_interrupted_dpkg() {
    let dir = PathBuf::from(format!("/tmp/su-apt-{}", std::process::id()));
    let _cleanup = Cleanup(dir.clone());
    let _ = std::fs::remove_dir_all(&dir);
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for v in ["1.0", "2.0"] {
        deb(&repo, COMPANION, v, None, false);
        deb(&repo, ENGINE, v, Some(&format!("{COMPANION} (>= {v})")), false);
    }
    deb(&repo, ENGINE, "3.0", Some(&format!("{COMPANION} (>= 2.0)")), true);
    let packages =
        sh(Command::new("dpkg-scanpackages").args(["--multiversion", "."]).current_dir(&repo));
    std::fs::write(repo.join("Packages"), packages).unwrap();
    for d in ["lists/partial", "archives/partial", "parts"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
    .unwrap();
    let apt = Apt {
        options: vec![
            "DPkg::Lock::Timeout=2".into(),
            format!("Dir::Etc::SourceList={}", dir.join("sources.list").display()),
            format!("Dir::Etc::SourceParts={}", dir.join("parts").display()),
            format!("Dir::State::Lists={}", dir.join("lists").display()),
            format!("Dir::Cache::Archives={}", dir.join("archives").display()),
        ],
        transient: false,
    };
    assert_eq!(apt.update().unwrap(), vec![]);
    let offered = apt.available(&[ENGINE.to_string()]).unwrap();
    assert_eq!(
        offered[ENGINE].iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["1.0", "2.0", "3.0"]
    );

    // The first install, then the upgrade: prefetched first, exact versions, held.
    apt.install(&set("1.0", "1.0"), InstallMode::Upgrade, &key(None)).unwrap();
    apt.prefetch(&set("2.0", "2.0"), &key(None)).unwrap();
    // (A file: repository is read in place, so nothing lands in the cache; what matters is that
    // the download-only transaction changed nothing.)
    assert_eq!(
        versions(),
        [(COMPANION.into(), "1.0".into(), 'h', 'i'), (ENGINE.into(), "1.0".into(), 'h', 'i')]
    );
    apt.install(&set("2.0", "2.0"), InstallMode::Upgrade, &key(None)).unwrap();
    assert_eq!(
        versions(),
        [(COMPANION.into(), "2.0".into(), 'h', 'i'), (ENGINE.into(), "2.0".into(), 'h', 'i')]
    );

    // Another apt holding dpkg's lock past our lock timeout: busy, nothing changed.
    let e = hold_the_lock_while(&dir, &apt, || {
        apt.install(&set("1.0", "1.0"), InstallMode::Rollback, &key(None)).unwrap_err()
    });
    assert!(e.is_busy(), "{e}");
    assert!(matches!(NodeError::from(e), NodeError::Busy(_)));
    // (The other apt's reinstall lifted the companion's hold; our next transaction holds again.)
    let now: Vec<_> = versions().into_iter().map(|(p, v, _, status)| (p, v, status)).collect();
    assert_eq!(now, [(COMPANION.into(), "2.0".into(), 'i'), (ENGINE.into(), "2.0".into(), 'i')]);

    // An order that outlives its time limit (a maintainer script or a repository that hangs,
    // here a pre-invoke hook) is killed, says so, and changes nothing.
    let hang = Apt {
        options: [apt.options.clone(), vec!["DPkg::Pre-Invoke::=sleep 30".into()]].concat(),
        ..apt.clone()
    };
    let e = hang
        .install(&set("1.0", "1.0"), InstallMode::Rollback, &key(Some(Duration::from_secs(2))))
        .unwrap_err();
    assert_eq!(e.status, "killed after 2s", "{e}");
    assert!(e.detail.contains("time limit"), "{e}");
    assert!(matches!(NodeError::from(e), NodeError::Failed(_)));
    let now: Vec<_> = versions().into_iter().map(|(p, v, _, status)| (p, v, status)).collect();
    assert_eq!(now, [(COMPANION.into(), "2.0".into(), 'i'), (ENGINE.into(), "2.0".into(), 'i')]);

    // An upgrade never downgrades; a rollback does.
    let e = apt.install(&set("1.0", "1.0"), InstallMode::Upgrade, &key(None)).unwrap_err();
    assert!(e.detail.contains("downgraded"), "{e}");
    apt.install(&set("1.0", "1.0"), InstallMode::Rollback, &key(None)).unwrap();
    assert_eq!(
        versions(),
        [(COMPANION.into(), "1.0".into(), 'h', 'i'), (ENGINE.into(), "1.0".into(), 'h', 'i')]
    );

    // A package whose configuration fails leaves dpkg mid-transaction: the install fails with
    // dpkg's words, and the next transaction refuses to start over it.
    let e = apt.install(&set("3.0", "2.0"), InstallMode::Upgrade, &key(None)).unwrap_err();
    assert!(e.detail.contains("su-upgrade-test-engine"), "{e}");
    assert!(
        matches!(NodeError::from(e), NodeError::Failed(_)),
        "a broken package is a failure, not a busy node"
    );
    let rows = installed(&[ENGINE.to_string(), COMPANION.to_string()]).unwrap();
    let what = swarm_upgrade::agent::host::interrupted(&rows)
        .expect("the agent reports the interrupted package");
    assert!(what.starts_with("su-upgrade-test-engine ("), "{what}");
    let e = apt.install(&set("1.0", "1.0"), InstallMode::Rollback, &key(None)).unwrap_err();
    assert!(
        e.detail.contains("interrupted dpkg") && e.detail.contains("dpkg --configure -a"),
        "{e}"
    );
}
