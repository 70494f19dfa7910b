//! The PostgreSQL user name from a token's claims, as Microsoft's own client libraries
//! derive it when none is configured. No signature check: the server verifies the token;
//! we only read which identity it names.

use base64::Engine;

/// The token's claims (its payload, not checked: the server verifies the token).
pub fn claims_of(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The token's `exp` claim (Unix seconds), if it has one.
pub fn exp_of(token: &str) -> Option<u64> {
    claims_of(token)?.get("exp")?.as_u64()
}

/// `upn`, `preferred_username`, `unique_name`, or the last path segment of `xms_mirid`
/// (a user-assigned identity's resource id ends with its name; a system-assigned one's
/// names the resource that owns it, whose name is the identity's).
pub fn user_from_token(token: &str) -> Option<String> {
    let claims = claims_of(token)?;
    for key in ["upn", "preferred_username", "unique_name"] {
        if let Some(v) = claims.get(key).and_then(|v| v.as_str())
            && !v.is_empty()
        {
            return Some(v.to_owned());
        }
    }
    let mirid = claims.get("xms_mirid")?.as_str()?;
    let last = mirid.trim_end_matches('/').rsplit('/').next()?;
    (!last.is_empty()).then(|| last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"RS256"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn exp_is_read_when_present() {
        assert_eq!(exp_of(&jwt(r#"{"exp":1700000000}"#)), Some(1_700_000_000));
        assert_eq!(exp_of(&jwt(r#"{"upn":"a"}"#)), None);
        assert_eq!(exp_of("not a jwt"), None);
    }

    #[test]
    fn user_is_taken_from_upn_first() {
        let t = jwt(r#"{"upn":"alice@contoso.com","preferred_username":"x"}"#);
        assert_eq!(user_from_token(&t).as_deref(), Some("alice@contoso.com"));
    }

    #[test]
    fn user_falls_back_to_mirid_last_segment() {
        let t = jwt(
            r#"{"xms_mirid":"/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my-app-id"}"#,
        );
        assert_eq!(user_from_token(&t).as_deref(), Some("my-app-id"));
    }

    #[test]
    fn no_user_from_garbage() {
        assert_eq!(user_from_token("not-a-jwt"), None);
        assert_eq!(user_from_token(&jwt(r#"{"oid":"x"}"#)), None);
    }
}
