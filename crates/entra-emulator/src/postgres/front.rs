//! The Azure-like PostgreSQL front: TLS only, password = Entra token (or a static password),
//! then a byte-for-byte pass-through to the real cluster.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;

use crate::entra::token::TokenProblem;
use crate::postgres::pgwire::{self, CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST};
use crate::state::{RoleType, Shared, bump};

/// The resource Azure Database for PostgreSQL tokens must be issued for.
pub const OSSRDBMS_RESOURCE: &str = "https://ossrdbms-aad.database.windows.net";

/// The texts the front answers with (SQLSTATE, message); public so tests and clients can match.
pub mod messages {
    /// Plaintext connection refused (SQLSTATE 28000).
    pub const SSL_REQUIRED: &str =
        "SSL connection is required. Please specify SSL options and retry.";
    /// Expired token (SQLSTATE 28000).
    pub const TOKEN_EXPIRED: &str =
        "The access token has expired. Please acquire a new token and retry.";
    /// Wrong audience (SQLSTATE 28000).
    pub const WRONG_AUDIENCE: &str = "The access token does not have a valid audience claim. Please acquire a new token for the resource \"https://ossrdbms-aad.database.windows.net\".";
    /// Start of the message for a malformed token or a bad signature (SQLSTATE 28000).
    pub const TOKEN_INVALID_PREFIX: &str = "The access token is invalid";
    /// Message for a valid token the server would not accept (the `refuse_issued_tokens`
    /// fault; SQLSTATE 28000), Azure's text for a token it could not validate.
    pub const TOKEN_VALIDATION_FAILED: &str = "An error occurred while validating the access token. Please acquire a new token and retry.";
    /// Message for a login refused by the `refuse_logins` fault (SQLSTATE 28000).
    pub const TOKEN_REVOKED: &str = "The access token has been revoked or the principal is disabled. Please acquire a new token and retry.";
    /// The wrong-audience text naming `resource`, the resource of the server's cloud
    /// ([`WRONG_AUDIENCE`] for the public cloud).
    pub fn wrong_audience(resource: &str) -> String {
        format!(
            "The access token does not have a valid audience claim. Please acquire a new token for the resource \"{resource}\"."
        )
    }
    /// A token whose principal is not the one a service principal's role was created for
    /// (SQLSTATE 28000): Azure's text, naming the object id in the role's security label
    /// and the token's `appid` and `oid`.
    pub fn oid_mismatch(role_oid: &str, appid: &str, oid: &str) -> String {
        format!(
            "Service principal oid mismatch for role \"The oid in the security label [{role_oid}] does not match the appid [{appid}] or oid [{oid}] in the token.\""
        )
    }
    /// A user's token for a role created for a service principal (SQLSTATE 28000).
    pub fn user_token_for_service_role(role: &str) -> String {
        format!(
            "Service principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role \"{role}\"."
        )
    }
    /// An application's token (a managed identity's, a service principal's) for a role
    /// created for a user (SQLSTATE 28000).
    pub fn app_token_for_user_role(role: &str) -> String {
        format!(
            "Microsoft Entra user token for role \"{role}\" is neither an AAD_AUTH_TOKENTYPE_APP_USER or an AAD_AUTH_TOKENTYPE_APP_OBO token."
        )
    }
    /// SQLSTATE for token problems, unknown roles and plaintext.
    pub const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";
    /// SQLSTATE for a wrong static password.
    pub const SQLSTATE_INVALID_PASSWORD: &str = "28P01";
}
use messages::*;

/// The token resource of Azure US Government's PostgreSQL servers.
pub const OSSRDBMS_RESOURCE_US_GOVERNMENT: &str = "https://ossrdbms-aad.database.usgovcloudapi.net";
/// The token resource of Azure China's PostgreSQL servers.
pub const OSSRDBMS_RESOURCE_CHINA: &str = "https://ossrdbms-aad.database.chinacloudapi.cn";

/// The resource tokens must be issued for, given the server name the client asked for:
/// a `*.postgres.database.usgovcloudapi.net` or `*.postgres.database.chinacloudapi.cn`
/// server is in that sovereign cloud; any other name (or none) is the public cloud.
pub(crate) fn resource_for_server_name(name: Option<&str>) -> &'static str {
    let name = name.unwrap_or_default().to_ascii_lowercase();
    if name.ends_with(".postgres.database.usgovcloudapi.net") {
        OSSRDBMS_RESOURCE_US_GOVERNMENT
    } else if name.ends_with(".postgres.database.chinacloudapi.cn") {
        OSSRDBMS_RESOURCE_CHINA
    } else {
        OSSRDBMS_RESOURCE
    }
}

pub(crate) struct Front {
    pub shared: Arc<Shared>,
    pub acceptor: TlsAcceptor,
    pub backend_socket: PathBuf,
    /// A read replica's front: sessions are read-only (`default_transaction_read_only`).
    pub read_only: bool,
    /// The node of the Azure network this front serves, if any: its logins are counted
    /// there and its sessions can vanish.
    pub node: Option<(crate::network::Network, crate::network::Node)>,
}

pub(crate) async fn serve(listener: TcpListener, front: Arc<Front>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let f = front.clone();
        let epoch = f.shared.session_epoch();
        tokio::spawn(async move {
            // Like PostgreSQL's authentication_timeout: no client holds a task forever.
            let auth = tokio::time::timeout(AUTH_TIMEOUT, f.authenticate(tcp)).await;
            if let Ok(Ok(Some((tls, backend)))) = auth {
                f.splice(tls, backend, epoch, peer).await;
            }
        });
    }
}

type Session = (tokio_rustls::server::TlsStream<TcpStream>, UnixStream);

/// How long a client may take from connecting to being logged in.
const AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

enum Decision {
    Accept,
    Refuse(&'static str, String),
}

impl Front {
    /// Everything up to the pass-through: TLS, startup, password check, backend connection.
    async fn authenticate(&self, mut tcp: TcpStream) -> std::io::Result<Option<Session>> {
        // libpq 17's `sslnegotiation=direct` starts with a TLS ClientHello right away.
        let mut first = [0u8; 1];
        let direct_tls = tcp.peek(&mut first).await? == 1 && first[0] == 0x16;
        if !direct_tls {
            loop {
                let (code, body) = pgwire::read_startup(&mut tcp).await?;
                match code {
                    SSL_REQUEST => {
                        pgwire::send(&mut tcp, b"S").await?;
                        break;
                    }
                    GSSENC_REQUEST => pgwire::send(&mut tcp, b"N").await?,
                    CANCEL_REQUEST => return self.forward_cancel(&body).await.map(|()| None),
                    _ => {
                        bump(&self.shared.counters.logins_refused_plaintext);
                        pgwire::send(
                            &mut tcp,
                            &pgwire::fatal(SQLSTATE_INVALID_AUTHORIZATION, SSL_REQUIRED),
                        )
                        .await?;
                        return Ok(None);
                    }
                }
            }
        }
        let mut tls = self.acceptor.accept(tcp).await?;
        let (code, body) = pgwire::read_startup(&mut tls).await?;
        if code == CANCEL_REQUEST {
            return self.forward_cancel(&body).await.map(|()| None);
        }
        if code >> 16 != 3 {
            pgwire::send(
                &mut tls,
                &pgwire::fatal("0A000", "unsupported frontend protocol"),
            )
            .await?;
            return Ok(None);
        }
        let mut params = pgwire::parse_params(&body);
        if self.read_only {
            // As a read replica: every session is read-only, which clients asking for
            // `target_session_attrs=read-write` detect and skip.
            const READ_ONLY: &str = "-c default_transaction_read_only=on";
            match params.iter_mut().find(|(k, _)| k == "options") {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(READ_ONLY);
                }
                None => params.push(("options".into(), READ_ONLY.into())),
            }
        }
        let Some(user) = params
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.clone())
        else {
            pgwire::send(
                &mut tls,
                &pgwire::fatal(
                    "28000",
                    "no PostgreSQL user name specified in startup packet",
                ),
            )
            .await?;
            return Ok(None);
        };
        // AuthenticationCleartextPassword
        pgwire::send(&mut tls, &pgwire::message(b'R', &3i32.to_be_bytes())).await?;
        let (ty, body) = pgwire::read_message(&mut tls, 64 * 1024).await?;
        if ty != b'p' {
            return Ok(None);
        }
        let password =
            String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned();

        let latency = self.shared.login_latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        // Azure's servers in each cloud accept tokens for that cloud's resource only; the
        // name the client asked for (SNI) says which cloud this server is in.
        let resource = resource_for_server_name(tls.get_ref().1.server_name());
        match self.decide(&user, &password, resource) {
            Decision::Refuse(code, msg) => {
                pgwire::send(&mut tls, &pgwire::fatal(code, &msg)).await?;
                let _ = tls.shutdown().await;
                return Ok(None);
            }
            Decision::Accept => {}
        }
        let mut backend = match UnixStream::connect(&self.backend_socket).await {
            Ok(b) => b,
            Err(e) => {
                pgwire::send(
                    &mut tls,
                    &pgwire::fatal(
                        "08006",
                        &format!("the server behind the front is not reachable: {e}"),
                    ),
                )
                .await?;
                return Ok(None);
            }
        };
        bump(&self.shared.counters.logins_accepted);
        if let Some((network, node)) = &self.node {
            network.count_login(*node);
        }
        backend
            .write_all(&pgwire::startup_message(code, &params))
            .await?;
        Ok(Some((tls, backend)))
    }

    async fn splice<C>(
        &self,
        mut client: C,
        mut backend: UnixStream,
        epoch: u64,
        peer: std::net::SocketAddr,
    ) where
        C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
        let task = tokio::spawn(async move {
            let Ok(id) = rx.await else { return };
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut backend,
                16 * 1024,
                16 * 1024,
            )
            .await;
            let _ = client.shutdown().await;
            shared.unregister_session(id);
        });
        // A kill since this connection was accepted (a failover during its login) ends it too.
        let id = self.shared.register_session(task.abort_handle(), epoch);
        if let Some(id) = id {
            let _ = tx.send(id);
        }
        let _tracked = match (&self.node, peer) {
            (Some((network, node)), std::net::SocketAddr::V4(client)) => {
                Some(network.track_session(*node, client, task.abort_handle()))
            }
            _ => None,
        };
        let _ = task.await;
        if let Some(id) = id {
            // Also when the task was aborted (its node vanished).
            self.shared.unregister_session(id);
        }
    }

    async fn forward_cancel(&self, body: &[u8]) -> std::io::Result<()> {
        if body.len() != 8 {
            return Ok(());
        }
        let mut b = UnixStream::connect(&self.backend_socket).await?;
        let mut msg = Vec::with_capacity(16);
        msg.extend_from_slice(&16i32.to_be_bytes());
        msg.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        msg.extend_from_slice(body);
        b.write_all(&msg).await?;
        let _ = b.shutdown().await;
        Ok(())
    }

    fn decide(&self, user: &str, password: &str, resource: &str) -> Decision {
        let c = &self.shared.counters;
        let reg = self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(expected) = reg.passwords.get(user) {
            if expected == password {
                return Decision::Accept;
            }
            bump(&c.logins_refused_bad_password);
            return Decision::Refuse(
                SQLSTATE_INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            );
        }
        let mapped = reg.principals.get(user).cloned();
        drop(reg);
        let looks_like_jwt = password.split('.').count() == 3;
        if mapped.is_none() && !looks_like_jwt {
            bump(&c.logins_refused_bad_password);
            return Decision::Refuse(
                SQLSTATE_INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            );
        }
        let claims = match self.shared.signer.verify(password) {
            Ok(claims) => claims,
            Err(TokenProblem::Expired) => {
                bump(&c.logins_refused_expired);
                tracing::warn!(user, "refused a login with an expired token");
                return Decision::Refuse(SQLSTATE_INVALID_AUTHORIZATION, TOKEN_EXPIRED.into());
            }
            Err(TokenProblem::Invalid(why)) => {
                bump(&c.logins_refused_signature);
                return Decision::Refuse(
                    SQLSTATE_INVALID_AUTHORIZATION,
                    format!("{TOKEN_INVALID_PREFIX}: {why}. Please acquire a new token and retry."),
                );
            }
        };
        let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
        if aud.trim_end_matches('/') != resource {
            bump(&c.logins_refused_audience);
            return Decision::Refuse(
                SQLSTATE_INVALID_AUTHORIZATION,
                messages::wrong_audience(resource),
            );
        }
        let uti = claims.get("uti").and_then(Value::as_str).unwrap_or("");
        if self.shared.issued.is_refused(uti) {
            bump(&c.logins_refused_validation);
            return Decision::Refuse(
                SQLSTATE_INVALID_AUTHORIZATION,
                TOKEN_VALIDATION_FAILED.into(),
            );
        }
        if self.shared.refuse_logins() {
            bump(&c.logins_refused_revoked);
            return Decision::Refuse(SQLSTATE_INVALID_AUTHORIZATION, TOKEN_REVOKED.into());
        }
        let oid = claims.get("oid").and_then(Value::as_str).unwrap_or("");
        let Some(role) = mapped else {
            bump(&c.logins_refused_unknown_role);
            return Decision::Refuse(
                SQLSTATE_INVALID_AUTHORIZATION,
                format!(
                    "role \"{user}\" does not exist. Create it for the principal (oid {oid}) with pgaadauth_create_principal."
                ),
            );
        };
        // Azure checks the token's type against the role's before the object id: a user's
        // token for a service principal's role is refused for its type, though its oid
        // differs too.
        let app_token = claims.get("idtyp").and_then(Value::as_str) == Some("app")
            || claims.get("upn").is_none();
        let appid = claims.get("appid").and_then(Value::as_str).unwrap_or("");
        match role.role_type() {
            RoleType::Service if !app_token => {
                bump(&c.logins_refused_token_type);
                Decision::Refuse(
                    SQLSTATE_INVALID_AUTHORIZATION,
                    messages::user_token_for_service_role(user),
                )
            }
            RoleType::User if app_token => {
                bump(&c.logins_refused_token_type);
                Decision::Refuse(
                    SQLSTATE_INVALID_AUTHORIZATION,
                    messages::app_token_for_user_role(user),
                )
            }
            // The label's object id may match the token's `oid` or its `appid`, as
            // Azure's text says.
            RoleType::Service if role.object_id() == oid || role.object_id() == appid => {
                Decision::Accept
            }
            RoleType::Service => {
                bump(&c.logins_refused_oid_mismatch);
                Decision::Refuse(
                    SQLSTATE_INVALID_AUTHORIZATION,
                    messages::oid_mismatch(role.object_id(), appid, oid),
                )
            }
            _ if role.admits(oid) => Decision::Accept,
            // Another user's token for a user's role, a non-member's for a group's: the
            // emulator's own text (no Azure text for these is known here).
            _ => {
                bump(&c.logins_refused_unknown_role);
                Decision::Refuse(
                    SQLSTATE_INVALID_AUTHORIZATION,
                    format!(
                        "role \"{user}\" does not exist for the principal in the access token (oid {oid}). \
                         Create it with pgaadauth_create_principal or log in as the role mapped to this principal."
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod cloud_tests {
    use super::*;

    #[test]
    fn the_server_name_says_which_cloud_s_tokens_are_accepted() {
        let r = resource_for_server_name;
        assert_eq!(r(Some("a.postgres.database.azure.com")), OSSRDBMS_RESOURCE);
        assert_eq!(
            r(Some("A.Postgres.Database.ChinaCloudAPI.cn")),
            OSSRDBMS_RESOURCE_CHINA
        );
        assert_eq!(
            r(Some("a.postgres.database.usgovcloudapi.net")),
            OSSRDBMS_RESOURCE_US_GOVERNMENT
        );
        assert_eq!(r(Some("localhost")), OSSRDBMS_RESOURCE);
        assert_eq!(r(None), OSSRDBMS_RESOURCE, "an IP address sends no name");
        assert_eq!(
            messages::wrong_audience(OSSRDBMS_RESOURCE),
            messages::WRONG_AUDIENCE
        );
    }
}
