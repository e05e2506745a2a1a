//! The lab slots the tests share: how many labs run side by side, and the leases that hand them
//! out (a lab bigger than the default takes every slot, with priority).

use std::sync::{Condvar, Mutex};

/// How many labs the tests run side by side: `LAB_SLOTS` (1 to engine::SLOTS), 2 unless set.
/// Most of a lab's time is waiting (for tasks, health checks, engine restarts), so two labs share
/// this machine's two cores; each has its own private engine and network.
fn slots() -> usize {
    let max = usize::from(crate::engine::SLOTS);
    std::env::var("LAB_SLOTS").ok().and_then(|s| s.parse().ok()).unwrap_or(2).clamp(1, max)
}

/// The slots: in use or not, how many tests wait for all of them, how many are retired (their
/// lab kept for a look after a failure, `LAB_KEEP`); a wakeup when slots are given back.
static SLOTS_STATE: Mutex<Slots> = Mutex::new(Slots { used: Vec::new(), whole: 0, retired: 0 });

struct Slots {
    used: Vec<bool>,
    whole: usize,
    retired: usize,
}

static GIVEN_BACK: Condvar = Condvar::new();

/// Slots held by one test; given back when dropped. Its lab runs on the first.
pub(crate) struct Lease(pub(crate) Vec<u8>);

impl Lease {
    /// Waits until `want` slots (at most every slot not retired) are free and takes them. A test
    /// that waits for every slot goes before those that want one, so it is not starved.
    pub(crate) fn take(want: usize) -> Lease {
        let mut state = SLOTS_STATE.lock().unwrap_or_else(|e| e.into_inner());
        state.used.resize(slots(), false);
        let usable = state.used.len() - state.retired;
        assert!(usable > 0, "every lab slot holds a lab kept by LAB_KEEP: take them down first");
        let want = want.clamp(1, usable);
        let whole = want == usable && usable > 1;
        state.whole += usize::from(whole);
        while state.used.iter().filter(|u| !**u).count() < want || (!whole && state.whole > 0) {
            state = GIVEN_BACK.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.whole -= usize::from(whole);
        let mut held = vec![];
        for (slot, u) in state.used.iter_mut().enumerate() {
            if !*u && held.len() < want {
                *u = true;
                held.push(slot as u8);
            }
        }
        Lease(held)
    }

    /// Keeps these slots taken for the rest of the process (their lab is kept for a look).
    pub(crate) fn retire(self) {
        let mut state = SLOTS_STATE.lock().unwrap_or_else(|e| e.into_inner());
        state.retired += self.0.len();
        std::mem::forget(self);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = SLOTS_STATE.lock().unwrap_or_else(|e| e.into_inner());
        for s in &self.0 {
            state.used[usize::from(*s)] = false;
        }
        GIVEN_BACK.notify_all();
    }
}
