//! Runs apt and dpkg through duct, keeping stderr for the error an operator reads. Blocking: the
//! agent calls these from a blocking task.

use std::collections::BTreeMap;

use super::parse::{self, Installed, RepoProblem};
use crate::model::DebVersion;

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
    let (program, rest) = args.split_first().expect("a command has a program");
    let out = duct::cmd(program, rest)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| AptError { command: args.join(" "), status: "could not start".into(), detail: e.to_string() })?;
    Ok(Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `args` and fails with apt's own error lines when it exits non-zero.
pub fn run_checked(args: &[String]) -> Result<Ran, AptError> {
    let ran = run(args)?;
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

/// The packages dpkg knows, with their state; unknown packages are simply absent (dpkg-query
/// exits 1 for them, which is not an error here).
pub fn installed(packages: &[String]) -> Result<Vec<Installed>, AptError> {
    let args = strings(&["dpkg-query", "-W", "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n"], packages);
    let ran = run(&args)?;
    if ran.code > 1 {
        return Err(AptError { command: args.join(" "), status: format!("exit {}", ran.code), detail: ran.stderr.trim().to_string() });
    }
    Ok(parse::dpkg_query(&ran.stdout))
}

/// Refreshes the package lists; the problems of each broken repository, if any.
pub fn update() -> Result<Vec<RepoProblem>, AptError> {
    let ran = run(&["apt-get".to_string(), "update".into(), "-q".into()])?;
    Ok(parse::update_problems(&format!("{}\n{}", ran.stdout, ran.stderr)))
}
