//! Simulated time for the replay server and the scale benchmark: real time
//! run `speed` times faster from a chosen epoch. Ten simulated minutes then
//! take two real ones at speed 5, and every figure read through the clock
//! (rate limits, trade times, staleness) is in simulated time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A clock that maps real instants to simulated unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    origin: Instant,
    origin_wall_ms: i64,
    epoch_ms: i64,
    speed: f64,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SimClock {
    /// Real time: speed 1 from now.
    pub fn wall() -> Self {
        Self::accelerated(wall_ms(), 1.0)
    }

    /// Starts at `epoch_ms` (unix ms) now, running `speed` times faster than
    /// real time (at least 0.001).
    pub fn accelerated(epoch_ms: i64, speed: f64) -> Self {
        Self {
            origin: Instant::now(),
            origin_wall_ms: wall_ms(),
            epoch_ms,
            speed: if speed.is_finite() {
                speed.max(0.001)
            } else {
                1.0
            },
        }
    }

    /// How many times faster than real time it runs.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The simulated unix ms it started at.
    pub fn epoch_ms(&self) -> i64 {
        self.epoch_ms
    }

    /// Simulated unix ms now.
    pub fn now_ms(&self) -> i64 {
        self.at_ms(Instant::now())
    }

    /// Simulated unix ms at a real instant (instants before the start map to
    /// the epoch).
    pub fn at_ms(&self, instant: Instant) -> i64 {
        let real = instant.saturating_duration_since(self.origin).as_secs_f64();
        self.epoch_ms + (real * 1000.0 * self.speed).floor() as i64
    }

    /// Simulated unix ms at a real wall-clock time in unix ms (as
    /// `chrono::Utc::now()` stamps things).
    pub fn at_wall_ms(&self, wall_ms: i64) -> i64 {
        let real = (wall_ms - self.origin_wall_ms).max(0) as f64;
        self.epoch_ms + (real * self.speed).floor() as i64
    }

    /// The real duration that lasts `simulated` on this clock.
    pub fn to_real(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.speed)
    }

    /// The real instant at which the clock shows `sim_ms`.
    pub fn instant_at(&self, sim_ms: i64) -> Instant {
        let real = ((sim_ms - self.epoch_ms) as f64 / 1000.0 / self.speed).max(0.0);
        self.origin + Duration::from_secs_f64(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_time_runs_speed_times_faster_from_the_epoch() {
        let clock = SimClock::accelerated(1_000_000, 5.0);
        let later = clock.instant_at(1_060_000);
        assert_eq!(later - clock.origin, Duration::from_secs(12), "60 s at 5x");
        assert_eq!(clock.at_ms(later), 1_060_000);
        assert_eq!(
            clock.at_ms(clock.origin - Duration::from_secs(1)),
            1_000_000
        );
        assert_eq!(
            clock.to_real(Duration::from_secs(15)),
            Duration::from_secs(3)
        );
        assert_eq!(clock.at_wall_ms(clock.origin_wall_ms + 2_000), 1_010_000);
        assert!(clock.now_ms() >= 1_000_000);
        assert_eq!(SimClock::accelerated(0, f64::NAN).speed(), 1.0);
    }
}
