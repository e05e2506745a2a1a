//! The apt runner against this machine's real apt and dpkg: read-only queries, and a
//! download-only request for a version that does not exist (it cannot change anything).

use swarm_upgrade::adapters::apt::runner;

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reads_installed_and_available_versions_from_the_real_tools() {
    let rows =
        runner::installed(&names(&["apt", "dpkg", "no-such-package-swarm-upgrade"])).unwrap();
    let found: Vec<&str> = rows.iter().map(|r| r.package.as_str()).collect();
    assert_eq!(found, ["apt", "dpkg"], "unknown packages are absent, not an error");
    assert!(
        rows.iter().all(|r| r.is_installed() && r.version.is_some() && !r.is_interrupted()),
        "{rows:?}"
    );

    let offered = runner::available(&names(&["apt"])).unwrap();
    assert!(
        !offered.get("apt").map(Vec::is_empty).unwrap_or(true),
        "the repositories offer apt: {offered:?} (scripts/test.sh runs apt-get update when the lists are missing)"
    );
}

/// A package's files checked against dpkg's own md5sums list, as dpkg installed them: dpkg's
/// own binary and the md5sums list of apt (arch-qualified or not) are found and match; a
/// package that is not installed has nothing to check.
#[test]
fn files_as_installed_match_dpkgs_checksums() {
    let dpkg = runner::altered("dpkg", |p| p == "/usr/bin/dpkg").unwrap();
    assert!(dpkg.is_empty(), "{dpkg:?}");
    let apt = runner::altered("apt", |p| p.starts_with("/usr/bin/")).unwrap();
    assert!(apt.is_empty(), "{apt:?}");
    assert!(runner::altered("no-such-package-swarm-upgrade", |_| true).unwrap().is_empty());
}

#[test]
fn a_missing_version_fails_with_apts_own_words() {
    let args: Vec<String> = [
        "apt-get",
        "install",
        "--download-only",
        "-y",
        "-q",
        "apt=0.0.0-swarm-upgrade-nonexistent",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let e = runner::run_checked(&args).unwrap_err();
    assert_eq!(e.status, "exit 100");
    assert_eq!(e.detail, "Version '0.0.0-swarm-upgrade-nonexistent' for 'apt' was not found");
    assert!(e.to_string().starts_with("`apt-get install --download-only"), "{e}");
}
