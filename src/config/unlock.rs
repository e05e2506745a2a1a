//! Where the swarm's unlock key comes from (an autolocked swarm): the environment variable
//! [`UNLOCK_KEY_ENV`], else the file `agent.unlock_key_file`. Never a command-line argument: those
//! are visible to every user of the host in the process list.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::AgentSettings;
use crate::model::UnlockKey;

/// The environment variable that gives the unlock key (before `agent.unlock_key_file`).
pub const UNLOCK_KEY_ENV: &str = "SWARM_UPGRADE_UNLOCK_KEY";

/// An unlock key that was given but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UnlockKeySourceError {
    /// The variable is set but holds no key.
    #[error(
        "{UNLOCK_KEY_ENV} does not hold a swarm unlock key: set it to what `docker swarm unlock-key -q` prints on a manager"
    )]
    Env,
    /// The file cannot be read.
    #[error("cannot read the unlock key file {path}: {why}; check agent.unlock_key_file")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        why: String,
    },
    /// The file is readable by others than its owner and group.
    #[error(
        "the unlock key file {path} can be read by any user (mode {mode:o}): `chmod 600 {path}`, it is the key that decrypts the swarm's managers"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key.
    #[error(
        "{path} does not hold a swarm unlock key: put in it what `docker swarm unlock-key -q` prints on a manager"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// The unlock key swarm-upgrade was given, if any.
pub fn unlock_key(agent: &AgentSettings) -> Result<Option<UnlockKey>, UnlockKeySourceError> {
    if let Some(text) = std::env::var_os(UNLOCK_KEY_ENV) {
        let text = text.to_string_lossy();
        return UnlockKey::parse(&text).map(Some).map_err(|_| UnlockKeySourceError::Env);
    }
    agent.unlock_key_file.as_deref().map(from_file).transpose()
}

fn from_file(path: &Path) -> Result<UnlockKey, UnlockKeySourceError> {
    let read = |e: std::io::Error| UnlockKeySourceError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        return Err(UnlockKeySourceError::Exposed { path: path.to_path_buf(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    UnlockKey::parse(&text)
        .map_err(|_| UnlockKeySourceError::Malformed { path: path.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_only_when_private_and_well_formed() {
        let dir = std::env::temp_dir().join(format!("swarm-upgrade-unlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("unlock.key");
        std::fs::write(&file, "SWMKEY-1-8O2lvdGHe/Q1XRJen1GP7Z33zw8TSmjIj4xSxZVcgRk\n").unwrap();
        let set = |mode| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode));
        set(0o644).unwrap();
        assert!(matches!(from_file(&file), Err(UnlockKeySourceError::Exposed { mode: 0o644, .. })));
        set(0o600).unwrap();
        assert!(from_file(&file).unwrap().as_str().starts_with("SWMKEY-1-"));
        std::fs::write(&file, "hunter2").unwrap();
        let e = from_file(&file).unwrap_err();
        assert!(e.to_string().contains("docker swarm unlock-key -q"), "{e}");
        assert!(matches!(from_file(&dir.join("none")), Err(UnlockKeySourceError::Read { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
