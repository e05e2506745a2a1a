//! Engine checks made on a node before its engine is restarted: the daemon configuration must
//! parse and be compatible with swarm mode, and the disk must hold the packages.

use std::path::Path;

/// A reason not to restart the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineCheckError {
    /// daemon.json is not valid JSON: dockerd would refuse to start.
    #[error(
        "{path}:{line}:{column}: not valid JSON ({message}): dockerd would not start; fix the file before upgrading"
    )]
    DaemonJson {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// daemon.json is JSON but not an object.
    #[error("{path}: must hold a JSON object of daemon options")]
    NotAnObject {
        /// The file.
        path: String,
    },
    /// `live-restore` is on: dockerd refuses it in swarm mode.
    #[error(
        "{path}: \"live-restore\": true is not supported in swarm mode (dockerd refuses to start its swarm with it); remove it before upgrading"
    )]
    LiveRestore {
        /// The file.
        path: String,
    },
}

/// Checks the text of daemon.json (`None`: no file, which is fine).
pub(crate) fn check_daemon_json(path: &Path, text: Option<&str>) -> Result<(), EngineCheckError> {
    let Some(text) = text else { return Ok(()) };
    let path_s = path.display().to_string();
    if text.trim().is_empty() {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| EngineCheckError::DaemonJson {
            path: path_s.clone(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    let obj =
        value.as_object().ok_or_else(|| EngineCheckError::NotAnObject { path: path_s.clone() })?;
    if obj.get("live-restore").and_then(|v| v.as_bool()) == Some(true) {
        return Err(EngineCheckError::LiveRestore { path: path_s });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_json_must_parse_and_not_enable_live_restore() {
        let p = Path::new("/etc/docker/daemon.json");
        assert_eq!(check_daemon_json(p, None), Ok(()));
        assert_eq!(check_daemon_json(p, Some("")), Ok(()));
        assert_eq!(
            check_daemon_json(p, Some(r#"{"log-driver": "journald", "live-restore": false}"#)),
            Ok(())
        );
        let e = check_daemon_json(p, Some("{\n  \"log-driver\": \"journald\",\n}")).unwrap_err();
        assert!(e.to_string().starts_with("/etc/docker/daemon.json:3:1: not valid JSON"), "{e}");
        assert!(matches!(
            check_daemon_json(p, Some(r#"{"live-restore": true}"#)),
            Err(EngineCheckError::LiveRestore { .. })
        ));
        assert!(matches!(
            check_daemon_json(p, Some("[]")),
            Err(EngineCheckError::NotAnObject { .. })
        ));
    }
}
