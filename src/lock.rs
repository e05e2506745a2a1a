//! The cluster-wide lock, as pure rules over the document kept in the swarm's Raft store.
//!
//! The store offers compare-and-swap on a version index ([`crate::ports::StateStore`]); these rules
//! say what a holder may write. The fencing token grows with every acquisition and is never reused,
//! so agents can refuse orders from a coordinator that lost the lock.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::Target;
use crate::run::RunRecord;

/// The lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Who holds it (`hostname/pid`).
    pub holder: String,
    /// The run it protects.
    pub run_id: String,
    /// Monotonic fencing token.
    pub token: u64,
    /// When it was taken.
    pub acquired_at: Timestamp,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// The run's target.
    pub target: Target,
    /// The holder's lease in seconds (absent in documents of older builds): how long a
    /// contender must see the lock unchanged before it may take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
}

/// A lock as one contender saw it, and since when by the contender's own monotonic clock. Wall
/// clocks of managers differ (a clock minutes ahead would see every live lease as run out), so a
/// takeover is decided only on what the contender itself saw: the same lock, unrenewed, for a
/// whole lease and a margin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    token: u64,
    expires_at: Timestamp,
    lease: Option<Duration>,
    since: Duration,
}

impl Sighting {
    /// `lock` seen at monotonic time `mono`; an earlier sighting of the very same lock (not
    /// renewed since) keeps its start.
    pub fn of(lock: &Lock, earlier: Option<Sighting>, mono: Duration) -> Sighting {
        match earlier.filter(|e| e.is_of(lock)) {
            Some(e) => e,
            None => Sighting {
                token: lock.token,
                expires_at: lock.expires_at,
                lease: lock.lease_seconds.map(Duration::from_secs),
                since: mono,
            },
        }
    }

    /// Whether `lock` is the one sighted, unrenewed.
    pub fn is_of(&self, lock: &Lock) -> bool {
        self.token == lock.token && self.expires_at == lock.expires_at
    }

    /// How long the contender still has to watch (zero: the holder had a whole lease, the
    /// longer of its own and `lease`, plus [`LEASE_MARGIN`], and did not renew).
    pub fn left(&self, lease: Duration, mono: Duration) -> Duration {
        let watch = self.lease.map_or(lease, |l| l.max(lease)) + LEASE_MARGIN;
        watch.saturating_sub(mono.saturating_sub(self.since))
    }
}

/// The layout of the store document this build reads and writes. 1: the first layout, which
/// had no `schema` key; 2: the key added, and the optional `halt` of a finished run. (The lock's
/// optional `lease_seconds` came later within 2: older builds ignore it, and without it a
/// contender watches for its own lease.) 3: stored as a header and the run's nodes in shards
/// (see [`crate::store_layout`]); the document read is the same. 4: a run's nodes may carry their
/// `batch`; a build that ignored it would step a batch one node at a time without the gates
/// between batch-mates (and drop the field when it wrote), so older builds must refuse it (a
/// document of layout 3 reads as 4 unchanged). 5: a run's target may be an engine version and
/// each node carries its own package set (the run-level set left empty), and its standalone
/// containers before and after; an older build would install nothing on such a node, so it must
/// refuse it (a document of layout 4 reads as 5 unchanged: its nodes take the run's set). 6: a
/// run may hold after its canary nodes (`hold`), which an older build would walk past without
/// approval, so it must refuse it (a document of layout 5 reads as 6 unchanged: no hold). 7: a
/// run may wait for the alert gate (`gate_wait`) and end as `alert-gate`, which an older build
/// could not read or would walk past, so it must refuse it (a document of layout 6 reads as 7
/// unchanged: no wait).
pub const SCHEMA: u32 = 7;

/// Everything swarm-upgrade keeps in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDoc {
    /// The document's layout ([`SCHEMA`] once written by this build).
    pub schema: u32,
    /// The lock, if held (possibly expired).
    pub lock: Option<Lock>,
    /// The last fencing token ever issued.
    pub last_token: u64,
    /// The current or last run.
    pub run: Option<RunRecord>,
}

impl Default for StoreDoc {
    fn default() -> Self {
        StoreDoc { schema: SCHEMA, lock: None, last_token: 0, run: None }
    }
}

/// A stored document this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A newer swarm-upgrade wrote it: overwriting it would lose what that one keeps.
    #[error(
        "the stored state has layout {found}, newer than this swarm-upgrade's {SCHEMA}: a newer swarm-upgrade wrote it; upgrade the swarm-upgrade package on this manager to run or resume from here"
    )]
    Newer {
        /// The document's layout.
        found: u32,
    },
    /// Not a document of ours.
    #[error("not swarm-upgrade's state: {0}")]
    Malformed(String),
}

impl StoreDoc {
    /// Reads a stored document of any layout up to [`SCHEMA`], upgraded to this one.
    pub fn from_json(text: &str) -> Result<StoreDoc, SchemaError> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SchemaError::Malformed(e.to_string()))?;
        let object =
            value.as_object_mut().ok_or_else(|| SchemaError::Malformed("not an object".into()))?;
        let found = match object.get("schema") {
            None => 1,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| SchemaError::Malformed(format!("schema {v} is not a number")))?,
        };
        if found > SCHEMA {
            return Err(SchemaError::Newer { found });
        }
        if found == 0 {
            return Err(SchemaError::Malformed("schema 0 is no layout".into()));
        }
        // 1 -> 2: the key is new, and `halt` is optional. 2 -> 3: the same document, stored
        // in parts (joined before it gets here). Later layouts add their steps here, oldest first.
        object.insert("schema".into(), SCHEMA.into());
        serde_json::from_value(value).map_err(|e| SchemaError::Malformed(e.to_string()))
    }
}

/// Why a lock operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Someone else holds an unexpired lock.
    #[error(
        "locked by {holder} since {since} (run {run_id}, lease until {until}); wait for it, or if that coordinator is gone for good, `swarm-upgrade unlock --force`"
    )]
    Held {
        /// The holder.
        holder: String,
        /// Run ID.
        run_id: String,
        /// Acquired at.
        since: Timestamp,
        /// Lease end.
        until: Timestamp,
    },
    /// The caller's token is no longer the lock's.
    #[error(
        "the lock was lost (our fencing token {ours} is not the current one); another coordinator may have taken over: stop and check `swarm-upgrade status`"
    )]
    Lost {
        /// The caller's token.
        ours: u64,
    },
}

/// How much earlier than its expiry a holder stops trusting its lease, and how much longer than
/// a lease a contender watches a lock before taking it over.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

fn held(l: &Lock) -> LockError {
    LockError::Held {
        holder: l.holder.clone(),
        run_id: l.run_id.clone(),
        since: l.acquired_at,
        until: l.expires_at,
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

impl Lock {
    /// Whether the lease has run out at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Whether its holder may still act at `now` (the lease minus the margin).
    pub fn usable(&self, now: Timestamp) -> bool {
        plus(now, LEASE_MARGIN) < self.expires_at
    }
}

impl StoreDoc {
    /// Takes the lock if free, or if `lapsed` shows its holder let it lapse (the contender saw
    /// this very lock unrenewed for a whole lease, at monotonic time `mono`); returns the new
    /// fencing token. A lock this same holder already took for this run (its write landed but the
    /// answer was lost in a leader election, and the write is being retried) is returned as it is.
    pub fn acquire(
        &mut self,
        holder: &str,
        run_id: &str,
        target: &Target,
        lease: Duration,
        now: Timestamp,
        lapsed: Option<(&Sighting, Duration)>,
    ) -> Result<u64, LockError> {
        if let Some(l) = self
            .lock
            .as_ref()
            .filter(|l| l.holder == holder && l.run_id == run_id && !l.expired(now))
        {
            return Ok(l.token);
        }
        if let Some(l) = &self.lock {
            let gone = lapsed.is_some_and(|(s, mono)| s.is_of(l) && s.left(lease, mono).is_zero());
            if !gone {
                return Err(held(l));
            }
        }
        let token = self.last_token + 1;
        self.last_token = token;
        self.lock = Some(Lock {
            holder: holder.to_string(),
            run_id: run_id.to_string(),
            token,
            acquired_at: now,
            expires_at: plus(now, lease),
            target: target.clone(),
            lease_seconds: Some(lease.as_secs()),
        });
        Ok(token)
    }

    /// Refuses when someone holds a lock whose lease has not run out by our clock (what a new
    /// run checks first, to name the holder; `acquire` itself refuses any lock it did not watch
    /// lapse).
    pub(crate) fn check_free(&self, now: Timestamp) -> Result<(), LockError> {
        match &self.lock {
            Some(l) if !l.expired(now) => Err(held(l)),
            _ => Ok(()),
        }
    }

    /// Checks that `token` still holds the lock.
    pub fn check(&self, token: u64, now: Timestamp) -> Result<&Lock, LockError> {
        match &self.lock {
            Some(l) if l.token == token && !l.expired(now) => Ok(l),
            _ => Err(LockError::Lost { ours: token }),
        }
    }

    /// Extends the lease of the holder of `token`.
    pub fn renew(&mut self, token: u64, lease: Duration, now: Timestamp) -> Result<(), LockError> {
        self.check(token, now)?;
        let l = self.lock.as_mut().expect("checked above");
        l.expires_at = plus(now, lease);
        Ok(())
    }

    /// Releases the lock held with `token`; releasing a lock already gone is fine.
    pub fn release(&mut self, token: u64) {
        if self.lock.as_ref().is_some_and(|l| l.token == token) {
            self.lock = None;
        }
    }

    /// Breaks any lock (operator's `unlock --force`); returns what was broken. The token counter stays.
    pub(crate) fn break_lock(&mut self) -> Option<Lock> {
        self.lock.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_of_the_first_layout_is_read_and_upgraded() {
        let v1 = include_str!("../tests/fixtures/store/v1-interrupted.json");
        assert!(!v1.contains("schema"), "the fixture is of layout 1");
        let doc = StoreDoc::from_json(v1).unwrap();
        assert_eq!(doc.schema, SCHEMA);
        assert_eq!(doc.lock.as_ref().map(|l| l.token), Some(1));
        let run = doc.run.as_ref().unwrap();
        assert_eq!((run.nodes.len(), run.nodes[0].phase), (5, crate::machine::Phase::Done));
        let again = serde_json::to_string(&doc).unwrap();
        assert_eq!(StoreDoc::from_json(&again).unwrap(), doc, "written back, it reads the same");
    }

    #[test]
    fn a_newer_layout_or_a_foreign_document_is_refused() {
        let newer =
            format!(r#"{{"schema": {}, "lock": null, "last_token": 3, "run": null}}"#, SCHEMA + 1);
        assert_eq!(StoreDoc::from_json(&newer), Err(SchemaError::Newer { found: SCHEMA + 1 }));
        assert!(
            StoreDoc::from_json(&newer)
                .unwrap_err()
                .to_string()
                .contains("upgrade the swarm-upgrade package")
        );
        assert!(matches!(StoreDoc::from_json("[1]"), Err(SchemaError::Malformed(_))));
        assert!(matches!(
            StoreDoc::from_json(r#"{"schema": "two"}"#),
            Err(SchemaError::Malformed(_))
        ));
        assert_eq!(StoreDoc::default().schema, SCHEMA, "a new document is written in this layout");
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn v() -> Target {
        "5:28.5.2-1~debian.13~trixie".parse().unwrap()
    }

    #[test]
    fn held_lock_refuses_and_names_its_holder() {
        let mut d = StoreDoc::default();
        assert_eq!(
            d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(0), None),
            Ok(1)
        );
        let e =
            d.acquire("manager2/20", "r2", &v(), Duration::from_secs(60), t(30), None).unwrap_err();
        assert!(e.to_string().starts_with("locked by manager1/10 since "), "{e}");
    }

    #[test]
    fn a_retried_acquire_by_the_same_holder_gets_the_same_token() {
        let mut d = StoreDoc::default();
        assert_eq!(
            d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(0), None),
            Ok(1)
        );
        assert_eq!(
            d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(1), None),
            Ok(1)
        );
        assert!(
            d.acquire("manager1/10", "r2", &v(), Duration::from_secs(60), t(1), None).is_err(),
            "another run of the same process"
        );
        assert!(
            d.acquire("manager1/11", "r1", &v(), Duration::from_secs(60), t(1), None).is_err(),
            "another process"
        );
        assert!(
            d.acquire("manager1/10", "r1", &v(), Duration::from_secs(60), t(60), None).is_err(),
            "expired by the wall clock is not enough: nobody watched it lapse"
        );
    }

    const LEASE: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn take_over_after_a_watched_lapse_gets_a_new_token() {
        let mut d = StoreDoc::default();
        d.acquire("a", "r1", &v(), LEASE, t(0), None).unwrap();
        let seen = Sighting::of(d.lock.as_ref().unwrap(), None, secs(100));
        assert_eq!(seen.left(LEASE, secs(130)), secs(35));
        assert!(d.acquire("b", "r1", &v(), LEASE, t(60), Some((&seen, secs(164)))).is_err());
        assert_eq!(d.acquire("b", "r1", &v(), LEASE, t(60), Some((&seen, secs(165)))), Ok(2));
        assert_eq!(d.renew(1, Duration::from_secs(60), t(61)), Err(LockError::Lost { ours: 1 }));
        assert!(d.renew(2, Duration::from_secs(60), t(61)).is_ok());
        assert_eq!(d.lock.as_ref().unwrap().expires_at, t(121));
    }

    #[test]
    fn tokens_are_never_reused_after_release_or_break() {
        let mut d = StoreDoc::default();
        let a = d.acquire("a", "r1", &v(), Duration::from_secs(60), t(0), None).unwrap();
        d.release(a);
        let b = d.acquire("b", "r2", &v(), Duration::from_secs(60), t(1), None).unwrap();
        assert!(d.break_lock().is_some());
        let c = d.acquire("c", "r3", &v(), Duration::from_secs(60), t(2), None).unwrap();
        assert!(a < b && b < c);
        d.release(b);
        assert!(d.lock.is_some(), "a stale token cannot release the current lock");
    }

    /// A contender whose wall clock runs ten minutes ahead sees every live lease as run out; what
    /// it saw itself decides: the holder renewed, so the watch starts again and no takeover.
    #[test]
    fn a_contender_with_a_clock_minutes_ahead_does_not_take_over_a_live_lock() {
        let mut d = StoreDoc::default();
        d.acquire("a", "r1", &v(), LEASE, t(0), None).unwrap();
        let ahead = t(600);
        assert!(d.lock.as_ref().unwrap().expired(ahead), "by its clock the lease ran out");
        let first = Sighting::of(d.lock.as_ref().unwrap(), None, secs(0));
        d.renew(1, LEASE, t(20)).unwrap();
        let again = Sighting::of(d.lock.as_ref().unwrap(), Some(first.clone()), secs(70));
        assert_ne!(again, first, "a renewal restarts the watch");
        let e = d.acquire("b", "r1", &v(), LEASE, ahead, Some((&again, secs(70)))).unwrap_err();
        assert!(matches!(e, LockError::Held { .. }), "{e}");
        assert_eq!(d.lock.as_ref().unwrap().token, 1);
        // An old sighting of a lock since renewed proves nothing either.
        assert!(d.acquire("b", "r1", &v(), LEASE, ahead, Some((&first, secs(999)))).is_err());
    }

    #[test]
    fn the_holders_longer_lease_is_waited_for() {
        let mut d = StoreDoc::default();
        d.acquire("a", "r1", &v(), secs(300), t(0), None).unwrap();
        let seen = Sighting::of(d.lock.as_ref().unwrap(), None, secs(0));
        assert_eq!(seen.left(LEASE, secs(65)), secs(240), "the holder's 300 s, not our 60 s");
        // A lock written by an older build names no lease: ours is used.
        d.lock.as_mut().unwrap().lease_seconds = None;
        let seen = Sighting::of(d.lock.as_ref().unwrap(), None, secs(0));
        assert_eq!(seen.left(LEASE, secs(65)), Duration::ZERO);
    }

    #[test]
    fn lease_is_unusable_within_the_margin() {
        let mut d = StoreDoc::default();
        d.acquire("a", "r", &v(), Duration::from_secs(60), t(0), None).unwrap();
        let l = d.lock.as_ref().unwrap();
        assert!(l.usable(t(54)));
        assert!(!l.usable(t(55)));
        assert!(!l.expired(t(59)));
        assert!(l.expired(t(60)));
    }
}
