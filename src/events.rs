//! What a run tells the outside world as it goes (the webhook): our own type, sent by the
//! coordinator on a channel that never blocks it.

use serde::Serialize;

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A run started (or was taken over).
    RunStarted {
        /// Run ID.
        run: String,
        /// Target version.
        target: String,
        /// Nodes in order.
        nodes: Vec<String>,
        /// Whether this coordinator took over an interrupted run.
        resumed: bool,
    },
    /// A node is at the target and its services converged.
    NodeDone {
        /// Run ID.
        run: String,
        /// Host name.
        node: String,
        /// Seconds from its start to done.
        seconds: u64,
    },
    /// A node failed a step; the machine picks the recovery.
    NodeFailed {
        /// Run ID.
        run: String,
        /// Host name.
        node: String,
        /// Why.
        reason: String,
    },
    /// A node's hook ran and failed.
    HookFailed {
        /// Run ID.
        run: String,
        /// Host name.
        node: String,
        /// `before_drain`, `after_verify` or `on_failure`.
        hook: String,
        /// What happened, with the last line of its output.
        why: String,
    },
    /// A node went back to its previous packages.
    RolledBack {
        /// Run ID.
        run: String,
        /// Host name.
        node: String,
    },
    /// The canary nodes are done: the run holds until approved (or its soak).
    RunHeld {
        /// Run ID.
        run: String,
        /// The canary nodes.
        canary: Vec<String>,
        /// What it waits for.
        waiting_for: String,
    },
    /// The hold after the canary was let go: the run goes on.
    RunReleased {
        /// Run ID.
        run: String,
        /// `approve by <holder>`, or `soak`.
        by: String,
    },
    /// The alert gate is closed before a node: the run waits (at most `gates.wait`).
    GateClosed {
        /// Run ID.
        run: String,
        /// The node that waits.
        node: String,
        /// Which alerts fire, or why the monitoring system cannot be asked.
        why: String,
    },
    /// The alert gate opened again: the node goes on.
    GateOpened {
        /// Run ID.
        run: String,
        /// The node that waited.
        node: String,
        /// How long it waited.
        seconds: u64,
    },
    /// The run ended.
    RunFinished {
        /// Run ID.
        run: String,
        /// `succeeded`, `failed` or `aborted`.
        outcome: String,
        /// Why it ended that way.
        reason: String,
    },
}

impl Event {
    /// One line for people (the Slack message's text).
    pub fn text(&self) -> String {
        match self {
            Event::RunStarted { run, target, nodes, resumed } => {
                let verb = if *resumed { "resumed" } else { "started" };
                format!(
                    "swarm-upgrade: run {run} {verb}: {} nodes to {target} ({})",
                    nodes.len(),
                    nodes.join(", ")
                )
            }
            Event::NodeDone { run, node, seconds } => {
                format!("swarm-upgrade: {node} done in {seconds}s (run {run})")
            }
            Event::NodeFailed { run, node, reason } => {
                format!("swarm-upgrade: {node} failed: {reason} (run {run})")
            }
            Event::HookFailed { run, node, hook, why } => {
                format!("swarm-upgrade: hooks.{hook} failed on {node}: {why} (run {run})")
            }
            Event::RolledBack { run, node } => {
                format!("swarm-upgrade: {node} rolled back to its previous packages (run {run})")
            }
            Event::RunHeld { run, canary, waiting_for } => format!(
                "swarm-upgrade: run {run} holds after its canary ({}): waiting for {waiting_for}",
                canary.join(", ")
            ),
            Event::RunReleased { run, by } => {
                format!("swarm-upgrade: run {run} goes on after its canary ({by})")
            }
            Event::GateClosed { run, node, why } => format!(
                "swarm-upgrade: run {run} waits before {node}: the alert gate is closed ({why})"
            ),
            Event::GateOpened { run, node, seconds } => format!(
                "swarm-upgrade: run {run} goes on with {node}: the alert gate opened after {seconds} s"
            ),
            Event::RunFinished { run, outcome, reason } => {
                format!("swarm-upgrade: run {run} {outcome}: {reason}")
            }
        }
    }

    /// The webhook's JSON body: Slack's `text`, and the event itself for other receivers.
    pub(crate) fn payload(&self) -> serde_json::Value {
        serde_json::json!({ "text": self.text(), "username": "swarm-upgrade", "swarm_upgrade": self })
    }
}

/// Where the coordinator sends events; sending never waits.
pub type Sink = tokio::sync::mpsc::UnboundedSender<Event>;
