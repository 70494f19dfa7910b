//! A timing for the metrics: started before a fetch or a login, read when it ends. Empty
//! without the `metrics` feature, so that timing costs nothing then.

/// A started timing; empty without the feature.
pub struct Stopwatch {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Stopwatch {
    /// Starts a timing now.
    #[inline]
    pub fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    /// Seconds since the start.
    #[cfg(feature = "metrics")]
    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
