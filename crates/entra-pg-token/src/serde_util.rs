//! Durations in configuration files: humantime strings (`"30s"`, `"5m"`) or plain
//! seconds.

/// A [`Duration`](std::time::Duration) field: `#[serde(with = "entra_pg_token::serde_util::duration")]`.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    /// A duration as written: whole seconds, fractional seconds, or humantime text.
    pub enum Repr {
        /// Whole seconds.
        Secs(u64),
        /// Fractional seconds.
        Float(f64),
        /// Humantime text (`"30s"`, `"5m"`).
        Text(String),
    }

    /// The duration `r` says, or an error naming the value.
    pub fn to_duration<E: serde::de::Error>(r: Repr) -> Result<Duration, E> {
        match r {
            Repr::Secs(s) => Ok(Duration::from_secs(s)),
            // `try_from`: a value past `Duration::MAX` (1e30) is an error, not a panic.
            Repr::Float(f) => Duration::try_from_secs_f64(f)
                .map_err(|e| E::custom(format!("invalid duration {f}: {e}"))),
            Repr::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| E::custom(format!("invalid duration {t:?}: {e}"))),
        }
    }

    /// Reads a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        to_duration(Repr::deserialize(d)?)
    }

    /// Writes a duration as humantime text.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*v).to_string())
    }

    /// An `Option<Duration>` field.
    pub mod option {
        use super::*;

        /// Reads an optional duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match Option::<Repr>::deserialize(d)? {
                None => Ok(None),
                Some(r) => super::to_duration(r).map(Some),
            }
        }

        /// Writes an optional duration.
        pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }
    }
}
