//! The free Raft backup (issue 17): a manager's swarm state (`<data root>/swarm`), archived
//! while its engine is stopped, as Docker's administration guide advises ("Back up the swarm":
//! stop the engine, back up the whole directory, start it), at the one moment an upgrade stops
//! the engine anyway: inside the restart that starts the new engine (a runtime drop-in's
//! `ExecStartPre`), so the engine is down for one restart, as without the backup. The archives go to a directory of their own (mode 0700, each archive 0600:
//! they hold the swarm's keys), written whole then renamed, and only the newest few are kept.

use std::io;
use std::path::{Path, PathBuf};

use crate::adapters::systemd::Systemd;

/// The archives' directory under the agent's state directory.
pub const DIR: &str = "swarm-backups";

/// At most this many archive names are reported by `describe`.
pub const LISTED: usize = 10;

use crate::model::swarm_backup::{PREFIX, SUFFIX};
pub use crate::model::swarm_backup::{file_name, run_of};

/// Archives the directory `swarm` (as `swarm/...`) into `dir/name`, gzip-compressed, through a
/// temporary file that is synced and then renamed: a crash leaves no half archive under the
/// final name. Returns the archive's path.
pub fn archive(swarm: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if !swarm.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory: this node holds no swarm state", swarm.display()),
        ));
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join(name);
    let partial = dir.join(format!(".{name}.partial"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let written = tar.append_dir_all("swarm", swarm).and_then(|()| tar.into_inner()?.finish());
    match written.and_then(|f| f.sync_all()) {
        Ok(()) => {
            std::fs::rename(&partial, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(path)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// The runtime drop-in (gone at the next boot) that has the engine's next start archive its
/// swarm state first: the engine is then stopped by that restart (the package's own, or the
/// Restart phase's), so the backup costs no stop of its own.
pub const DROP_IN: &str = "/run/systemd/system/docker.service.d/50-swarm-upgrade-backup.conf";

/// The characters a path passed to systemd may have here: no quoting, no specifiers.
fn plain(path: &Path) -> Result<&str, String> {
    let text = path.to_str().filter(|t| {
        t.starts_with('/')
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._+-@:".contains(&b))
    });
    text.ok_or_else(|| {
        format!(
            "{} cannot be passed to systemd as it is (only letters, digits and /._+-@: are): choose an agent.state_dir, and a data root, without other characters, or set upgrade.backup_managers = false",
            path.display()
        )
    })
}

/// The drop-in's text: an `ExecStartPre` (its failure ignored, `-`: the engine starts
/// whatever becomes of the archive) running `exe archive-swarm` for run `run_id`.
pub fn drop_in(
    exe: &Path,
    swarm: &Path,
    dir: &Path,
    run_id: &str,
    keep: usize,
) -> Result<String, String> {
    crate::model::check_run_id(run_id).map_err(|e| e.to_string())?;
    let (exe, swarm, dir) = (plain(exe)?, plain(swarm)?, plain(dir)?);
    Ok(format!(
        "# Written by swarm-upgrade's agent for run {run_id}: the engine's swarm state is archived\n\
         # while the engine is stopped by its upgrade's restart. Removed once that restart is done.\n\
         [Service]\n\
         ExecStartPre=-{exe} archive-swarm --swarm {swarm} --dir {dir} --run {run_id} --keep {keep}\n"
    ))
}

/// What `swarm-upgrade archive-swarm` does, run by the engine's unit before it starts: the
/// archive of run `run_id`, unless this run took one already (the unit may start more than
/// once while the drop-in is there), then the newest `keep` kept. The archive's path, or `None`
/// when it was there already.
pub fn archive_for_run(
    swarm: &Path,
    dir: &Path,
    run_id: &str,
    keep: usize,
) -> Result<Option<PathBuf>, String> {
    crate::model::check_run_id(run_id).map_err(|e| e.to_string())?;
    if of_run(dir, run_id).is_some() {
        return Ok(None);
    }
    // An archive cut short (its start stopped, its deadline passed) left a partial file, which
    // holds the swarm's keys as much as a whole one.
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(".partial") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let name = file_name(run_id, jiff::Timestamp::now());
    let path = archive(swarm, dir, &name)
        .map_err(|e| format!("archiving {} into {}: {e}", swarm.display(), dir.display()))?;
    if let Err(e) = rotate(dir, keep) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove older swarm-state archives");
    }
    Ok(Some(path))
}

/// The longest an archive may hold the engine's start: past it, the engine starts without one.
pub const ARCHIVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// [`archive_for_run`] within `limit`: past it, an error (the caller exits, which ends the
/// archive; its partial file goes at the next archive).
pub fn archive_for_run_within(
    swarm: &Path,
    dir: &Path,
    run_id: &str,
    keep: usize,
    limit: std::time::Duration,
) -> Result<Option<PathBuf>, String> {
    let (swarm, dir, run) = (swarm.to_path_buf(), dir.to_path_buf(), run_id.to_string());
    within(limit, move || archive_for_run(&swarm, &dir, &run, keep)).unwrap_or_else(|| {
        Err(format!(
            "archiving the swarm state took more than {} s: the engine starts without an archive for this run",
            limit.as_secs()
        ))
    })
}

/// `work`'s result, run on a thread of its own, unless it takes more than `limit` (the thread
/// is left to the process's end).
fn within<T: Send + 'static>(
    limit: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(limit).ok()
}

/// The bytes of the files under `path` (symbolic links not followed).
pub fn size_of(path: &Path) -> io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += size_of(&entry?.path())?;
    }
    Ok(total)
}

/// Writes [`DROP_IN`] with `text` and has systemd read it.
pub(crate) async fn arm(systemd: &Systemd, text: &str) -> Result<(), String> {
    let path = Path::new(DROP_IN);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {DROP_IN}: {e}"))?;
    systemd.reload().await.map_err(|e| e.to_string())
}

/// Removes [`DROP_IN`], if there, and has systemd forget it.
pub(crate) async fn disarm(systemd: &Systemd) -> Result<(), String> {
    match std::fs::remove_file(DROP_IN) {
        Ok(()) => systemd.reload().await.map_err(|e| e.to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {DROP_IN}: {e}")),
    }
}

/// At the agent's start: removes a drop-in an earlier run of the agent left (it died between
/// the install and the engine's restart).
pub(crate) async fn disarm_left_over() {
    if !Path::new(DROP_IN).exists() {
        return;
    }
    tracing::warn!("removing the swarm-state backup's drop-in an interrupted upgrade left");
    let result = match Systemd::system().await {
        Ok(systemd) => disarm(&systemd).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot remove {DROP_IN}: remove it and run `systemctl daemon-reload` on this node");
    }
}

/// The archives in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    names
}

/// The archive run `run_id` took in `dir`, if any.
pub fn of_run(dir: &Path, run_id: &str) -> Option<String> {
    list(dir).into_iter().find(|n| run_of(n) == Some(run_id))
}

/// Removes all but the newest `keep` archives in `dir`; returns those removed.
pub fn rotate(dir: &Path, keep: usize) -> io::Result<Vec<String>> {
    let old: Vec<String> = list(dir).into_iter().skip(keep.max(1)).collect();
    for name in &old {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("swarm-upgrade-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_swarm_directory_is_archived_whole_private_and_readable_back() {
        let root = tmp("backup");
        let swarm = root.join("docker/swarm");
        std::fs::create_dir_all(swarm.join("raft/wal-v3-encrypted")).unwrap();
        std::fs::create_dir_all(swarm.join("certificates")).unwrap();
        std::fs::write(swarm.join("raft/wal-v3-encrypted/0.wal"), b"raft entries").unwrap();
        std::fs::write(swarm.join("certificates/swarm-node.key"), b"a key").unwrap();
        std::fs::write(swarm.join("state.json"), b"[]").unwrap();
        let dir = root.join("state").join(DIR);
        let at: jiff::Timestamp = "2026-12-05T04:01:02Z".parse().unwrap();
        let name = file_name("run-1", at);
        assert_eq!(name, "swarm-20261205T040102Z-run-1.tar.gz");
        let path = archive(&swarm, &dir, &name).unwrap();
        assert_eq!(path, dir.join(&name));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        assert_eq!(list(&dir), std::slice::from_ref(&name), "no partial file is left");
        assert_eq!(of_run(&dir, "run-1"), Some(name.clone()));
        assert_eq!(of_run(&dir, "run-2"), None);
        assert_eq!(of_run(&dir, "1"), None, "a run ID is matched whole");
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap());
        for e in tar::Archive::new(gz).entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let mut body = Vec::new();
            io::Read::read_to_end(&mut e, &mut body).unwrap();
            if e.header().entry_type().is_file() {
                entries.push((p, body));
            }
        }
        entries.sort();
        assert_eq!(
            entries,
            [
                ("swarm/certificates/swarm-node.key".to_string(), b"a key".to_vec()),
                ("swarm/raft/wal-v3-encrypted/0.wal".to_string(), b"raft entries".to_vec()),
                ("swarm/state.json".to_string(), b"[]".to_vec()),
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_node_without_swarm_state_gets_no_archive_and_says_why() {
        let root = tmp("backup-none");
        let e = archive(&root.join("swarm"), &root.join(DIR), "swarm-x-r.tar.gz").unwrap_err();
        assert!(e.to_string().contains("holds no swarm state"), "{e}");
        assert!(list(&root.join(DIR)).is_empty());
    }

    #[test]
    fn the_newest_are_kept_and_other_files_left_alone() {
        let dir = tmp("backup-rotate");
        std::fs::create_dir_all(&dir).unwrap();
        for t in ["20261201T000000Z-a", "20261203T000000Z-b", "20261202T000000Z-c"] {
            std::fs::write(dir.join(format!("swarm-{t}.tar.gz")), b"").unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        assert_eq!(rotate(&dir, 2).unwrap(), ["swarm-20261201T000000Z-a.tar.gz"]);
        assert_eq!(
            list(&dir),
            ["swarm-20261203T000000Z-b.tar.gz", "swarm-20261202T000000Z-c.tar.gz"]
        );
        assert_eq!(rotate(&dir, 0).unwrap(), ["swarm-20261202T000000Z-c.tar.gz"], "one at least");
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_drop_in_runs_this_binary_for_the_run_and_ignores_its_failure() {
        let text = drop_in(
            Path::new("/usr/bin/swarm-upgrade"),
            Path::new("/var/lib/docker/swarm"),
            Path::new("/var/lib/swarm-upgrade/swarm-backups"),
            "20261205T090000Z-ab12",
            3,
        )
        .unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "[Service]",
                "ExecStartPre=-/usr/bin/swarm-upgrade archive-swarm --swarm /var/lib/docker/swarm --dir /var/lib/swarm-upgrade/swarm-backups --run 20261205T090000Z-ab12 --keep 3",
            ]
        );
    }

    #[test]
    fn a_path_systemd_would_read_otherwise_is_refused_with_the_way_out() {
        let ok = Path::new("/var/lib/docker/swarm");
        for bad in ["/var/lib/my docker", "/var/lib/%h", "/var/lib/$X", "relative", "/a\"nb"] {
            let e = drop_in(Path::new("/usr/bin/swarm-upgrade"), ok, Path::new(bad), "r1", 3)
                .unwrap_err();
            assert!(e.contains("upgrade.backup_managers = false"), "{bad}: {e}");
        }
        let e = drop_in(Path::new("/usr/bin/x"), ok, ok, "a/b", 3).unwrap_err();
        assert!(!e.is_empty(), "a run ID that is no path component is refused");
    }

    #[test]
    fn one_archive_a_run_however_often_the_engine_starts() {
        let root = tmp("backup-run");
        let swarm = root.join("swarm");
        std::fs::create_dir_all(swarm.join("raft")).unwrap();
        std::fs::write(swarm.join("raft/0.wal"), vec![7u8; 1000]).unwrap();
        std::fs::write(swarm.join("state.json"), b"[]").unwrap();
        assert_eq!(size_of(&swarm).unwrap(), 1002);
        let dir = root.join(DIR);
        let first = archive_for_run(&swarm, &dir, "run-1", 2).unwrap().expect("an archive");
        assert_eq!(archive_for_run(&swarm, &dir, "run-1", 2).unwrap(), None, "taken already");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        archive_for_run(&swarm, &dir, "run-2", 2).unwrap().expect("the next run's");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        archive_for_run(&swarm, &dir, "run-3", 2).unwrap().expect("and the one after");
        assert!(!first.exists(), "the oldest went: two kept");
        assert_eq!(list(&dir).len(), 2);
        let e = archive_for_run(&root.join("none"), &dir, "run-4", 2).unwrap_err();
        assert!(e.contains("holds no swarm state"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_partial_archive_left_behind_goes_and_a_slow_one_is_given_up() {
        let root = tmp("backup-partial");
        let swarm = root.join("swarm");
        std::fs::create_dir_all(&swarm).unwrap();
        std::fs::write(swarm.join("state.json"), b"[]").unwrap();
        let dir = root.join(DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let partial = dir.join(".swarm-20261201T000000Z-old.tar.gz.partial");
        std::fs::write(&partial, b"half").unwrap();
        archive_for_run_within(&swarm, &dir, "run-1", 3, ARCHIVE_LIMIT).unwrap().unwrap();
        assert!(!partial.exists(), "the partial file went");
        std::fs::remove_dir_all(&root).unwrap();
        let ms = std::time::Duration::from_millis;
        assert_eq!(within(ms(2000), || 7), Some(7));
        assert_eq!(within(ms(50), move || std::thread::sleep(ms(2000))), None, "given up");
    }
}
