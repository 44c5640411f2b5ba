//! The host's time: the system's, plus an offset that only a catalog test's driver moves
//! forward (its test clock), so a test whose work waits behind a `readDelay` advances time
//! instead of waiting for it. Every time the host stamps (`_meta/published`, a document's
//! UUIDv7) or compares with (`readDelay`) is read here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A host's clock; clones share it.
#[derive(Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the system's time.
    ahead_ms: Arc<AtomicU64>,
    /// The state that keeps this host's UUIDv7s increasing, of its own: a process-wide one
    /// would carry one host's test clock into every other host's UUIDs (it never goes back).
    v7: Arc<std::sync::Mutex<uuid::ContextV7>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Clock(+{} ms)", self.ahead_ms.load(Ordering::Relaxed))
    }
}

impl Clock {
    /// Increasing UUIDv7s of `at` (a time of this clock), one per `issue`.
    pub fn uuids_v7(&self, at: SystemTime) -> UuidsV7<'_> {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        UuidsV7 {
            v7: self
                .v7
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            secs: since.as_secs(),
            nanos: since.subsec_nanos(),
        }
    }

    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Move the clock forward to `ms` (since the epoch), if it is behind it: never back.
    pub fn advance_to_ms(&self, ms: u64) {
        let now = self.now_ms();
        if ms > now {
            self.ahead_ms.fetch_add(ms - now, Ordering::Relaxed);
        }
    }
}

/// UUIDv7s of one time: see `Clock::uuids_v7`.
pub struct UuidsV7<'a> {
    v7: std::sync::MutexGuard<'a, uuid::ContextV7>,
    secs: u64,
    nanos: u32,
}

impl UuidsV7<'_> {
    /// The next UUIDv7 of the time, after every one before it.
    pub fn issue(&mut self) -> uuid::Uuid {
        let ts = uuid::Timestamp::from_unix(&*self.v7, self.secs, self.nanos);
        uuid::Uuid::new_v7(ts)
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn a_clock_only_moves_forward() {
        let c = super::Clock::default();
        let start = c.now_ms();
        c.advance_to_ms(start - 1000);
        assert!(c.now_ms() - start < 1000);
        c.advance_to_ms(start + 48 * 3_600_000);
        assert!(c.now_ms() >= start + 48 * 3_600_000);
        assert!(
            c.clone().now_ms() >= start + 48 * 3_600_000,
            "clones share it"
        );
    }
}
