//! The agent's side of hooks (see [`crate::model::hooks`]): which hooks this node's configuration
//! names and whether each can run, and running one: its environment set, stdout and stderr in one
//! pipe, its own process group (killed whole at the end of its time), its output's end kept.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Hooks;
use crate::model::hooks::{HOOK_POINTS, HookPoint, HookRun, HookStatus, OUTPUT_KEPT, kept};

/// How long the hook's output is waited for once it has exited (a child it left in the
/// background may hold the pipe: the group is then killed).
const LINGER: Duration = Duration::from_secs(2);

/// Why `command` cannot run as a hook, if it cannot.
pub fn problem(command: &Path) -> Option<String> {
    let shown = command.display();
    match std::fs::metadata(command) {
        Err(e) => Some(format!("{shown} cannot be used: {e}")),
        Ok(m) if !m.is_file() => Some(format!("{shown} is not a file")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Some(format!("{shown} is not executable (chmod +x {shown})"))
        }
        // Run as root: only root (or the agent's own user) may have written it, as cron asks.
        Ok(m) if m.uid() != 0 && m.uid() != own_uid() => Some(format!(
            "{shown} is owned by uid {}, not root: a hook runs as root (chown root {shown})",
            m.uid()
        )),
        Ok(m) if m.permissions().mode() & 0o022 != 0 => Some(format!(
            "{shown} is writable by others than its owner: a hook runs as root (chmod go-w {shown})"
        )),
        Ok(_) => None,
    }
}

/// The hooks `hooks` names, each with why it cannot run, if it cannot.
pub fn statuses(hooks: &Hooks) -> Vec<HookStatus> {
    HOOK_POINTS
        .into_iter()
        .filter_map(|point| {
            let command = hooks.command(point)?;
            Some(HookStatus {
                point,
                command: command.display().to_string(),
                problem: problem(command),
            })
        })
        .collect()
}

/// Runs `command` at `point` with `env` added to the agent's environment, for at most `limit`.
pub fn run(point: HookPoint, command: &Path, env: &[(String, String)], limit: Duration) -> HookRun {
    let started = Instant::now();
    let ended = |exit, timed_out, signal, output: String| HookRun {
        point,
        command: command.display().to_string(),
        exit,
        timed_out,
        signal,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        output: kept(&output),
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(e) => {
            return ended(None, false, None, format!("cannot make a pipe for its output: {e}"));
        }
    };
    let child = writer.try_clone().and_then(|out| {
        Command::new(command)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(writer)
            // Its own group: killed whole, with whatever it started.
            .process_group(0)
            .spawn()
    });
    // (The command, and with it our ends of the pipe's writing side, is gone: the reader sees
    // the end of the output once the hook and its children have closed theirs.)
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot start {}: {e}", command.display());
            return ended(None, false, None, why);
        }
    };
    let group = child.id() as i32;
    let output = read_in_background(reader);
    let deadline = started + limit;
    let (exit, timed_out, signal) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status.code(), false, status.signal()),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(group);
                let _ = child.wait();
                break (None, true, None);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break (None, false, None),
        }
    };
    let text = match output.recv_timeout(LINGER) {
        Ok(text) => text,
        Err(_) => {
            kill_group(group);
            output.recv_timeout(LINGER).unwrap_or_else(|_| {
                "(its output was not closed: a process it started outside its group holds it)"
                    .into()
            })
        }
    };
    // The journal keeps more of it than the run record.
    tracing::info!(hook = point.name(), command = %command.display(), ?exit, timed_out, output = %kept_long(&text), "hook ran");
    ended(exit, timed_out, signal, text)
}

/// The end of a hook's output for the agent's journal: at most 4 KiB.
fn kept_long(text: &str) -> &str {
    let mut from = text.len().saturating_sub(4096);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..]
}

/// Reads the pipe to its end on a thread of its own, keeping only its last bytes.
fn read_in_background(mut reader: std::io::PipeReader) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept_bytes: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept_bytes.extend_from_slice(&buf[..n]);
            if kept_bytes.len() > 2 * OUTPUT_KEPT {
                kept_bytes.drain(..kept_bytes.len() - OUTPUT_KEPT);
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&kept_bytes).into_owned());
    });
    rx
}

/// The agent's own user ID.
fn own_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Kills process group `group` (the hook and what it started).
fn kill_group(group: i32) {
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, body: &str, mode: u32) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("swarm-upgrade-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn env() -> Vec<(String, String)> {
        vec![("SWARM_UPGRADE_NODE".into(), "worker1".into())]
    }

    #[test]
    fn a_hook_gets_its_environment_and_both_streams_are_kept() {
        let hook = script("ok", "echo node=$SWARM_UPGRADE_NODE; echo oops >&2; exit 0", 0o755);
        let run = run(HookPoint::BeforeDrain, &hook, &env(), Duration::from_secs(10));
        assert!(run.succeeded(), "{run:?}");
        assert_eq!(run.output, "node=worker1\noops\n");
    }

    #[test]
    fn a_failing_hook_keeps_its_exit_code() {
        let hook = script("fails", "echo no such backend; exit 3", 0o755);
        let run = run(HookPoint::AfterVerify, &hook, &env(), Duration::from_secs(10));
        assert_eq!((run.exit, run.timed_out), (Some(3), false));
        let summary = run.summary();
        assert!(
            summary.contains(") exited 3 after ") && summary.ends_with(" s: no such backend"),
            "{summary}"
        );
    }

    #[test]
    fn a_hook_past_its_time_is_killed_with_what_it_started() {
        let hook = script("slow", "sleep 30 & echo started; sleep 30", 0o755);
        let t0 = Instant::now();
        let run = run(HookPoint::BeforeDrain, &hook, &env(), Duration::from_millis(500));
        assert!(run.timed_out && run.exit.is_none(), "{run:?}");
        assert_eq!(run.output, "started\n");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_hook_that_leaves_a_child_behind_is_not_waited_for_forever() {
        let hook = script("daemon", "sleep 30 & echo done", 0o755);
        let t0 = Instant::now();
        let run = run(HookPoint::AfterVerify, &hook, &env(), Duration::from_secs(10));
        assert_eq!((run.exit, run.output.as_str()), (Some(0), "done\n"));
        assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_hook_that_cannot_run_is_named_with_why() {
        let plain = script("plain", "exit 0", 0o644);
        let shown = plain.display();
        assert_eq!(
            problem(&plain).unwrap(),
            format!("{shown} is not executable (chmod +x {shown})")
        );
        assert!(problem(Path::new("/nonexistent/hook")).unwrap().contains("cannot be used"));
        let open = script("open", "exit 0", 0o777);
        assert!(problem(&open).unwrap().contains("is writable by others than its owner"));
        assert!(problem(Path::new("/tmp")).unwrap().ends_with("is not a file"));
        let run = run(
            HookPoint::OnFailure,
            Path::new("/nonexistent/hook"),
            &env(),
            Duration::from_secs(1),
        );
        assert!(run.exit.is_none() && run.output.starts_with("cannot start"), "{run:?}");
    }
}
