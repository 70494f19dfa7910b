//! A server the environment describes as the target.

use std::sync::Arc;

use super::{Setup, with_ours_settings};
use crate::cli::Args;
use crate::pools::PoolKind;
use crate::pools::mi::MiEndpoint;
use crate::pools::ours::OursPool;
use crate::pools::plain::PlainPool;
use crate::pools::rebuild::RebuildPool;
use crate::pools::{PoolUnderTest, ServerSettings, tls_from_ca, tls_with_roots};
use crate::workload::QueryKind;
use crate::workload::SCHEMA;

fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

pub(super) async fn setup(args: &Args, kinds: &[PoolKind]) -> Result<Setup, String> {
    let host = env_any(&["AZURE_POSTGRESQL_HOST", "PGHOST"])
        .ok_or("the env target needs PGHOST or AZURE_POSTGRESQL_HOST")?;
    let port: u16 = env_any(&["AZURE_POSTGRESQL_PORT", "PGPORT"])
        .map(|p| p.parse().map_err(|e| format!("bad port {p:?}: {e}")))
        .transpose()?
        .unwrap_or(5432);
    let dbname = env_any(&["AZURE_POSTGRESQL_NAME", "PGDATABASE"]).unwrap_or("postgres".into());
    let user = env_any(&["AZURE_POSTGRESQL_USER", "PGUSER"]);
    let tls = match env_any(&["PGSSLROOTCERT"]) {
        Some(ca) => tls_from_ca(std::path::Path::new(&ca))?,
        None => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            tls_with_roots(roots)?
        }
    };
    let settings = ServerSettings {
        host,
        port,
        dbname,
        max_size: args.max_size,
        wait_timeout: args.wait_timeout,
        tls,
    };
    let mi = match (
        env_any(&["IDENTITY_ENDPOINT"]),
        env_any(&["IDENTITY_HEADER"]),
    ) {
        (Some(e), Some(h)) => Some((e, h)),
        _ => None,
    };
    let mut pools: Vec<Arc<dyn PoolUnderTest>> = Vec::new();
    let mut schema_done = false;
    for k in kinds {
        let p: Arc<dyn PoolUnderTest> = match k {
            PoolKind::Ours => {
                let cfg = deadpool_entra::Config::from_env()
                    .map_err(|e| format!("configuration from the environment: {e}"))?;
                let pool = with_ours_settings(cfg.builder(), args)
                    .build()
                    .await
                    .map_err(|e| format!("building deadpool-entra's pool: {e}"))?;
                Arc::new(OursPool::new(pool))
            }
            PoolKind::Baseline => {
                let (Some(u), Some(p)) = (&args.baseline_user, &args.baseline_password) else {
                    return Err(
                        "the baseline on the env target needs --baseline-user and --baseline-password \
                         (a static-password role on the same server)"
                            .into(),
                    );
                };
                Arc::new(PlainPool::baseline(&settings, u, p)?)
            }
            PoolKind::SqlxOurs | PoolKind::SqlxBaseline => {
                return Err(
                    "the sqlx pools run against the emulator target only (a real server's baseline role and CA are not wired for them yet)"
                        .into(),
                );
            }
            PoolKind::PerConnect | PoolKind::Rebuild => {
                let (e, h) = mi.clone().ok_or(
                    "per-connect and rebuild on the env target need IDENTITY_ENDPOINT and IDENTITY_HEADER",
                )?;
                let mi = Arc::new(MiEndpoint::new(&e, &h)?);
                let u = user.clone().ok_or("set PGUSER or AZURE_POSTGRESQL_USER")?;
                if *k == PoolKind::PerConnect {
                    Arc::new(PlainPool::per_connect(
                        &settings,
                        &u,
                        mi,
                        args.per_connect_lifetime,
                    )?)
                } else {
                    Arc::new(RebuildPool::start(&settings, &u, mi).await?)
                }
            }
        };
        if !schema_done && matches!(args.query, QueryKind::PointRead | QueryKind::WriteTxn) {
            match p
                .get()
                .await
                .map_err(|e| format!("schema: {}", e.message))?
            {
                crate::pools::Checkout::Deadpool(client) => client
                    .batch_execute(SCHEMA)
                    .await
                    .map_err(|e| format!("creating the schema: {e}"))?,
                crate::pools::Checkout::Sqlx(mut conn) => {
                    ::sqlx::raw_sql(SCHEMA)
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| format!("creating the schema: {e}"))?;
                }
            }
            schema_done = true;
        }
        pools.push(p);
    }
    Ok(Setup {
        pools,
        probe: None,
        sink: None,
        details: serde_json::json!({ "emulator": false, "host": settings.host, "port": settings.port }),
        emulator: None,
    })
}
