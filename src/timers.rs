//! Whether tokio timers can be used here, and deadlines that cannot overflow.
//!
//! Both parts of the crate bound their work with tokio timers. A runtime built without
//! `enable_time` panics as soon as a timer is created, and tokio offers no way to ask
//! beforehand, so [`available`] asks once per runtime by creating one under
//! `catch_unwind`; callers then fall back to a plain close or `Connection: close`. The
//! lingering half asks when an IO is wrapped, so that its drop asks nothing.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

/// Far enough to mean "no limit", near enough that tokio's timer wheel takes it.
const FAR: Duration = Duration::from_secs(60 * 60 * 24 * 365);

/// How many runtimes [`available`] remembers; applications run few.
const REMEMBERED: usize = 64;

/// The runtimes already asked, as hashes of their ids, with the answer; oldest first.
static ASKED: Mutex<Vec<(u64, bool)>> = Mutex::new(Vec::new());

/// The runtime last found to have timers (0: none yet): the common answer, without a lock.
static LAST_WITH_TIMERS: AtomicU64 = AtomicU64::new(0);

/// Whether the current thread is in a tokio runtime whose timers are enabled.
///
/// Each runtime is asked once (among the last [`REMEMBERED`]): a runtime without timers
/// lets tokio's panic message through the panic hook that one time, a runtime with timers
/// never does. Under `panic = "abort"` nothing can be asked that way and timers are
/// assumed.
pub(crate) fn available() -> bool {
    let Ok(handle) = Handle::try_current() else {
        return false;
    };
    if cfg!(panic = "abort") {
        return true;
    }
    let key = BuildHasherDefault::<DefaultHasher>::default()
        .hash_one(handle.id())
        .max(1);
    if LAST_WITH_TIMERS.load(Ordering::Relaxed) == key {
        return true;
    }
    let mut asked = ASKED.lock().unwrap_or_else(PoisonError::into_inner);
    let enabled = match asked.iter().find(|(asked, _)| *asked == key) {
        Some(&(_, enabled)) => enabled,
        None => {
            // Asked under the lock, so that two threads do not both ask one runtime.
            // Creating a `Sleep` only checks for the driver; it registers nothing.
            let enabled = catch_unwind(AssertUnwindSafe(|| {
                drop(tokio::time::sleep(Duration::ZERO));
            }))
            .is_ok();
            if asked.len() == REMEMBERED {
                asked.remove(0);
            }
            asked.push((key, enabled));
            enabled
        }
    };
    if enabled {
        LAST_WITH_TIMERS.store(key, Ordering::Relaxed);
    }
    enabled
}

/// The current tokio runtime, if it has timers.
pub(crate) fn runtime() -> Option<Handle> {
    Handle::try_current().ok().filter(|_| available())
}

/// `now + after`, or a year from now when that would overflow (`Duration::MAX`, say).
pub(crate) fn deadline_after(after: Duration) -> Instant {
    instant_after(Instant::now(), after)
}

/// `start + after`, or a year after `start` when that would overflow.
pub(crate) fn instant_after(start: Instant, after: Duration) -> Instant {
    start.checked_add(after.min(FAR)).unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        let far = deadline_after(Duration::MAX);
        assert!(far >= now + FAR && far <= Instant::now() + FAR);
        let soon = deadline_after(Duration::from_secs(1));
        assert!(soon > now && soon <= Instant::now() + Duration::from_secs(1));
    }

    #[test]
    fn no_runtime_means_no_timers() {
        assert!(!available());
    }

    #[test]
    fn a_runtime_without_timers_is_found_out() {
        let without = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let with = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(with.block_on(async { available() }));
        assert!(!without.block_on(async { available() }));
        // Asked again, from the cache.
        assert!(!without.block_on(async { available() }));
        assert!(with.block_on(async { available() }));
    }
}
