//! Signed JWTs (RS256) with Azure's claims, and their verification at the front.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};

/// Signs and verifies tokens with an RSA-2048 key made at start.
pub(crate) struct Signer {
    key: KeyPair,
    public: Vec<u8>,
    kid: String,
    rng: SystemRandom,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    /// Not a JWT, or its signature does not verify.
    Invalid(&'static str),
    /// `exp` is in the past (or `nbf` in the future).
    Expired,
}

/// [`TokenProblem::Invalid`]'s reason when the signature does not verify.
pub(crate) const BAD_SIGNATURE: &str = "its signature could not be verified";
/// [`TokenProblem::Invalid`]'s reason when `nbf` is in the future (past the allowed skew).
pub(crate) const NOT_YET_VALID: &str = "it is not valid yet (nbf)";

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Signer {
    pub fn new() -> Result<Self, crate::error::Error> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| {
            crate::error::Error::Crypto("cannot generate the RSA token-signing key".into())
        })?;
        let public = key.public_key().as_ref().to_vec();
        let kid = crate::entra::ids::random_hex(20);
        Ok(Signer {
            key,
            public,
            kid,
            rng: SystemRandom::new(),
        })
    }

    /// Sign `claims` into a compact JWS.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid});
        let mut out = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims).unwrap_or_default()));
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        // Signing with a key we generated cannot fail short of memory exhaustion.
        if self
            .key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                out.as_bytes(),
                &mut sig,
            )
            .is_err()
        {
            sig.clear();
        }
        out.push('.');
        out.push_str(&B64.encode(&sig));
        out
    }

    /// Check format, signature and time window; return the claims.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, TokenProblem> {
        verify_rs256(token, &self.public)
    }
}

/// Check a compact JWS signed RS256 with the RSA key `public` (PKCS#1 `RSAPublicKey` DER),
/// and its time window (`exp`, and `nbf` with Entra's five minutes of clock skew); return
/// its claims.
pub(crate) fn verify_rs256(token: &str, public: &[u8]) -> Result<Map<String, Value>, TokenProblem> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenProblem::Invalid("it is not a well-formed JWT"));
    };
    let header = json_part(h).ok_or(TokenProblem::Invalid(
        "its header is not valid base64url JSON",
    ))?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(TokenProblem::Invalid("it is not signed with RS256"));
    }
    let sig = B64
        .decode(s)
        .map_err(|_| TokenProblem::Invalid("its signature is not base64url"))?;
    let signed_len = h.len() + 1 + c.len();
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(&token.as_bytes()[..signed_len], &sig)
        .map_err(|_| TokenProblem::Invalid(BAD_SIGNATURE))?;
    let claims = json_part(c).ok_or(TokenProblem::Invalid(
        "its claims are not valid base64url JSON",
    ))?;
    // NumericDate may have a fraction (RFC 7519, section 2): MSAL for Python sends
    // `time.time() + 600` in its client assertions, and Entra accepts it.
    let now = now_secs() as f64;
    let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0);
    if exp <= now {
        return Err(TokenProblem::Expired);
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        // Allow the five minutes of clock skew Entra ID allows.
        if nbf > now + 300.0 {
            return Err(TokenProblem::Invalid(NOT_YET_VALID));
        }
    }
    Ok(claims)
}

/// One part of a compact JWS (header or claims): base64url of a JSON object.
fn json_part(part: &str) -> Option<Map<String, Value>> {
    serde_json::from_slice(&B64.decode(part).ok()?).ok()
}

/// Decode a token's header without checking anything.
pub(crate) fn decode_header(token: &str) -> Option<Map<String, Value>> {
    json_part(token.split('.').next()?)
}

/// What goes into a token besides the standard time claims.
pub(crate) struct Subject<'a> {
    pub object_id: &'a str,
    /// `appid` (managed identity client id, or the Azure CLI's app id for users).
    pub app_id: &'a str,
    pub upn: Option<&'a str>,
    pub mi_resource_id: Option<&'a str>,
}

/// The Azure CLI's well-known client id, which user tokens from `az` carry as `appid`.
pub(crate) const AZURE_CLI_APP_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// Build Azure-like claims; `issued_at` and `lifetime` decide `iat`, `nbf`, `exp`.
pub(crate) fn claims(
    tenant: &str,
    resource: &str,
    subject: &Subject<'_>,
    issued_at: u64,
    lifetime: Duration,
    uti: &str,
) -> Value {
    let iss = format!("https://sts.windows.net/{tenant}/");
    let exp = issued_at.saturating_add(lifetime.as_secs().max(1));
    let mut c = json!({
        "aud": resource,
        "iss": iss,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": exp,
        // Opaque claims sized like Azure's (its managed identity tokens are about 1,300
        // to 1,900 characters; the size matters for PgBouncer and the password packet).
        "aio": crate::entra::ids::random_hex(48),
        "appid": subject.app_id,
        "appidacr": if subject.upn.is_some() { "0" } else { "2" },
        "idp": iss,
        "oid": subject.object_id,
        "idtyp": if subject.upn.is_some() { "user" } else { "app" },
        "rh": format!("1.{}.", crate::entra::ids::random_hex(40)),
        "sub": subject.object_id,
        "tid": tenant,
        "uti": uti,
        "ver": "1.0",
        "xms_ftd": crate::entra::ids::random_hex(30),
        "xms_idrel": "7 24",
        "xms_rd": format!("0.{}", crate::entra::ids::random_hex(40)),
        "xms_tcdt": 1_600_000_000u64,
    });
    if let Some(upn) = subject.upn {
        c["upn"] = json!(upn);
        c["unique_name"] = json!(upn);
        c["name"] = json!(upn.split('@').next().unwrap_or(upn));
        c["scp"] = json!("user_impersonation");
        c["amr"] = json!(["pwd"]);
    }
    if let Some(rid) = subject.mi_resource_id {
        c["xms_mirid"] = json!(rid);
    }
    c
}

/// Decode a token's claims without checking anything (for tests and tools).
pub fn decode_claims(token: &str) -> Option<Map<String, Value>> {
    json_part(token.split('.').nth(1)?)
}
