//! The names of the archives of a manager's swarm state (see `agent::backup`): the agent writes
//! them, the coordinator reads back which run took one.

/// The room for an archive of a node's swarm state, as its agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupRoom {
    /// Bytes of swarm state (`<data root>/swarm`), uncompressed.
    pub swarm_bytes: u64,
    /// Free bytes where the archives go.
    pub free_bytes: u64,
    /// Where the archives go.
    pub dir: String,
}

impl BackupRoom {
    /// Whether an archive surely fits: the swarm state fits twice (its uncompressed size bounds
    /// the archive, and a full disk would also keep the engine from starting).
    pub fn fits(&self) -> bool {
        self.free_bytes >= self.swarm_bytes.saturating_mul(2)
    }
}

/// An archive's name starts so.
pub const PREFIX: &str = "swarm-";
/// And ends so.
pub const SUFFIX: &str = ".tar.gz";

/// The archive's file name: `swarm-<UTC time>-<run>.tar.gz`, so that names sort by time.
pub fn file_name(run_id: &str, at: jiff::Timestamp) -> String {
    format!("{PREFIX}{}-{run_id}{SUFFIX}", at.strftime("%Y%m%dT%H%M%SZ"))
}

/// The run that took an archive, read from its path or file name ([`file_name`]'s form).
pub fn run_of(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let stamped = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    // `YYYYmmddTHHMMSSZ-`: 17 characters before the run ID.
    stamped.get(17..).filter(|_| stamped.as_bytes().get(16) == Some(&b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_says_when_and_which_run_whole() {
        let at: jiff::Timestamp = "2026-12-05T04:01:02Z".parse().unwrap();
        let name = file_name("run-1", at);
        assert_eq!(name, "swarm-20261205T040102Z-run-1.tar.gz");
        assert_eq!(run_of(&name), Some("run-1"));
        assert_eq!(run_of(&format!("/var/lib/swarm-upgrade/swarm-backups/{name}")), Some("run-1"));
        assert_eq!(run_of("swarm-x.tar.gz"), None);
        assert_eq!(run_of("notes.txt"), None);
    }
}
