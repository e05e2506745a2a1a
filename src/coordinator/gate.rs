//! The alert gate carried out: before each node or batch starts, the monitoring system's firing
//! alerts (filtered by `gates.alert_filter`) are asked for; while any counts, or the monitoring
//! system cannot be asked, nothing starts, for at most `gates.wait`; then the run stops before
//! that node, having changed nothing on it. `plan` and a run's preflight ask once, and refuse a
//! monitoring system they cannot ask (see [`crate::model::alerts`]).

use std::time::Duration;

use super::{Coordinator, CoordinatorError};
use crate::events::Event;
use crate::machine::elapsed;
use crate::metrics;
use crate::model::alerts::GateAnswer;
use crate::model::plan::{Refusal, RefusalKind};
use crate::ports::{Agents, Alerts, Clock, PortError, StateStore, Swarm};
use crate::run::{GateWait, Halt, RunRecord};

/// How often a closed gate is asked again.
pub(super) const GATE_POLL: Duration = Duration::from_secs(5);

/// How long after a failed request the monitoring system is asked once more before the gate
/// counts as closed (a lost packet is not an outage worth a webhook).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a wait for the gate before a node ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum GateEnd {
    /// It is open (or no gate is configured): the node may start.
    Open,
    /// An operator asked the run to stop meanwhile: nothing starts; the run's next step ends it.
    Aborted,
    /// It stayed closed for all of `gates.wait`: the run ends so.
    GaveUp(Halt, String),
}

/// What the wait does after one answer: the pure part of [`Coordinator::gate_wait`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The gate is open.
    Go,
    /// Closed for all of `wait`: give up.
    GiveUp,
    /// Closed: ask again after this long.
    Sleep(Duration),
}

/// The wait's next step: `open` the gate's answer, `waited` since the wait began, `wait` its limit.
pub(super) fn step(open: bool, waited: Duration, wait: Duration) -> Step {
    match (open, wait.checked_sub(waited)) {
        (true, _) => Step::Go,
        (false, None) => Step::GiveUp,
        (false, Some(left)) if left.is_zero() => Step::GiveUp,
        (false, Some(left)) => Step::Sleep(GATE_POLL.min(left)),
    }
}

impl<S: Swarm, A: Agents, St: StateStore, C: Clock> Coordinator<'_, S, A, St, C> {
    /// The gate's answer now, or why there is none (after one retry); `None` when no gate is
    /// configured.
    pub(crate) async fn gate_answer(&self) -> Option<Result<GateAnswer, PortError>> {
        let alerts = self.alerts?;
        let firing = match alerts.firing().await {
            Err(_) => {
                self.ports.clock.sleep(RETRY_AFTER).await;
                alerts.firing().await
            }
            answer => answer,
        };
        Some(firing.map(|a| GateAnswer::judge(&a, &self.settings.gates.alert_filter)))
    }

    /// The gate's answer for `plan` and a run's preflight; a monitoring system that cannot be
    /// asked is refused up front (a run would only wait for it, then give up).
    pub(crate) async fn gate_preflight(&self) -> Result<Option<GateAnswer>, Refusal> {
        let Some(answer) = self.gate_answer().await else { return Ok(None) };
        let source = self.alerts.map(Alerts::source).unwrap_or_default();
        answer.map(Some).map_err(|e| Refusal {
            kind: RefusalKind::AlertGate,
            node: None,
            service: None,
            reason: format!(
                "the alert gate cannot ask Prometheus at {source} (gates.prometheus_url): {e}"
            ),
            fix: "check that Prometheus answers at that URL from this manager (`curl <url>/api/v1/alerts`), or set gates.prometheus_url = \"\" to run without the alert gate".into(),
        })
    }

    /// Whether the next batch may start early: only with the gate open now (a closed gate is
    /// waited for when that batch starts in its turn).
    pub(super) async fn gate_open_now(&self, run: &RunRecord) -> bool {
        match self.gate_answer().await {
            None | Some(Ok(GateAnswer::Open { .. })) => true,
            Some(answer) => {
                let why = closed_why(&answer);
                tracing::info!(run = %run.id, %why, "the next batch does not start early: the alert gate is closed");
                false
            }
        }
    }

    /// Before node `host` (the first of a batch) starts: waits while the gate is closed, asking
    /// it every [`GATE_POLL`], for at most `gates.wait` (counted afresh by a coordinator that
    /// took over). The wait is recorded in the run for `status`, and cleared once over.
    pub(super) async fn gate_wait(
        &self,
        token: u64,
        run: &RunRecord,
        host: &str,
    ) -> Result<GateEnd, CoordinatorError> {
        let Some(mut answer) = self.gate_answer().await else {
            // (A wait recorded by a coordinator configured with a gate, which this one is not.)
            if run.gate_wait.is_some() {
                self.record_wait(token, None).await?;
            }
            return Ok(GateEnd::Open);
        };
        let wait = self.settings.gates.wait;
        let began = self.ports.clock.now();
        let mut why = String::new();
        loop {
            let waited = elapsed(began, self.ports.clock.now());
            let open = matches!(answer, Ok(GateAnswer::Open { .. }));
            match step(open, waited, wait) {
                Step::Go => {
                    if !why.is_empty() || run.gate_wait.is_some() {
                        self.record_wait(token, None).await?;
                    }
                    if !why.is_empty() {
                        self.opened(run, host, waited);
                    }
                    return Ok(GateEnd::Open);
                }
                Step::GiveUp => {
                    self.record_wait(token, None).await?;
                    metrics::set(metrics::GATE_CLOSED, &[], 0);
                    return Ok(GateEnd::GaveUp(Halt::AlertGate, gave_up(host, &why, wait)));
                }
                Step::Sleep(rest) => {
                    let now_why = closed_why(&answer);
                    if why != now_why {
                        self.closed(token, run, host, &why, &now_why, began).await?;
                        why = now_why;
                    }
                    let doc = self.load_retrying().await?.doc;
                    doc.check(token, self.ports.clock.now())?;
                    if doc.run.as_ref().is_some_and(|r| r.abort_requested) {
                        self.record_wait(token, None).await?;
                        metrics::set(metrics::GATE_CLOSED, &[], 0);
                        return Ok(GateEnd::Aborted);
                    }
                    self.ports.clock.sleep(rest).await;
                    answer = self.gate_answer().await.expect("a gate is configured");
                }
            }
        }
    }

    /// The gate is closed before `host` for `why` (it was for `before`, empty if open): said
    /// and recorded.
    async fn closed(
        &self,
        token: u64,
        run: &RunRecord,
        host: &str,
        before: &str,
        why: &str,
        since: jiff::Timestamp,
    ) -> Result<(), CoordinatorError> {
        let wait = self.settings.gates.wait;
        tracing::warn!(run = %run.id, node = host, %why, wait_s = wait.as_secs(), "the alert gate is closed: waiting before the next node");
        if before.is_empty() {
            metrics::set(metrics::GATE_CLOSED, &[], 1);
            let event =
                Event::GateClosed { run: run.id.clone(), node: host.into(), why: why.into() };
            self.emit(event);
        }
        let until = since + jiff::SignedDuration::try_from(wait).unwrap_or_default();
        let w = GateWait { node: host.into(), why: why.into(), since, until };
        self.record_wait(token, Some(w)).await
    }

    /// The gate opened again after `waited`: said.
    fn opened(&self, run: &RunRecord, host: &str, waited: Duration) {
        let seconds = waited.as_secs();
        tracing::info!(run = %run.id, node = host, seconds, "the alert gate is open again");
        metrics::set(metrics::GATE_CLOSED, &[], 0);
        self.emit(Event::GateOpened { run: run.id.clone(), node: host.into(), seconds });
    }

    /// Records the wait for `status` (`None`: it is over).
    async fn record_wait(
        &self,
        token: u64,
        wait: Option<GateWait>,
    ) -> Result<(), CoordinatorError> {
        self.update_run(token, |r| {
            r.gate_wait = wait.clone();
            Ok(())
        })
        .await
    }
}

/// Why a gate is closed, for people.
pub(super) fn closed_why(answer: &Result<GateAnswer, PortError>) -> String {
    match answer {
        Ok(a) => format!("alerts firing: {}", a.firing_text()),
        Err(e) => format!("the monitoring system cannot be asked ({e})"),
    }
}

/// The run's reason when the gate stayed closed for all of `wait` before `host`.
fn gave_up(host: &str, why: &str, wait: Duration) -> String {
    format!(
        "stopped before node {host}: the alert gate stayed closed for {} s (gates.wait), {why}; nothing was changed on {host}; once they clear, `swarm-upgrade run` again",
        wait.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_goes_on_open_sleeps_a_poll_at_most_and_gives_up_at_its_limit() {
        let s = Duration::from_secs;
        assert_eq!(step(true, s(900), s(60)), Step::Go, "open always goes");
        assert_eq!(step(false, s(0), s(60)), Step::Sleep(GATE_POLL));
        assert_eq!(step(false, s(58), s(60)), Step::Sleep(s(2)), "no sleep past the limit");
        assert_eq!(step(false, s(60), s(60)), Step::GiveUp);
        assert_eq!(step(false, s(61), s(60)), Step::GiveUp);
    }
}
