//! Time as the clients see it, injectable so token lifetimes can be tested
//! without waiting.

use std::fmt::Debug;
use std::time::SystemTime;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now as Unix seconds.
    fn unix_seconds(&self) -> u64 {
        self.now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs())
    }

    /// Now as Unix milliseconds.
    fn unix_ms(&self) -> i64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock a test or tool moves by hand: the system's time shifted by what
/// [`ManualClock::advance`] added, so it never runs behind what other parts
/// of the process stamp with the system clock (an accept's time), and time
/// passes for it only when its holder says so, not while it waits.
#[derive(Debug, Default)]
pub struct ManualClock {
    ahead: std::sync::Mutex<std::time::Duration>,
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        *self.ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += by;
    }

    /// Moves the clock forward to `unix_ms` if it is behind it.
    pub fn advance_to_ms(&self, unix_ms: i64) {
        let target =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(unix_ms).unwrap_or_default());
        if let Ok(behind) = target.duration_since(self.now()) {
            self.advance(behind);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + *self.ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
