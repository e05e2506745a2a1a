//! The load generator: a steady request rate through the balancer until told to stop, then a
//! report: requests, failures by kind (connect, timeout, HTTP status, broken), the longest gap
//! between two successes, and a per-second timeline.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::http::{self, Outcome};

/// What to send.
#[derive(Clone, Debug)]
pub struct Options {
    /// `host:port/path` targets, used in turn.
    pub targets: Vec<String>,
    /// Requests per second (all targets together).
    pub rate: u32,
    /// Time limit of one request.
    pub timeout: Duration,
}

/// One request as sent and answered.
#[derive(Clone, Debug)]
pub struct Record {
    /// Index into the targets.
    pub target: usize,
    /// Seconds from the start when it was sent.
    pub sent: f64,
    /// Seconds from the start when it ended.
    pub done: f64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Failures by kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// The connection could not be made.
    pub connect: u64,
    /// No complete answer within the time limit.
    pub timeout: u64,
    /// Broken connections and answers that are not HTTP.
    pub broken: u64,
    /// Answers with a status other than 200, by status.
    pub http: BTreeMap<u16, u64>,
}

/// One second of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds from the start.
    pub second: u64,
    /// Requests sent in this second.
    pub sent: u64,
    /// Of those, answered with 200.
    pub ok: u64,
    /// Of those, failed.
    pub failed: u64,
}

/// Requests and failures of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// `host:port/path`.
    pub target: String,
    /// Requests sent to it.
    pub requests: u64,
    /// Of those, failed.
    pub failed: u64,
    /// The longest time between two consecutive successes of this target.
    pub longest_gap_s: f64,
    /// When its first failed request was sent (seconds from the start), if one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_s: Option<f64>,
    /// When its last failed request was sent, if one failed: with the first, the window its
    /// failures fell in (an accepted outage's, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_s: Option<f64>,
}

/// The load generator's report (written as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The rate asked for.
    pub rate: u32,
    /// Seconds from the first request sent to the last one ended.
    pub duration_s: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answered with 200.
    pub succeeded: u64,
    /// Not answered with 200.
    pub failed: u64,
    /// Failures by kind.
    pub failures: Failures,
    /// The longest time between two consecutive successes (by when they ended).
    pub longest_gap_s: f64,
    /// When that gap began (seconds from the start).
    pub longest_gap_at_s: f64,
    /// Each target.
    pub targets: Vec<TargetReport>,
    /// Each second.
    pub timeline: Vec<Second>,
    /// When the first second began (RFC 3339), so a run's timeline can be laid over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// Builds the report from the records (pure).
pub fn report(targets: &[String], rate: u32, records: &[Record]) -> Report {
    let mut failures = Failures::default();
    let mut per_target: Vec<TargetReport> = targets
        .iter()
        .map(|t| TargetReport {
            target: t.clone(),
            requests: 0,
            failed: 0,
            longest_gap_s: 0.0,
            first_failed_s: None,
            last_failed_s: None,
        })
        .collect();
    let mut ok_by_target: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut timeline: Vec<Second> = Vec::new();
    let mut ok_times: Vec<f64> = Vec::new();
    for r in records {
        let ok = matches!(r.outcome, Outcome::Status(200, _));
        match &r.outcome {
            Outcome::Status(200, _) => {}
            Outcome::Status(code, _) => *failures.http.entry(*code).or_default() += 1,
            Outcome::Connect => failures.connect += 1,
            Outcome::Timeout => failures.timeout += 1,
            Outcome::Broken => failures.broken += 1,
        }
        if let Some(t) = per_target.get_mut(r.target) {
            t.requests += 1;
            t.failed += u64::from(!ok);
            if !ok {
                t.first_failed_s = Some(t.first_failed_s.map_or(r.sent, |f| f.min(r.sent)));
                t.last_failed_s = Some(t.last_failed_s.map_or(r.sent, |l| l.max(r.sent)));
            }
        }
        let s = r.sent.max(0.0) as u64;
        while timeline.len() as u64 <= s {
            timeline.push(Second { second: timeline.len() as u64, sent: 0, ok: 0, failed: 0 });
        }
        let sec = &mut timeline[s as usize];
        sec.sent += 1;
        if ok {
            sec.ok += 1;
            ok_times.push(r.done);
            if let Some(v) = ok_by_target.get_mut(r.target) {
                v.push(r.done);
            }
        } else {
            sec.failed += 1;
        }
    }
    let (gap, gap_at) = longest_gap(&mut ok_times);
    for (t, times) in per_target.iter_mut().zip(&mut ok_by_target) {
        t.longest_gap_s = round(longest_gap(times).0);
    }
    let requests = records.len() as u64;
    let succeeded = ok_times.len() as u64;
    let start = records.iter().map(|r| r.sent).fold(f64::INFINITY, f64::min);
    let end = records.iter().map(|r| r.done).fold(0.0, f64::max);
    Report {
        rate,
        duration_s: if records.is_empty() { 0.0 } else { round(end - start) },
        requests,
        succeeded,
        failed: requests - succeeded,
        failures,
        longest_gap_s: round(gap),
        longest_gap_at_s: round(gap_at),
        targets: per_target,
        timeline,
        started_at: None,
    }
}

/// The longest time between consecutive instants, and where it began.
fn longest_gap(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let (mut gap, mut at) = (0.0, 0.0);
    for w in times.windows(2) {
        if w[1] - w[0] > gap {
            gap = w[1] - w[0];
            at = w[0];
        }
    }
    (gap, at)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Sends at the rate until `stop` completes, then waits for the requests in flight.
pub async fn generate(opts: Options, stop: impl Future<Output = ()>) -> Report {
    let t0 = Instant::now();
    let started_at = jiff::Timestamp::now().to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1))));
    tokio::pin!(stop);
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let target = n % opts.targets.len();
                n += 1;
                let (addr, path) = split_target(&opts.targets[target]);
                let (tx, limit) = (tx.clone(), opts.timeout);
                tokio::spawn(async move {
                    let sent = t0.elapsed().as_secs_f64();
                    let outcome = http::get(&addr, &path, limit).await;
                    let _ = tx.send(Record { target, sent, done: t0.elapsed().as_secs_f64(), outcome });
                });
            }
        }
    }
    drop(tx);
    let mut records = Vec::new();
    while let Some(r) = rx.recv().await {
        records.push(r);
    }
    records.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    Report { started_at: Some(started_at), ..report(&opts.targets, opts.rate, &records) }
}

/// `host:port/path` into (`host:port`, `/path`).
pub fn split_target(t: &str) -> (String, String) {
    match t.find('/') {
        Some(i) => (t[..i].to_string(), t[i..].to_string()),
        None => (t.to_string(), "/".to_string()),
    }
}

/// A load generator running on its own thread.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: std::thread::JoinHandle<Report>,
}

/// Starts sending in the background.
pub fn start(opts: Options) -> Running {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(generate(opts, async {
            let _ = rx.await;
        }))
    });
    Running { stop: Some(stop), thread }
}

impl Running {
    /// Stops sending and returns the report.
    pub fn stop(mut self) -> Report {
        let _ = self.stop.take().map(|s| s.send(()));
        self.thread.join().expect("the load generator thread")
    }
}

impl Report {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} requests in {:.1} s ({:.1}/s), {} failed (connect {}, timeout {}, broken {}, http {:?}), longest gap between successes {:.3} s",
            self.requests,
            self.duration_s,
            self.requests as f64 / self.duration_s.max(0.001),
            self.failed,
            self.failures.connect,
            self.failures.timeout,
            self.failures.broken,
            self.failures.http,
            self.longest_gap_s
        ) + &self
            .targets
            .iter()
            .map(|t| {
                format!(
                    "; {}: {} of {} failed, longest gap {:.3} s",
                    t.target, t.failed, t.requests, t.longest_gap_s
                )
            })
            .collect::<String>()
            + &self.failed_seconds()
    }

    /// Where the failures fell, for a failure to be laid over the coordinator's and the
    /// balancer's logs: "; failed at +94 s (20), +95 s (16) after <start>" (the first ten).
    fn failed_seconds(&self) -> String {
        let failed: Vec<&Second> = self.timeline.iter().filter(|s| s.failed > 0).collect();
        if failed.is_empty() {
            return String::new();
        }
        let at: Vec<String> =
            failed.iter().take(10).map(|s| format!("+{} s ({})", s.second, s.failed)).collect();
        let more = match failed.len().saturating_sub(10) {
            0 => String::new(),
            n => format!(" and {n} more seconds"),
        };
        let start = self.started_at.as_deref().unwrap_or("the start");
        format!("; failed at {}{more} after {start}", at.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(target: usize, sent: f64, done: f64, outcome: Outcome) -> Record {
        Record { target, sent, done, outcome }
    }

    #[test]
    fn counts_failures_by_kind_and_finds_the_longest_gap() {
        let ok = || Outcome::Status(200, String::new());
        let records = vec![
            rec(0, 0.0, 0.1, ok()),
            rec(1, 0.5, 0.6, Outcome::Connect),
            rec(0, 1.0, 3.0, Outcome::Timeout),
            rec(1, 1.5, 1.6, Outcome::Status(503, String::new())),
            rec(0, 2.0, 2.1, Outcome::Broken),
            rec(1, 2.5, 2.9, ok()),
            rec(0, 3.0, 3.1, ok()),
        ];
        let r = report(&["a/".into(), "b/".into()], 2, &records);
        assert_eq!((r.requests, r.succeeded, r.failed), (7, 3, 4));
        assert_eq!(
            r.failures,
            Failures { connect: 1, timeout: 1, broken: 1, http: BTreeMap::from([(503, 1)]) }
        );
        assert_eq!((r.longest_gap_s, r.longest_gap_at_s), (2.8, 0.1));
        assert_eq!(
            r.targets[0],
            TargetReport {
                target: "a/".into(),
                requests: 4,
                failed: 2,
                longest_gap_s: 3.0,
                first_failed_s: Some(1.0),
                last_failed_s: Some(2.0)
            }
        );
        assert_eq!(r.targets[1].longest_gap_s, 0.0, "one success only");
        assert_eq!(r.timeline.len(), 4);
        assert_eq!(r.timeline[1], Second { second: 1, sent: 2, ok: 0, failed: 2 });
        assert_eq!(r.duration_s, 3.1);
        assert!(r.summary().ends_with("; failed at +0 s (1), +1 s (2), +2 s (1) after the start"));
    }

    #[test]
    fn an_empty_run_reports_nothing() {
        let r = report(&["a/".into()], 50, &[]);
        assert_eq!((r.requests, r.failed, r.duration_s, r.longest_gap_s), (0, 0, 0.0, 0.0));
        assert!(!r.summary().contains("failed at"));
    }

    #[test]
    fn sends_at_the_rate_and_counts_refusals() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let opts = Options {
            targets: vec![format!("{addr}/")],
            rate: 20,
            timeout: Duration::from_secs(1),
        };
        let r = rt.block_on(async {
            generate(opts, tokio::time::sleep(Duration::from_millis(1000))).await
        });
        assert!(
            (15..=22).contains(&r.requests),
            "about 20 requests in a second, got {}",
            r.requests
        );
        assert_eq!(r.failures.connect, r.requests, "every request refused");
    }

    #[test]
    fn splits_targets() {
        assert_eq!(split_target("10.0.0.1:80/health"), ("10.0.0.1:80".into(), "/health".into()));
        assert_eq!(split_target("h:81"), ("h:81".into(), "/".into()));
    }
}
