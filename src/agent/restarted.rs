//! Whether the engine already runs what was just installed: docker-ce's maintainer scripts
//! restart docker.service inside the install, so the Restart phase's own restart would stop the
//! engine a second time (a manager's second leader election) for nothing. Skipped only when all
//! of this holds; otherwise the engine is restarted as before (Debian's docker.io package, for
//! one, does not restart it).

use std::time::SystemTime;

use bollard::Docker;

use crate::adapters::systemd::Systemd;

/// Why the engine need not be restarted again, or `None`: docker.service is active and running,
/// it became active after the install began (`install_began`, `None` when this agent installed
/// nothing since it started), and the running dockerd reports the version of the `dockerd` on
/// disk.
pub(crate) async fn already(
    systemd: &Systemd,
    docker: &Docker,
    unit: &str,
    dockerd: &std::path::Path,
    install_began: Option<SystemTime>,
) -> Option<String> {
    let began = install_began?;
    let (active, sub) = systemd.state(unit).await.ok()?;
    if (active.as_str(), sub.as_str()) != ("active", "running") {
        return None;
    }
    let since = systemd.active_since(unit).await.ok()??;
    if since <= began {
        return None;
    }
    let running = docker.version().await.ok()?.version?;
    let output = std::process::Command::new(dockerd).arg("--version").output().ok()?;
    let on_disk = version_of(&String::from_utf8_lossy(&output.stdout))?;
    (running == on_disk).then(|| {
        format!("{unit} was restarted by the install and runs the installed dockerd {running}")
    })
}

/// The version in `dockerd --version`'s output (`Docker version 28.5.2+dfsg4, build 8e2b8b0`).
fn version_of(output: &str) -> Option<String> {
    let rest = output.trim().strip_prefix("Docker version ")?;
    let version = rest.split(',').next()?.trim();
    (!version.is_empty()).then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn the_version_is_read_from_dockerd_s_own_words() {
        let cases = [
            ("Docker version 28.5.2+dfsg4, build 8e2b8b0\n", Some("28.5.2+dfsg4")),
            ("Docker version 26.1.5, build 411e817", Some("26.1.5")),
            ("dockerd: command not found", None),
            ("Docker version , build x", None),
            ("", None),
        ];
        for (output, want) in cases {
            assert_eq!(version_of(output).as_deref(), want, "{output:?}");
        }
    }
}
