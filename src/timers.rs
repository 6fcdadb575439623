//! Whether tokio timers can be used here, and deadlines that cannot overflow.
//!
//! Both parts of the crate bound their work with tokio timers. A runtime built without
//! `enable_time` panics as soon as a timer is created, and tokio offers no way to ask
//! beforehand, so [`available`] tries one under `catch_unwind`; callers then fall back
//! to a plain close or `Connection: close`. Only a failed try shows (tokio's message
//! goes through the panic hook), so only those answers are kept. The lingering half
//! asks when an IO is wrapped, so that its drop asks nothing.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::{Handle, Id};
use tokio::time::Instant;

/// Far enough to mean "no limit", near enough that tokio's timer wheel takes it.
const FAR: Duration = Duration::from_secs(60 * 60 * 24 * 365);

/// How many runtimes without timers [`available`] remembers. Such runtimes are rare
/// (applications build them by mistake, tests on purpose), and the bound keeps memory
/// fixed whatever the program does, since tokio never says when a runtime is gone.
const REMEMBERED: usize = 64;

/// The runtimes found without timers, the one asked most recently last.
///
/// Runtimes with timers are not kept here: asking one again costs a `Sleep` that never
/// panics, so nobody sees it, whereas forgetting a runtime without timers shows tokio's
/// message again. Keeping both let per-test runtimes and `reqwest::blocking` clients,
/// all with timers, push a runtime without timers out.
static WITHOUT_TIMERS: Mutex<Vec<Id>> = Mutex::new(Vec::new());

/// A hash of the runtime last found to have timers (0: none yet): the common answer,
/// without a lock.
static LAST_WITH_TIMERS: AtomicU64 = AtomicU64::new(0);

/// Whether the current thread is in a tokio runtime whose timers are enabled.
///
/// A runtime without timers lets tokio's panic message through the panic hook the first
/// time it is asked, and again only if [`REMEMBERED`] other runtimes without timers were
/// asked since it last was; a runtime with timers never does, however many come and go.
/// Under `panic = "abort"` nothing can be asked that way and timers are assumed.
pub(crate) fn available() -> bool {
    let Ok(handle) = Handle::try_current() else {
        return false;
    };
    if cfg!(panic = "abort") {
        return true;
    }
    let id = handle.id();
    // Hashed because an `Id` does not fit an atomic. A runtime without timers whose hash
    // matched the last one with timers would answer `true` and panic later: a 2^-64 risk
    // for ids tokio never reuses.
    let key = BuildHasherDefault::<DefaultHasher>::default()
        .hash_one(id)
        .max(1);
    if LAST_WITH_TIMERS.load(Ordering::Relaxed) == key {
        return true;
    }
    let mut without = WITHOUT_TIMERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // From the back: the runtime in use is usually the one asked last.
    if let Some(at) = without.iter().rposition(|&known| known == id) {
        // Moved last, so that a runtime still in use is the last to be forgotten.
        let known = without.remove(at);
        without.push(known);
        return false;
    }
    // Tried under the lock, so that two threads do not both show the message for one
    // runtime. Creating a `Sleep` only checks for the driver; it registers nothing.
    let enabled = catch_unwind(AssertUnwindSafe(|| {
        drop(tokio::time::sleep(Duration::ZERO));
    }))
    .is_ok();
    if enabled {
        LAST_WITH_TIMERS.store(key, Ordering::Relaxed);
    } else {
        if without.len() == REMEMBERED {
            without.remove(0);
        }
        without.push(id);
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
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

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

    /// A runtime without timers wraps an IO, then 100 runtimes with timers come and go,
    /// each wrapping one (per-test runtimes, `reqwest::blocking` clients), then the first
    /// wraps again: tokio's "timers are disabled" message reaches the panic hook once.
    ///
    /// Before: the last 64 runtimes asked were kept, with timers or not, so the first was
    /// pushed out, asked again, and the hook ran twice.
    #[test]
    fn runtimes_with_timers_do_not_push_out_one_without() {
        type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
        // Other tests of this binary run on other threads and may panic meanwhile: only
        // this thread's "timers are disabled" messages are counted, the rest go on.
        let this_thread = std::thread::current().id();
        let shown = Arc::new(AtomicUsize::new(0));
        let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
        let (counted, forward) = (Arc::clone(&shown), Arc::clone(&previous));
        std::panic::set_hook(Box::new(move |info| {
            let timers = info.to_string().contains("timers are disabled");
            if timers && std::thread::current().id() == this_thread {
                counted.fetch_add(1, Ordering::Relaxed);
            } else {
                forward(info);
            }
        }));

        let group = crate::LingerGroup::default();
        let wrap_one = |runtime: &tokio::runtime::Runtime| {
            runtime.block_on(async {
                let (near, _far) = tokio::io::duplex(64);
                drop(group.wrap(near));
            });
        };
        let without = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        wrap_one(&without);
        for _ in 0..100 {
            let with = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            wrap_one(&with);
        }
        wrap_one(&without);

        drop(std::panic::take_hook());
        match Arc::try_unwrap(previous) {
            Ok(previous) => std::panic::set_hook(previous),
            Err(_) => unreachable!("the counting hook, its only other holder, is gone"),
        }
        assert_eq!(shown.load(Ordering::Relaxed), 1);
        // Only the two wraps on the runtime without timers closed plainly.
        assert_eq!(group.stats().skipped, 2, "{:?}", group.stats());
    }
}
