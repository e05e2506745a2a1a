//! Hooks: the operator's commands a node's agent runs on that node at three points of its
//! upgrade (before its drain, after its verification, when it failed), and what became of each
//! run of one. The commands are the node's own configuration (`[hooks]`); the coordinator only
//! says when.

use serde::{Deserialize, Serialize};

/// Where in a node's upgrade a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookPoint {
    /// Before anything changes on the node (before it is paused and drained): a failure stops
    /// the run there, the node untouched.
    BeforeDrain,
    /// After the node's verification passed: a failure marks the node for attention, the
    /// upgrade stays.
    AfterVerify,
    /// Once the node's part ended in failure (rolled back, restored, or left for a person).
    OnFailure,
}

/// Every hook point, in the order a node meets them.
pub const HOOK_POINTS: [HookPoint; 3] =
    [HookPoint::BeforeDrain, HookPoint::AfterVerify, HookPoint::OnFailure];

impl HookPoint {
    /// Its configuration key (`hooks.before_drain`).
    pub fn key(self) -> &'static str {
        match self {
            HookPoint::BeforeDrain => "before_drain",
            HookPoint::AfterVerify => "after_verify",
            HookPoint::OnFailure => "on_failure",
        }
    }

    /// Its name on the wire and in `SWARM_UPGRADE_HOOK` (`before-drain`).
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::BeforeDrain => "before-drain",
            HookPoint::AfterVerify => "after-verify",
            HookPoint::OnFailure => "on-failure",
        }
    }

    /// The point named `name` ([`HookPoint::name`]).
    pub fn from_name(name: &str) -> Option<HookPoint> {
        HOOK_POINTS.into_iter().find(|h| h.name() == name)
    }
}

/// A hook a node's agent has configured, and why it could not run, if it could not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    /// Where it runs.
    pub point: HookPoint,
    /// The command (an absolute path).
    pub command: String,
    /// Why it cannot run (missing, not a file, not executable); `None`: it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One run of a hook on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    /// Where it ran.
    pub point: HookPoint,
    /// The command.
    pub command: String,
    /// Its exit code; `None` when it was killed (its time was up) or could not start.
    pub exit: Option<i32>,
    /// Whether it was killed at the end of `hooks.timeout`.
    #[serde(default)]
    pub timed_out: bool,
    /// The signal that ended it, when one did (and not its timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// How long it ran, in milliseconds.
    pub millis: u64,
    /// Its output, stdout and stderr together, the last [`OUTPUT_KEPT`] bytes of it.
    pub output: String,
}

/// How much of a hook's output the run record keeps (its end, where errors are): a shard of 16
/// nodes' records with three hook runs each stays within the store's write budget. The agent's
/// journal has 4 KiB.
pub const OUTPUT_KEPT: usize = 160;

impl HookRun {
    /// Whether it succeeded: exit 0 within its time.
    pub fn succeeded(&self) -> bool {
        self.exit == Some(0) && !self.timed_out
    }

    /// What happened, for people: `hooks.before_drain (/etc/…/lb-out) exited 3 after 1.2 s: <last line>`.
    pub fn summary(&self) -> String {
        let how = match (self.exit, self.timed_out, self.signal) {
            (_, true, _) => "was killed at the end of hooks.timeout".to_string(),
            (Some(code), false, _) => format!("exited {code}"),
            (None, false, Some(signal)) => format!("was killed by signal {signal}"),
            (None, false, None) => "could not run".to_string(),
        };
        let last = self.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        format!(
            "hooks.{} ({}) {how} after {:.1} s: {}",
            self.point.key(),
            self.command,
            self.millis as f64 / 1000.0,
            last.trim()
        )
    }
}

/// The end of `text`, at most [`OUTPUT_KEPT`] bytes cut at a character boundary, its control
/// characters but newlines and tabs shown as `?` (JSON would write each as six).
pub fn kept(text: &str) -> String {
    let shown: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' && c != '\t' { '?' } else { c })
        .collect();
    if shown.len() <= OUTPUT_KEPT {
        return shown;
    }
    let mut from = shown.len() - OUTPUT_KEPT;
    while !shown.is_char_boundary(from) {
        from += 1;
    }
    format!("…{}", &shown[from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_named_on_the_wire_and_keyed_in_the_configuration() {
        for p in HOOK_POINTS {
            assert_eq!(HookPoint::from_name(p.name()), Some(p));
            assert_eq!(p.key().replace('_', "-"), p.name());
        }
        assert_eq!(HookPoint::from_name("before_drain"), None);
    }

    #[test]
    fn a_run_says_how_it_ended_with_its_last_line() {
        let mut run = HookRun {
            point: HookPoint::BeforeDrain,
            command: "/etc/swarm-upgrade/hooks/lb-out".into(),
            exit: Some(3),
            timed_out: false,
            signal: None,
            millis: 1250,
            output: "connecting\nno such backend\n\n".into(),
        };
        assert!(!run.succeeded());
        assert_eq!(
            run.summary(),
            "hooks.before_drain (/etc/swarm-upgrade/hooks/lb-out) exited 3 after 1.2 s: no such backend"
        );
        run.timed_out = true;
        run.exit = None;
        assert!(run.summary().contains("was killed at the end of hooks.timeout"));
        run.timed_out = false;
        run.signal = Some(9);
        assert!(run.summary().contains("was killed by signal 9"));
        run.exit = Some(0);
        assert!(run.succeeded());
    }

    #[test]
    fn only_the_end_of_a_long_output_is_kept_without_control_characters() {
        let long = format!("{}é{}", "a".repeat(5000), "z".repeat(100));
        let k = kept(&long);
        assert!(k.starts_with('…') && k.ends_with(&"z".repeat(100)), "{}", &k[..20]);
        assert!(k.len() <= OUTPUT_KEPT + '…'.len_utf8());
        assert_eq!(kept("short\n\tline\u{1b}[31m\0"), "short\n\tline?[31m?");
    }
}
