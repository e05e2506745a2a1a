//! Build artefacts cached outside the repository, keyed by a hash of their recipe, so a warm lab
//! start rebuilds nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the lab keeps what it builds (Debian packages, the signed repository, node images).
pub const DIR: &str = "/var/cache/swarm-upgrade-lab";

/// A stable 64-bit FNV-1a hash (the same on every machine and toolchain).
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// Hash of a file's bytes.
pub fn file_hash(path: &Path) -> Result<u64> {
    Ok(fnv(&[&std::fs::read(path).with_context(|| format!("read {}", path.display()))?]))
}

/// `DIR/name`, built by `build` into a temporary sibling first and renamed when complete, so an
/// interrupted build is never mistaken for a cached one.
pub fn cached(name: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let path = Path::new(DIR).join(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(DIR)?;
    let partial = Path::new(DIR).join(format!("{name}.partial"));
    remove(&partial);
    build(&partial).with_context(|| format!("building {}", path.display()))?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// Removes a file or directory tree if present.
pub fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}
