//! `run`'s look before you leap (as `kubeadm upgrade apply` does): on a terminal, the plan and a
//! question before anything is changed; `--yes`, a run off a terminal and the timer's runs do
//! not ask.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

use crate::planner::Plan;

/// How long the question waits for its answer: a run left at its prompt holds nothing (the lock
/// is taken only after the answer) but does not wait forever either.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(600);

/// Whether an operator's `run` asks: without `--yes`, with a terminal on standard input (the
/// answer) and standard error (the plan and the question).
pub fn asks(yes: bool) -> bool {
    !yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Shows `plan` and asks whether it may run; returns once the answer is yes, else says why not.
/// Blocks the calling thread until the answer or [`ANSWER_WITHIN`]: nothing of the run is in
/// flight yet.
pub fn ask(plan: &Plan) -> Result<(), String> {
    eprint!("{}{}", super::plan::render(plan), question(plan));
    verdict(read_line_within(ANSWER_WITHIN))
}

/// The question under the plan.
fn question(plan: &Plan) -> String {
    format!(
        "\nUpgrade {} node(s) in {} batch(es) to {}? Nothing changes until you answer. [y/N] ",
        plan.nodes.len(),
        plan.batches.len(),
        plan.target
    )
}

/// What was read from standard input before the deadline: a line, the end of input, an error,
/// or nothing in time.
#[derive(Debug)]
enum Read {
    Line(String),
    End,
    Failed(String),
    TimedOut(Duration),
}

/// One line from standard input, read on a thread of its own so that a deadline can end the wait.
fn read_line_within(limit: Duration) -> Read {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = match std::io::stdin().read_line(&mut line) {
            Ok(0) => Read::End,
            Ok(_) => Read::Line(line),
            Err(e) => Read::Failed(e.to_string()),
        };
        let _ = tx.send(read);
    });
    rx.recv_timeout(limit).unwrap_or(Read::TimedOut(limit))
}

/// Yes (`y` or `yes`, any case) lets the run go; anything else is a no, saying what was heard.
fn verdict(read: Read) -> Result<(), String> {
    match read {
        Read::Line(l) if matches!(l.trim().to_lowercase().as_str(), "y" | "yes") => Ok(()),
        Read::Line(l) if l.trim().is_empty() => Err("the answer was empty, which means no".into()),
        Read::Line(l) => Err(format!("the answer was {:?}, not yes", l.trim())),
        Read::End => Err("standard input ended before an answer".into()),
        Read::Failed(e) => Err(format!("the answer could not be read: {e}")),
        Read::TimedOut(d) => Err(format!("no answer within {} s", d.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_lets_the_run_go_and_every_no_says_what_was_heard() {
        for yes in ["y\n", "Y\n", "yes\n", " YES \r\n"] {
            assert_eq!(verdict(Read::Line(yes.into())), Ok(()), "{yes:?}");
        }
        let no = |r| verdict(r).unwrap_err();
        assert_eq!(no(Read::Line("\n".into())), "the answer was empty, which means no");
        assert_eq!(no(Read::Line("yep\n".into())), "the answer was \"yep\", not yes");
        assert_eq!(no(Read::Line("n\n".into())), "the answer was \"n\", not yes");
        assert_eq!(no(Read::End), "standard input ended before an answer");
        assert_eq!(no(Read::TimedOut(ANSWER_WITHIN)), "no answer within 600 s");
    }

    #[test]
    fn the_question_names_the_nodes_batches_and_target() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "target": "28.5.2", "nodes": [], "batches": [], "skipped": []
        }))
        .unwrap();
        assert_eq!(
            question(&plan),
            "\nUpgrade 0 node(s) in 0 batch(es) to 28.5.2? Nothing changes until you answer. [y/N] "
        );
    }
}
