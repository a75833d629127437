//! Where the event loops read the time for their state machines.

use std::time::Instant;

use dask_core::Timestamp;

/// A monotonic clock whose origin is when it was made: it turns
/// [`Instant`]s into the [`Timestamp`]s state machines take.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The instant a timestamp of this clock stands for (to sleep until a
    /// state machine's `poll_timeout`).
    pub fn instant(&self, at: Timestamp) -> Instant {
        self.origin + at.since_origin()
    }

    /// `instant` as a timestamp of this clock (the origin for instants
    /// before it).
    pub fn at(&self, instant: Instant) -> Timestamp {
        Timestamp::from_duration(instant.saturating_duration_since(self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_follow_instants() {
        let clock = Clock::new();
        let later = Instant::now() + Duration::from_secs(3);
        assert!(clock.at(later).since_origin() >= Duration::from_secs(3));
        assert!(clock.now() <= clock.at(later));
    }
}
