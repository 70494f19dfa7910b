//! Durations on the command line: humantime (`30s`, `250ms`) or bare seconds.

use std::time::Duration;

/// Parses `30s`, `250ms`, `1m`, `1h` (humantime), also a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>()
        && secs >= 0.0
        && secs.is_finite()
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}
