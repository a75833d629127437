//! The one time type of every state machine.
//!
//! State machines never read a clock: each input carries the time, as a
//! [`Timestamp`], and each `poll_timeout` answers with one. A timestamp is
//! the time since an origin the edge picks (the Rust event loops: when
//! their [`Clock`](https://docs.rs/dask-net) started; the JS SDK:
//! `performance.now()`'s origin; tests: zero, on a simulated clock). Only
//! differences between timestamps mean anything, and an edge must never
//! hand a machine a timestamp earlier than one it handed before.
//!
//! Why not `std::time::Instant`: it does not exist on
//! `wasm32-unknown-unknown`, and simulated clocks cannot make one.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time: the [`Duration`] since an origin the caller picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The origin.
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    /// The point `since_origin` after the origin.
    pub const fn from_duration(since_origin: Duration) -> Timestamp {
        Timestamp(since_origin)
    }

    /// The point `ms` milliseconds after the origin (JS clocks). Negative,
    /// NaN and infinite inputs give the origin.
    pub fn from_millis_f64(ms: f64) -> Timestamp {
        if ms.is_finite() && ms > 0.0 {
            Timestamp(Duration::from_secs_f64(ms / 1000.0))
        } else {
            Timestamp::ZERO
        }
    }

    /// The time since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Milliseconds since the origin (JS clocks).
    pub fn as_millis_f64(self) -> f64 {
        self.0.as_secs_f64() * 1000.0
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_add(d).map(Timestamp)
    }

    /// `self - d`, or `None` before the origin.
    pub fn checked_sub(self, d: Duration) -> Option<Timestamp> {
        self.0.checked_sub(d).map(Timestamp)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

/// The time between two points, zero when `rhs` is later (as
/// [`Timestamp::saturating_duration_since`]).
impl Sub<Timestamp> for Timestamp {
    type Output = Duration;

    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Timestamp::from_duration(Duration::from_secs(5));
        assert_eq!(t + Duration::from_secs(1) - t, Duration::from_secs(1));
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(t.checked_sub(Duration::from_secs(6)), None);
        assert_eq!(
            Timestamp::from_duration(Duration::MAX) + Duration::from_secs(1),
            Timestamp::from_duration(Duration::MAX)
        );
    }

    #[test]
    fn js_milliseconds_round_trip_and_bad_ones_give_the_origin() {
        let t = Timestamp::from_millis_f64(1500.0);
        assert_eq!(t.since_origin(), Duration::from_millis(1500));
        assert_eq!(t.as_millis_f64(), 1500.0);
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(Timestamp::from_millis_f64(bad), Timestamp::ZERO);
        }
    }
}
