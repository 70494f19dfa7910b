//! A secret (token or password) at rest: zeroed when the last reference goes, never
//! printed.

use std::fmt;

use zeroize::Zeroizing;

/// The bytes of a token or password. No `Display`; `Debug` prints `<redacted>`; the
/// memory is overwritten with zeros when the value is dropped, so a secret does not linger
/// in freed memory.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of the secret.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret itself, for a login or a comparison. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s, Secret::new("hunter2".into()));
    }
}
