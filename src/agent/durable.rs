//! Files the agent must not lose or find half-written after a power cut (the fencing record).

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` so that after a crash it holds the old bytes or the new ones, and
/// once this returns, the new ones for good: a temporary file beside it is written and synced,
/// renamed over it, and the directory synced (the rename is an entry in it). A plain
/// write-and-rename can leave an empty file after a power cut, and a lost rename brings an old
/// fencing token back.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir =
            std::env::temp_dir().join(format!("swarm-upgrade-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fence.json");
        replace(&file, b"{\"highest\":3}").unwrap();
        replace(&file, b"{\"highest\":4}").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"highest\":4}");
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["fence.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = replace(&file, b"{}").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "a missing directory is an error");
    }
}
