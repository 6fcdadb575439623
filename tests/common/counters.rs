//! `DrainCounters` in tests: a layer that counts, and waiting until its drains
//! have settled.

use std::time::Duration;

use linger::{DrainBodyLayer, DrainCounters, DrainStats};

use super::{step_within, STEP};

/// `layer` with fresh counters, and the counters.
pub fn counted(layer: DrainBodyLayer) -> (DrainBodyLayer, DrainCounters) {
    let counters = DrainCounters::new();
    (layer.counters(counters.clone()), counters)
}

/// Waits until `bodies` bodies have an outcome and no drain is in flight,
/// then returns the counters. Drains end in their own task, a moment after
/// the client can see their effect, so this polls the counters (bounded by
/// [`STEP`]) instead of sleeping a guessed time.
pub async fn settled(counters: &DrainCounters, bodies: u64) -> DrainStats {
    settled_within(STEP, counters, bodies).await
}

/// [`settled`], bounded by `limit`.
pub async fn settled_within(limit: Duration, counters: &DrainCounters, bodies: u64) -> DrainStats {
    step_within(limit, "counters settle", async {
        loop {
            let stats = counters.snapshot();
            if stats.settled() >= bodies && stats.draining == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}
