//! Check 4: the configured user against the one the token names.

use super::{
    report::{Check, CheckName},
    token::Claims,
};
use crate::{config::Config, connect::no_user_error};

/// The user the login will name: the configured one, or the one the claims give.
pub(crate) fn check(
    cfg: &Config,
    claims: &Claims,
    derived: Option<String>,
) -> (Check, Option<String>) {
    match (&cfg.user, derived) {
        (None, Some(d)) => (
            Check::new(
                CheckName::User,
                format!("{d}, from the token's claims (no user configured)"),
            ),
            Some(d),
        ),
        (None, None) => {
            let e = no_user_error();
            (
                Check::failed(
                    CheckName::User,
                    "no user configured and the token names none",
                    e.reason,
                ),
                None,
            )
        }
        (Some(c), Some(d)) if !c.eq_ignore_ascii_case(&d) => {
            let mut check = Check::new(CheckName::User, format!("{c} (configured)"));
            check.fact("configured", c);
            check.fact("from the token", &d);
            check.warn(format!(
                "the configured user {c:?} is not the identity the token names ({d:?}); the server checks the role you log in as, {c:?}, against the token's oid ({}): it must be the role created for this identity, or a group role it belongs to",
                claims.oid.as_deref().unwrap_or("none")
            ));
            (check, Some(c.clone()))
        }
        (Some(c), _) => (
            Check::new(CheckName::User, format!("{c} (configured)")),
            Some(c.clone()),
        ),
    }
}
