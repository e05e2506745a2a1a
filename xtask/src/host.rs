//! Running host commands with errors that show what failed, and installing the host tools the lab
//! needs from Debian's packages.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs a command; its stdout on success, else an error with the command and its stderr's tail.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> =
            err.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{shown} failed ({}): {}", out.status, tail.join("\n"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `bin` is on PATH.
pub fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Installs the Debian packages whose marker binaries are missing (`(binary, package)` pairs).
pub fn ensure_packages(needs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(bin, _)| !have(bin) && !Path::new(bin).is_file())
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("lab: installing {} from Debian", missing.join(" "));
    if !Path::new("/var/lib/apt/lists")
        .read_dir()
        .map(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with("_Packages")))
        })
        .unwrap_or(false)
    {
        run(Command::new("apt-get").args(["update", "-q"]))?;
    }
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))
    .context("the lab installs its tools with apt-get as root")?;
    Ok(())
}

/// The machine's Debian mirror, read from its apt sources (never written into the project).
pub fn mirror() -> Result<String> {
    let deb822 =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let from_deb822 = deb822
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|u| u.split_whitespace().next())
        .map(str::to_string);
    let legacy = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    let from_legacy = legacy
        .lines()
        .filter(|l| l.starts_with("deb "))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http")).map(str::to_string));
    from_deb822.or(from_legacy).context(
        "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list",
    )
}
