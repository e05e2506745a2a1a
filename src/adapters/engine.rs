//! Engine checks made on a node: the daemon configuration must parse, be compatible with swarm
//! mode and (where the installed dockerd can say, `dockerd --validate`) be accepted by dockerd.
//! The agent makes them when it describes its node, so preflight refuses a node whose engine
//! would not start again, and once more right before it restarts the engine.

use std::path::Path;
use std::time::Duration;

use crate::model::EngineConfigProblem;

/// How long `dockerd --validate` may take (it answers in a tenth of a second).
const VALIDATE_LIMIT: Duration = Duration::from_secs(20);

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

impl EngineCheckError {
    /// The problem as the agent reports it: the file, the option at fault, what is wrong.
    pub(crate) fn problem(&self) -> EngineConfigProblem {
        let (file, keys, detail) = match self {
            EngineCheckError::DaemonJson { path, line, column, message } => {
                (path, vec![], format!("line {line}, column {column}: not valid JSON ({message})"))
            }
            EngineCheckError::NotAnObject { path } => {
                (path, vec![], "not a JSON object of daemon options".to_string())
            }
            EngineCheckError::LiveRestore { path } => (
                path,
                vec!["live-restore".to_string()],
                "\"live-restore\": true is not supported in swarm mode (dockerd refuses to start its swarm with it)".to_string(),
            ),
        };
        EngineConfigProblem { file: file.clone(), keys, detail }
    }
}

/// What `dockerd --validate --config-file FILE` said of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// dockerd accepts it.
    Accepted,
    /// dockerd refuses it, in its own words.
    Refused(String),
    /// This dockerd cannot tell (older than 23, missing, or silent), and why.
    Unknown(String),
}

/// Reads dockerd's answer to `--validate` from its exit code and output.
pub(crate) fn read_validation(code: i32, stdout: &str, stderr: &str) -> Validation {
    let said = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
    if code == 0 {
        Validation::Accepted
    } else if said.contains("unknown flag: --validate") {
        Validation::Unknown("this dockerd has no --validate (it came with Docker 23)".into())
    } else if said.is_empty() {
        Validation::Refused(format!("exit {code}, without a word"))
    } else if let Some(flag) = said.find("unknown flag: ") {
        // A flag it does not know: its words, without the usage text that follows them.
        let rest = &said[flag..];
        Validation::Refused(rest.lines().next().unwrap_or(rest).trim().to_string())
    } else {
        Validation::Refused(said.lines().map(str::trim).collect::<Vec<_>>().join(" "))
    }
}

/// The options dockerd named as unknown, from its refusal ("the following directives don't match
/// any configuration option: a, b").
pub(crate) fn unknown_options(said: &str) -> Vec<String> {
    const AT: &str = "don't match any configuration option: ";
    match said.find(AT) {
        Some(i) => said[i + AT.len()..].split(", ").map(|k| k.trim().to_string()).collect(),
        None => Vec::new(),
    }
}

/// Asks `dockerd` whether it would start with `flags` (docker.service's `ExecStart`, its drop-ins
/// applied) and the configuration `file` (`None`: none; dockerd's own default then): unknown
/// flags, bad values and a setting given both as a flag and in the file are refused. A dockerd
/// that cannot be run cannot tell. A bare name is looked up on `PATH`.
pub fn validate(dockerd: &Path, file: Option<&Path>, flags: &[String]) -> Validation {
    // As an OsStr, not a Path: duct runs a one-part relative Path from the current directory
    // (`./dockerd`), where the agent, started in /, finds none.
    let program = dockerd.as_os_str();
    let mut args: Vec<std::ffi::OsString> = vec!["--validate".into()];
    if let Some(file) = file.filter(|_| !flags.iter().any(|f| f.starts_with("--config-file"))) {
        args.extend(["--config-file".into(), file.as_os_str().to_owned()]);
    }
    args.extend(flags.iter().map(Into::into));
    let cmd = duct::cmd(program, args).stdin_null().stdout_capture().stderr_capture().unchecked();
    let handle = match cmd.start() {
        Ok(h) => h,
        Err(e) => return Validation::Unknown(format!("cannot run {}: {e}", dockerd.display())),
    };
    match handle.wait_timeout(VALIDATE_LIMIT) {
        Ok(Some(out)) => read_validation(
            out.status.code().unwrap_or(-1),
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
        ),
        Ok(None) => {
            let _ = handle.kill();
            Validation::Unknown(format!("dockerd --validate did not answer in {VALIDATE_LIMIT:?}"))
        }
        Err(e) => Validation::Unknown(format!("dockerd --validate: {e}")),
    }
}

/// Why dockerd would not start with the configuration in `file` and the unit's `flags`, if it
/// would not: our own checks first (they know swarm mode, which `--validate` does not), then
/// `dockerd` itself. No file is dockerd's defaults, which are fine.
pub fn engine_config_problem(
    file: &Path,
    dockerd: &Path,
    flags: &[String],
) -> Option<EngineConfigProblem> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Some(EngineConfigProblem {
                file: file.display().to_string(),
                keys: vec![],
                detail: format!("cannot be read: {e}"),
            });
        }
    };
    if let Err(e) = check_daemon_json(file, text.as_deref()) {
        return Some(e.problem());
    }
    match validate(dockerd, text.is_some().then_some(file), flags) {
        Validation::Accepted => None,
        Validation::Unknown(why) => {
            tracing::debug!(file = %file.display(), why, "dockerd did not validate the configuration");
            None
        }
        Validation::Refused(said) if !flags.is_empty() && said.contains("flag") => {
            Some(EngineConfigProblem {
                file: ENGINE_UNIT.into(),
                keys: unknown_options(&said),
                detail: format!(
                    "dockerd --validate with its unit's ExecStart flags ({}): {said}; `systemctl cat {ENGINE_UNIT}` shows the drop-in that sets them",
                    flags.join(" ")
                ),
            })
        }
        Validation::Refused(said) => Some(EngineConfigProblem {
            file: file.display().to_string(),
            keys: unknown_options(&said),
            detail: format!("dockerd --validate: {said}"),
        }),
    }
}

/// Whether `path` is one of the engine's own unit files.
pub fn is_engine_unit(path: &str) -> bool {
    path.ends_with("/systemd/system/docker.service")
        || path.ends_with("/systemd/system/docker.socket")
}

/// The engine's own unit files edited in place (`altered`: the engine package's files no longer
/// as it installed them): an upgrade replaces them with the new package's, and the edits are
/// lost without a word when the engine restarts.
pub fn edited_units(
    altered: &[crate::adapters::apt::parse::Altered],
) -> Option<EngineConfigProblem> {
    let unit = altered.iter().find(|a| !a.conffile && is_engine_unit(&a.path))?;
    Some(EngineConfigProblem {
        file: unit.path.clone(),
        keys: vec![],
        detail: "edited since the package installed it: the upgrade replaces it with the new package's unit, and the edits would be lost at the engine's restart".into(),
    })
}

/// The engine's unit, whose `ExecStart` flags are checked with the configuration.
const ENGINE_UNIT: &str = "docker.service";

/// The flags of an `ExecStart` command line, when it runs dockerd itself and they can be read
/// as they are: a wrapper script's cannot be checked, nor a line with variables systemd expands
/// from the unit's environment (Debian's docker.io: `-H fd:// $DOCKER_OPTS`, from
/// /etc/default/docker), which systemd reports unexpanded.
pub fn dockerd_flags(argv: &[String]) -> Vec<String> {
    match argv.split_first() {
        Some((program, flags))
            if Path::new(program).file_name() == Some("dockerd".as_ref())
                && !flags.iter().any(|f| f.contains('$') || f.contains('%')) =>
        {
            flags.to_vec()
        }
        _ => Vec::new(),
    }
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

    #[test]
    fn each_check_error_names_its_file_and_option() {
        let p = Path::new("/etc/docker/daemon.json");
        let live = check_daemon_json(p, Some(r#"{"live-restore": true}"#)).unwrap_err().problem();
        assert_eq!(
            (live.file.as_str(), live.keys.as_slice()),
            (p.to_str().unwrap(), &["live-restore".to_string()][..])
        );
        let bad = check_daemon_json(p, Some("{,}")).unwrap_err().problem();
        assert!(
            bad.keys.is_empty() && bad.detail.starts_with("line 1, column 2: not valid JSON"),
            "{bad:?}"
        );
    }

    /// Captured from dockerd 26.1.5 and 28.5.2 (Debian's docker.io, the lab's engines) and from
    /// 20.10.24 (bookworm's), which has no --validate.
    #[test]
    fn dockerds_answers_to_validate_are_read() {
        assert_eq!(read_validation(0, "", "configuration OK\n"), Validation::Accepted);
        let unknown = "unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives don't match any configuration option: other-bad, no-such-option\n";
        let Validation::Refused(said) = read_validation(1, "", unknown) else { panic!() };
        assert_eq!(said, unknown.trim());
        assert_eq!(unknown_options(&said), ["other-bad", "no-such-option"]);
        let level = "unable to configure the Docker daemon with file /etc/docker/daemon.json: merged configuration validation from file and command line flags failed: invalid logging level: nope\n";
        let Validation::Refused(said) = read_validation(1, "", level) else { panic!() };
        assert!(said.ends_with("invalid logging level: nope") && unknown_options(&said).is_empty());
        let old = "Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125\n";
        assert!(matches!(read_validation(1, "", old), Validation::Unknown(_)));
        // A unit's flag it does not know: the flag, not the usage text after it.
        let flag = "Status: unknown flag: --no-such-flag\nSee 'dockerd --help'.\n\nUsage:\tdockerd [OPTIONS]\n\nA self-sufficient runtime for containers.\n";
        assert_eq!(
            read_validation(1, "", flag),
            Validation::Refused("unknown flag: --no-such-flag".into())
        );
        let both = "unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives are specified both as a flag and in the configuration file: hosts: (from flag: [fd://], from file: [unix:///x.sock])\n";
        assert_eq!(read_validation(1, "", both), Validation::Refused(both.trim().into()));
    }

    #[test]
    fn only_the_engines_own_unit_files_edited_in_place_are_a_problem() {
        use crate::adapters::apt::parse::Altered;
        let a = |path: &str, conffile| Altered { path: path.into(), conffile };
        assert_eq!(
            edited_units(&[a("/etc/default/docker", true), a("/usr/bin/docker-proxy", false)]),
            None
        );
        let p = edited_units(&[a("/usr/lib/systemd/system/docker.service", false)]).unwrap();
        assert_eq!(p.file, "/usr/lib/systemd/system/docker.service");
        assert!(p.detail.contains("the upgrade replaces it"), "{p:?}");
        assert!(edited_units(&[a("/lib/systemd/system/docker.socket", false)]).is_some());
    }

    #[test]
    fn only_dockerds_own_command_line_is_checked() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dockerd_flags(&argv(&["/usr/bin/dockerd", "-H", "fd://", "--containerd=/run/c.sock"])),
            argv(&["-H", "fd://", "--containerd=/run/c.sock"])
        );
        assert!(
            dockerd_flags(&argv(&["/usr/local/bin/start-docker.sh", "-H", "fd://"])).is_empty()
        );
        assert!(dockerd_flags(&[]).is_empty());
        // Debian's docker.io unit, as systemd reports its ExecStart (unexpanded).
        let debian = argv(&["/usr/sbin/dockerd", "-H", "fd://", "$DOCKER_OPTS"]);
        assert!(dockerd_flags(&debian).is_empty());
    }

    #[test]
    fn the_file_is_checked_before_dockerd_is_asked_and_no_file_is_fine() {
        let dir = std::env::temp_dir().join(format!("su-engine-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (file, no_dockerd) = (dir.join("daemon.json"), Path::new("/nonexistent/dockerd"));
        assert_eq!(engine_config_problem(&file, no_dockerd, &[]), None);
        std::fs::write(&file, r#"{"live-restore": true}"#).unwrap();
        let p = engine_config_problem(&file, no_dockerd, &[]).unwrap();
        assert_eq!(p.keys, ["live-restore"]);
        std::fs::write(&file, r#"{"no-such-option": true}"#).unwrap();
        assert_eq!(engine_config_problem(&file, no_dockerd, &[]), None, "no dockerd: cannot tell");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bare_name_is_looked_up_on_path() {
        // `true` and `false` stand in for dockerd: both ignore the arguments.
        let file = Some(Path::new("/etc/docker/daemon.json"));
        assert_eq!(validate(Path::new("true"), file, &[]), Validation::Accepted);
        assert_eq!(
            validate(Path::new("false"), file, &[]),
            Validation::Refused("exit 1, without a word".into())
        );
    }

    #[test]
    fn a_dockerd_that_cannot_be_run_cannot_tell() {
        let v = validate(
            Path::new("/nonexistent/dockerd"),
            Some(Path::new("/etc/docker/daemon.json")),
            &[],
        );
        assert!(
            matches!(&v, Validation::Unknown(why) if why.contains("/nonexistent/dockerd")),
            "{v:?}"
        );
    }
}
