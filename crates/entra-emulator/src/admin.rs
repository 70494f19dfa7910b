//! The admin handle: principals and roles, token issuing, the environment it prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::state::{Principal, PrincipalKind, Shared};
use crate::{
    entra::apps::FederatedCredential, entra::apps::ServicePrincipal, entra::identity::IdentitySpec,
    entra::identity::ManagedIdentity, entra::ids::guid, entra::token, error::Error,
    names::RESOURCE_GROUP, names::SUBSCRIPTION_ID, postgres::front::OSSRDBMS_RESOURCE,
    postgres::pgwire,
};

/// A cheap handle used by the admin API and the [`Emulator`] methods.
#[derive(Clone)]
pub(crate) struct Admin {
    pub(crate) shared: Arc<Shared>,
    pub(crate) socket_dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) database: String,
    pub(crate) env: Arc<Vec<(String, String)>>,
}

impl Admin {
    pub(crate) async fn sql(&self, database: &str, sql: &str) -> Result<(), Error> {
        pgwire::simple_query(&self.socket_dir, self.port, "postgres", database, sql)
            .await
            .map(|_| ())
            .map_err(|(code, message)| Error::Sql { code, message })
    }

    pub(crate) async fn create_role(&self, role: &str, comment: &str) -> Result<(), Error> {
        check_name(role)?;
        let (r, db) = (pgwire::ident(role), pgwire::ident(&self.database));
        let sql = format!(
            "DO $emu$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN CREATE ROLE {r} LOGIN; END IF; END $emu$;
             GRANT ALL ON DATABASE {db} TO {r};
             GRANT ALL ON SCHEMA public TO {r};
             COMMENT ON ROLE {r} IS {c};",
            lit = pgwire::literal(role),
            c = pgwire::literal(comment),
        );
        self.sql(&self.database, &sql).await?;
        // PostgreSQL 14 and later: let every principal see every table, as tests expect.
        let _ = self
            .sql(
                &self.database,
                &format!("GRANT pg_read_all_data, pg_write_all_data TO {r}"),
            )
            .await;
        Ok(())
    }

    pub(crate) fn taken(&self, name: &str) -> bool {
        let reg = self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        reg.principals.contains_key(name) || reg.passwords.contains_key(name)
    }

    pub(crate) async fn add_identity(&self, spec: IdentitySpec) -> Result<ManagedIdentity, Error> {
        self.ensure_free(&spec.name)?;
        let provider = if spec.user_assigned {
            format!(
                "Microsoft.ManagedIdentity/userAssignedIdentities/{}",
                spec.name
            )
        } else {
            format!("Microsoft.Web/sites/{}", spec.name)
        };
        let mi = ManagedIdentity {
            client_id: spec.client_id.unwrap_or_else(guid),
            object_id: spec.object_id.unwrap_or_else(guid),
            resource_id: format!(
                "/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/{provider}"
            ),
            user_assigned: spec.user_assigned,
            name: spec.name,
        };
        self.create_principal(&mi.name, PrincipalKind::Identity(mi.clone()))
            .await?;
        Ok(mi)
    }

    /// An error unless `name` is free for a new principal or role.
    fn ensure_free(&self, name: &str) -> Result<(), Error> {
        if self.taken(name) {
            return Err(Error::Principal(format!("{name:?} is already registered")));
        }
        Ok(())
    }

    /// Creates the role of an Entra principal, labelled with its object id and type, and
    /// records the principal under `name`, as `pgaadauth_create_principal` does.
    async fn create_principal(&self, name: &str, kind: PrincipalKind) -> Result<(), Error> {
        let principal = Principal { kind };
        let label = format!(
            "aadauth,oid={},type={}",
            principal.object_id(),
            principal.role_type().label()
        );
        self.create_role(name, &label).await?;
        self.register(name, principal.kind);
        Ok(())
    }

    /// Records a principal (its role already exists) under `name`.
    fn register(&self, name: &str, kind: PrincipalKind) {
        self.shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .principals
            .insert(name.to_owned(), Principal { kind });
    }

    pub(crate) async fn add_user(
        &self,
        upn: &str,
        object_id: Option<String>,
    ) -> Result<String, Error> {
        self.ensure_free(upn)?;
        let oid = object_id.unwrap_or_else(guid);
        let kind = PrincipalKind::User {
            upn: upn.to_string(),
            object_id: oid.clone(),
        };
        self.create_principal(upn, kind).await?;
        Ok(oid)
    }

    pub(crate) async fn add_service_principal(
        &self,
        name: &str,
    ) -> Result<ServicePrincipal, Error> {
        self.ensure_free(name)?;
        let sp = ServicePrincipal {
            name: name.to_owned(),
            client_id: guid(),
            object_id: guid(),
            // Entra's generated secrets are 40 characters.
            secret: crate::entra::ids::random_hex(20),
        };
        self.create_principal(&sp.name, PrincipalKind::App(sp.clone()))
            .await?;
        Ok(sp)
    }

    /// Keeps a certificate's public part for its app, which must be a registered
    /// service principal.
    pub(crate) fn register_certificate(
        &self,
        cert: crate::entra::app_certs::RegisteredCertificate,
    ) -> Result<(), Error> {
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match reg.by_client_id(&cert.client_id) {
            Some((_, p)) if matches!(p.kind, PrincipalKind::App(_)) => {
                reg.certificates.push(cert);
                Ok(())
            }
            _ => Err(Error::Principal(format!(
                "no service principal has the client id {}",
                cert.client_id
            ))),
        }
    }

    /// Registers the group `name` (and its role) with the principals named in `members`
    /// (users, identities, apps) as its members.
    pub(crate) async fn add_group(&self, name: &str, members: &[&str]) -> Result<String, Error> {
        self.ensure_free(name)?;
        let member_oids = {
            let reg = self
                .shared
                .registry
                .read()
                .unwrap_or_else(|e| e.into_inner());
            members
                .iter()
                .map(|m| match reg.principals.get(*m) {
                    Some(p) if !matches!(p.kind, PrincipalKind::Group { .. }) => {
                        Ok(p.object_id().to_owned())
                    }
                    _ => Err(Error::Principal(format!(
                        "{m:?} is not a registered user, identity or app"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let oid = guid();
        let kind = PrincipalKind::Group {
            object_id: oid.clone(),
            members: member_oids,
        };
        self.create_principal(name, kind).await?;
        Ok(oid)
    }

    /// Trusts tokens from the emulator's OIDC issuer for `subject` as the app or
    /// user-assigned managed identity `client_id`.
    pub(crate) fn add_federated_credential(
        &self,
        client_id: &str,
        subject: &str,
    ) -> Result<FederatedCredential, Error> {
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match reg.by_client_id(client_id) {
            Some((_, p)) if !matches!(&p.kind, PrincipalKind::Identity(mi) if !mi.user_assigned) => {
            }
            _ => {
                return Err(Error::Principal(format!(
                    "no app or user-assigned managed identity has client id {client_id:?}"
                )));
            }
        }
        let fc = FederatedCredential {
            client_id: client_id.to_owned(),
            issuer: self.shared.oidc_issuer.clone(),
            subject: subject.to_owned(),
        };
        reg.federated.push(fc.clone());
        Ok(fc)
    }

    pub(crate) async fn add_password_role(&self, role: &str, password: &str) -> Result<(), Error> {
        if self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .principals
            .contains_key(role)
        {
            return Err(Error::Principal(format!(
                "{role:?} is an Entra principal's role"
            )));
        }
        self.create_role(role, "password").await?;
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        reg.passwords.insert(role.to_string(), password.to_string());
        Ok(())
    }

    pub(crate) fn remove_principal(&self, name: &str) -> bool {
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let removed = reg.principals.remove(name);
        // Its federated credentials and certificates go with it: a later principal with
        // the same client id must not inherit them.
        let client_id = match removed.as_ref().map(|p| &p.kind) {
            Some(PrincipalKind::Identity(mi)) => Some(mi.client_id.clone()),
            Some(PrincipalKind::App(sp)) => Some(sp.client_id.clone()),
            _ => None,
        };
        if let Some(id) = client_id {
            reg.federated.retain(|f| f.client_id != id);
            reg.certificates.retain(|c| c.client_id != id);
        }
        removed.is_some() | reg.passwords.remove(name).is_some()
    }

    pub(crate) fn issue(
        &self,
        principal: &str,
        resource: &str,
        issued_at: u64,
        lifetime: Duration,
    ) -> String {
        let resource = resource.strip_suffix("/.default").unwrap_or(resource);
        let p = self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .principals
            .get(principal)
            .cloned();
        let unknown_oid;
        let subject = match p.as_ref().and_then(Principal::subject) {
            Some(s) => s,
            None => {
                // Not registered: a valid token for a principal the server does not know.
                unknown_oid = guid();
                token::Subject {
                    object_id: &unknown_oid,
                    app_id: token::AZURE_CLI_APP_ID,
                    upn: Some(principal),
                    mi_resource_id: None,
                }
            }
        };
        self.shared.signer.sign(&token::claims(
            &self.shared.tenant_id,
            resource,
            &subject,
            issued_at,
            lifetime,
            &self.shared.issued.next_uti(),
        ))
    }

    pub(crate) fn issue_token(
        &self,
        principal: &str,
        resource: &str,
        lifetime: Duration,
    ) -> String {
        self.issue(principal, resource, token::now_secs(), lifetime)
    }

    pub(crate) fn issue_expired_token(&self, principal: &str) -> String {
        // Issued two hours ago, expired an hour ago.
        self.issue(
            principal,
            OSSRDBMS_RESOURCE,
            token::now_secs().saturating_sub(7200),
            Duration::from_secs(3600),
        )
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(Error::Principal(format!(
            "{name:?} is not a valid PostgreSQL role name (1 to 63 bytes)"
        )));
    }
    Ok(())
}

/// Text of `GET /` on the admin API and of `entra-emulator --help`.
pub const ADMIN_API_HELP: &str = "\
entra-emulator admin API (loopback, no authentication), base URL in $ENTRA_EMULATOR_ADMIN:
  GET    /counters            counters as JSON (tokens issued, logins accepted/refused by reason, sessions)
  GET    /faults              faults currently set, as JSON
  POST   /faults              set faults; JSON body, every field optional:
                              {\"identity_latency_ms\":1000, \"identity_error_status\":500 (0 clears),
                               \"identity_throttle_retry_after_secs\":5 (0 clears), \"identity_outage\":true,
                               \"cli_logged_out\":true, \"refuse_logins\":true, \"login_latency_ms\":200,
                               \"token_lifetime_secs\":30, \"token_cache\":false, \"token_cache_window_ms\":500 (0: default),
                               \"mint_next\":true, \"refuse_issued_tokens\":true, \"identity_rate_limit_per_sec\":5 (0 clears)}
  POST   /faults/clear        clear every fault, restore the starting token lifetime
  POST   /kill-sessions       drop every open session (a failover); answers {\"killed\":N}
  POST   /token-lifetime      {\"seconds\":N}: lifetime of tokens issued from now on
  GET    /principals          registered identities, users and password roles
  POST   /principals          {\"kind\":\"identity\",\"name\":\"worker\",\"user_assigned\":true} |
                              {\"kind\":\"user\",\"name\":\"ann@contoso.example\"} |
                              {\"kind\":\"password_role\",\"name\":\"bench\",\"password\":\"secret\"}
                              (creates the role in the database, like pgaadauth_create_principal)
  DELETE /principals/NAME     unregister a principal: its later token logins are refused
  POST   /tokens              {\"principal\":\"app-identity\", \"resource\":..., \"lifetime_secs\":60, \"expired\":false}
                              mint a token directly (for psql: PGPASSWORD)
  GET    /env                 the environment the emulator prints, as JSON
";
