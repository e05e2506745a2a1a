//! The free Raft backup (issue 17): a manager's swarm state (`<data root>/swarm`), archived
//! while its engine is stopped, as Docker's administration guide advises ("Back up the swarm":
//! stop the engine, back up the whole directory, start it), at the one moment an upgrade stops
//! the engine anyway. The archives go to a directory of their own (mode 0700, each archive 0600:
//! they hold the swarm's keys), written whole then renamed, and only the newest few are kept.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adapters::systemd::Systemd;

/// The engine's unit, stopped for the archive.
const ENGINE_UNIT: &str = "docker.service";

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

/// The cold backup: masks the engine (so that no client on docker.sock starts it again
/// meanwhile, see [`super::mask`]), stops it (within `stop`), archives `swarm` into `dir/name`,
/// and lifts the mask, whatever happened; the engine stays stopped until the install starts it.
/// Returns the archive's path.
pub(crate) async fn cold(
    systemd: &Systemd,
    stop: Duration,
    swarm: &Path,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, String> {
    let archived = async {
        super::mask::hold(systemd).await.map_err(|e| e.to_string())?;
        systemd
            .stop(ENGINE_UNIT, stop)
            .await
            .map_err(|e| format!("stopping {ENGINE_UNIT}: {e}"))?;
        archive(swarm, dir, name).map_err(|e| format!("archiving {}: {e}", swarm.display()))
    }
    .await;
    let unmasked = super::mask::release(systemd).await.map_err(|e| e.to_string());
    let path = archived?;
    unmasked.map(|()| path)
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
}
