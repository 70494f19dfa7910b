//! Builds the pools under test against the chosen target, and the emulator's probes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use entra_emulator::Emulator;

use crate::cli::{Args, PoolKind, QueryKind, Target};
use crate::fault::{FaultKind, FaultSink, Node};
use crate::pools::mi::MiEndpoint;
use crate::pools::ours::OursPool;
use crate::pools::plain::PlainPool;
use crate::pools::rebuild::RebuildPool;
use crate::pools::{PoolUnderTest, ServerSettings, tls_from_ca, tls_with_roots};
use crate::run::{ServerCounters, ServerProbe};
use crate::workload::SCHEMA;

/// Role and password of the baseline pools on the emulator.
const BASELINE_ROLE: &str = "churn_baseline";

/// The emulated server's name with network faults: `churn.postgres.database.azure.com`.
const NETWORK_SERVER: &str = "churn";

/// The pools under test and the server's probes.
pub struct Setup {
    /// Pools in round order.
    pub pools: Vec<Arc<dyn PoolUnderTest>>,
    /// Server counters.
    pub probe: Option<Arc<dyn ServerProbe>>,
    /// Fault injection.
    pub sink: Option<Arc<dyn FaultSink>>,
    /// Details for the JSON output.
    pub details: serde_json::Value,
    emulator: Option<Arc<EmuHandle>>,
}

impl Setup {
    /// Stops what the setup started (the emulator, if any).
    pub async fn shutdown(self) {
        let Setup {
            pools,
            probe,
            sink,
            emulator,
            ..
        } = self;
        drop((pools, probe, sink));
        if let Some(e) = emulator
            && let Ok(h) = Arc::try_unwrap(e)
        {
            h.emu.shutdown().await;
        }
    }
}

/// The in-process emulator as a fault sink and counter probe.
pub struct EmuHandle {
    emu: Emulator,
}

impl FaultSink for EmuHandle {
    fn apply(&self, kind: &FaultKind, on: bool) -> Option<String> {
        let f = self.emu.faults();
        match kind {
            FaultKind::IdentityOutage => f.set_identity_outage(on),
            FaultKind::IdentityLatency(d) => {
                f.set_identity_latency(if on { *d } else { Duration::ZERO })
            }
            FaultKind::IdentityError(s) => f.set_identity_error(on.then_some(*s)),
            FaultKind::IdentityThrottle(d) => f.set_identity_throttle(on.then_some(*d)),
            FaultKind::RefuseLogins => f.set_refuse_logins(on),
            FaultKind::LoginLatency(d) => f.set_login_latency(if on { *d } else { Duration::ZERO }),
            FaultKind::Failover => {
                if on {
                    let n = f.kill_all_sessions();
                    tracing::info!(sessions = n, "failover: sessions killed");
                }
            }
            FaultKind::TokenLifetime(d) => {
                if on {
                    f.set_token_lifetime(*d);
                }
            }
            FaultKind::Vanish(_)
            | FaultKind::DnsFlip(_)
            | FaultKind::Partition(_)
            | FaultKind::IdleDrop(_) => {
                let Some(net) = self.emu.network() else {
                    return Some("not applied: the emulator has no Azure network".into());
                };
                return Some(apply_network(net, kind, on).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "network fault not applied");
                    format!("NOT APPLIED: {e}")
                }));
            }
        }
        None
    }
}

fn emu_node(n: Node) -> entra_emulator::Node {
    match n {
        Node::Primary => entra_emulator::Node::Primary,
        Node::Standby => entra_emulator::Node::Standby,
        Node::ReadOnly => entra_emulator::Node::ReadOnlyStandby,
    }
}

/// Applies a network fault; the note says what it did. `vanish` and `partition` without a
/// node strike the node the name points at now.
fn apply_network(
    net: &entra_emulator::Network,
    kind: &FaultKind,
    on: bool,
) -> Result<String, entra_emulator::Error> {
    let node_or_current = |n: &Option<Node>| n.map(emu_node).unwrap_or_else(|| net.current());
    match kind {
        FaultKind::Vanish(n) => {
            let node = node_or_current(n);
            let cut = net.vanish(node)?;
            Ok(format!("{cut} sessions to {node:?} cut"))
        }
        FaultKind::DnsFlip(to) => {
            let from = net.current();
            net.dns_flip(emu_node(*to))?;
            Ok(format!("name moved from {from:?} to {:?}", emu_node(*to)))
        }
        FaultKind::Partition(n) => {
            let node = node_or_current(n);
            if on {
                net.partition_start(node)?;
                Ok(format!("{node:?} partitioned"))
            } else {
                // The node partitioned at the start: without a node given, that was the
                // one the name pointed at then, which a later flip may have moved.
                let healed: Vec<_> = match n {
                    Some(_) => vec![node],
                    None => entra_emulator::Node::ALL.to_vec(),
                };
                for node in &healed {
                    net.heal(*node)?;
                }
                Ok("healed".into())
            }
        }
        FaultKind::IdleDrop(d) => {
            // Installed before the pools connected (see `setup_emulator`): the timeline
            // only marks it.
            Ok(format!(
                "idle timeout {} s on every node, since before the pools connected",
                d.as_secs_f64()
            ))
        }
        _ => Ok(String::new()),
    }
}

/// A middlebox that forgets connections idle longer than `idle`, in front of every node.
fn install_idle_drop(
    net: &entra_emulator::Network,
    idle: Duration,
) -> Result<(), entra_emulator::Error> {
    for node in entra_emulator::Node::ALL {
        net.idle_drop(node, idle)?;
    }
    Ok(())
}

impl ServerProbe for EmuHandle {
    fn snapshot(&self) -> ServerCounters {
        let c = self.emu.counters();
        ServerCounters {
            identity_requests: c.identity_requests,
            expired_token_logins: c.expired_token_logins,
            logins_accepted: c.logins_accepted,
            raw: serde_json::to_value(&c).unwrap_or_default(),
        }
    }
}

/// Builds the pools of `kinds` on `args.target`.
pub async fn setup(args: &Args, kinds: &[PoolKind]) -> Result<Setup, String> {
    match args.target {
        Target::Emulator => setup_emulator(args, kinds).await,
        Target::Env => setup_env(args, kinds).await,
    }
}

fn baseline_password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

async fn setup_emulator(args: &Args, kinds: &[PoolKind]) -> Result<Setup, String> {
    let password = baseline_password();
    let max_conn = (kinds.len() * args.max_size * 2 + 40).max(200) as u32;
    // The identity endpoint serves its cached token as Azure's does; its window is scaled
    // to seconds-long tokens as the pools' schedule is (they ask at half-life where, on
    // Azure, they ask 270 s before expiry inside a 5-minute window): 60 % of the life,
    // as in the tests. A twelfth (the emulator's default) would renew only inside the
    // token's last 10 %, where the library no longer hands a token out.
    let window = args
        .token_cache_window
        .unwrap_or(args.token_lifetime * 6 / 10);
    let network = args.network_faults();
    if network && args.replica_pool {
        return Err("--replica-pool is not supported with network faults".into());
    }
    let mut builder = Emulator::builder()
        .token_lifetime(args.token_lifetime)
        .token_cache_window(window)
        .password_role(BASELINE_ROLE, &password)
        .max_connections(max_conn);
    if network {
        builder = builder.azure_network(NETWORK_SERVER);
    }
    let emu = builder
        .start()
        .await
        .map_err(|e| format!("starting the emulator: {e}"))?;
    // With network faults every pool reaches the server by its Azure name (resolved in
    // the namespace's private hosts file, verified against the emulator's CA), so that
    // a DNS flip moves new logins; without, as before.
    let host = emu
        .server_host()
        .unwrap_or_else(|| emu.pg_host().to_string());
    // Before any pool connects: conntrack applies the timeout from a connection's next
    // packet, so connections opened later are all forgotten on time.
    if let (Some(net), Some(idle)) = (emu.network(), args.idle_drop()) {
        let net = net.clone();
        tokio::task::spawn_blocking(move || install_idle_drop(&net, idle))
            .await
            .map_err(|e| format!("idle-drop: {e}"))?
            .map_err(|e| format!("idle-drop: {e}"))?;
    }
    if matches!(args.query, QueryKind::PointRead | QueryKind::WriteTxn) {
        create_schema_on_cluster(&emu).await?;
    }
    let tls = tls_from_ca(emu.ca_cert_path())?;
    let settings = ServerSettings {
        host: host.clone(),
        port: emu.pg_port(),
        dbname: emu.database().to_string(),
        max_size: args.max_size,
        wait_timeout: args.wait_timeout,
        tls,
    };
    let mi_user = emu.default_identity().name.clone();
    // Our pool: the real `ManagedIdentityCredential` through the identity relay when this
    // process was re-run for it, else an explicit App Service MI token source.
    let mut credential: Option<Arc<dyn azure_core::credentials::TokenCredential>> = None;
    if let Some(port) = crate::relay::child_port() {
        let upstream = emu
            .identity_endpoint()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("emulator identity endpoint: {e}"))?;
        crate::relay::serve(port, upstream, emu.identity_header().to_string()).await?;
        let c = azure_identity::ManagedIdentityCredential::new(None)
            .map_err(|e| format!("ManagedIdentityCredential: {e}"))?;
        credential = Some(c);
    }
    let credential_name = if credential.is_some() {
        "azure_identity::ManagedIdentityCredential (App Service, via relay)"
    } else {
        "FnSource over a bare App Service MI client"
    };
    let mut pools: Vec<Arc<dyn PoolUnderTest>> = Vec::new();
    for k in kinds {
        let p: Arc<dyn PoolUnderTest> = match k {
            PoolKind::Ours => {
                // The emulator's endpoint is only known now, when the process environment
                // can no longer be changed safely, so the credential is given explicitly:
                // the library's `FnSource` over a bare App Service MI client (its own MI
                // client, with its own counter, so identity calls are ours alone).
                let source: Arc<dyn deadpool_entra::TokenSource> = match &credential {
                    Some(c) => Arc::new(deadpool_entra::CredentialSource::new(c.clone())),
                    None => Arc::new(mi_source(new_mi(&emu)?)),
                };
                // With `--replica-pool`, a second pool on the emulator's read-replica
                // front shares the first one's token provider.
                let provider = args.replica_pool.then(|| {
                    deadpool_entra::TokenProvider::new(
                        source.clone(),
                        deadpool_entra::DEFAULT_SCOPE,
                        refresh_timings(args),
                    )
                });
                let build = |port: u16, source: Option<Arc<dyn deadpool_entra::TokenSource>>| {
                    let builder = deadpool_entra::Pool::builder();
                    let builder = match (&provider, source) {
                        (Some(p), _) => builder.token_provider(p),
                        (None, Some(s)) => builder.token_source(s),
                        (None, None) => builder,
                    };
                    let builder = builder
                        .host(host.clone())
                        .port(port)
                        .dbname(emu.database())
                        .user(mi_user.clone())
                        .ssl_root_cert(emu.ca_cert_path());
                    with_ours_settings(builder, args).build()
                };
                let (pool, others) = match &provider {
                    Some(_) => {
                        let writer = build(emu.pg_port(), None).await;
                        let reader = build(emu.replica_pg_port(), None).await;
                        (writer, vec![reader])
                    }
                    None => (build(emu.pg_port(), Some(source)).await, Vec::new()),
                };
                let pool = pool.map_err(|e| format!("building deadpool-entra's pool: {e}"))?;
                let others = others
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("building deadpool-entra's replica pool: {e}"))?;
                Arc::new(OursPool::several(pool, others))
            }
            PoolKind::Baseline => {
                Arc::new(PlainPool::baseline(&settings, BASELINE_ROLE, &password)?)
            }
            PoolKind::PerConnect => {
                Arc::new(PlainPool::per_connect(&settings, &mi_user, new_mi(&emu)?)?)
            }
            PoolKind::Rebuild => {
                Arc::new(RebuildPool::start(&settings, &mi_user, new_mi(&emu)?).await?)
            }
        };
        pools.push(p);
    }
    let details = serde_json::json!({
        "emulator": true,
        "pg_host": host,
        "azure_network": network,
        "pg_port": emu.pg_port(),
        "database": emu.database(),
        "managed_identity": mi_user,
        "baseline_role": BASELINE_ROLE,
        "ours_credential": credential_name,
        "token_lifetime_secs": args.token_lifetime.as_secs_f64(),
    });
    let handle = Arc::new(EmuHandle { emu });
    Ok(Setup {
        pools,
        probe: Some(handle.clone()),
        sink: Some(handle.clone()),
        details,
        emulator: Some(handle),
    })
}

/// A token source over a bare App Service MI client.
fn mi_source(mi: Arc<MiEndpoint>) -> deadpool_entra::FnSource {
    deadpool_entra::FnSource::new("ManagedIdentity (App Service)", move |_scope: String| {
        let mi = mi.clone();
        async move {
            let t = mi
                .fetch()
                .await
                .map_err(deadpool_entra::TokenSourceError::new)?;
            Ok(deadpool_entra::Token::new(t.secret.clone(), t.expires_at))
        }
    })
}

/// A bare MI client of the emulator, one per pool so identity calls are counted per pool.
fn new_mi(emu: &Emulator) -> Result<Arc<MiEndpoint>, String> {
    Ok(Arc::new(MiEndpoint::new(
        &emu.identity_endpoint(),
        emu.identity_header(),
    )?))
}

/// Creates the tables of `point-read` / `write-txn` as the cluster's superuser, over its
/// unix socket, behind the front.
async fn create_schema_on_cluster(emu: &Emulator) -> Result<(), String> {
    let c = emu.cluster();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(c.socket_dir())
        .port(c.port())
        .user(c.superuser())
        .dbname(emu.database());
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to the cluster to create the schema: {e}"))?;
    let h = tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(|e| format!("creating the schema: {e}"))?;
    drop(client);
    let _ = h.await;
    Ok(())
}

fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

async fn setup_env(args: &Args, kinds: &[PoolKind]) -> Result<Setup, String> {
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
            PoolKind::PerConnect | PoolKind::Rebuild => {
                let (e, h) = mi.clone().ok_or(
                    "per-connect and rebuild on the env target need IDENTITY_ENDPOINT and IDENTITY_HEADER",
                )?;
                let mi = Arc::new(MiEndpoint::new(&e, &h)?);
                let u = user.clone().ok_or("set PGUSER or AZURE_POSTGRESQL_USER")?;
                if *k == PoolKind::PerConnect {
                    Arc::new(PlainPool::per_connect(&settings, &u, mi)?)
                } else {
                    Arc::new(RebuildPool::start(&settings, &u, mi).await?)
                }
            }
        };
        if !schema_done && matches!(args.query, QueryKind::PointRead | QueryKind::WriteTxn) {
            let client = p
                .get()
                .await
                .map_err(|e| format!("schema: {}", e.message))?;
            client
                .batch_execute(SCHEMA)
                .await
                .map_err(|e| format!("creating the schema: {e}"))?;
            schema_done = true;
        }
        pools.push(p);
    }
    let _ = SystemTime::now();
    Ok(Setup {
        pools,
        probe: None,
        sink: None,
        details: serde_json::json!({ "emulator": false, "host": settings.host, "port": settings.port }),
        emulator: None,
    })
}

/// The settings `churn` gives our pool, whatever the target.
fn with_ours_settings(
    builder: deadpool_entra::PoolBuilder,
    args: &Args,
) -> deadpool_entra::PoolBuilder {
    let builder = builder
        .max_size(args.max_size)
        .min_connections(args.min_connections)
        .wait_timeout(Some(args.wait_timeout))
        .recycle_policy(deadpool_entra::RecyclePolicy {
            retire_without_replacement: args.retire_without_replacement,
            ..recycle_timings(args)
        })
        .lazy(args.cold);
    match azure_scale(args) {
        Some(_) => builder.refresh_policy(refresh_timings(args)),
        None => builder,
    }
}

/// The fraction of an hour that `--token-lifetime` is, with `--azure-proportions`.
fn azure_scale(args: &Args) -> Option<f64> {
    let hour = Duration::from_secs(3600);
    args.azure_proportions
        .then(|| args.token_lifetime.as_secs_f64() / hour.as_secs_f64())
}

/// The default recycle timings, scaled by [`azure_scale`].
fn recycle_timings(args: &Args) -> deadpool_entra::RecyclePolicy {
    let d = deadpool_entra::RecyclePolicy::default();
    match azure_scale(args) {
        Some(k) => deadpool_entra::RecyclePolicy {
            token_margin: d.token_margin.mul_f64(k),
            token_spread: d.token_spread.mul_f64(k),
            sweep_interval: d.sweep_interval.mul_f64(k),
            ..d
        },
        None => d,
    }
}

/// The default refresh timings, scaled by [`azure_scale`].
fn refresh_timings(args: &Args) -> deadpool_entra::RefreshPolicy {
    let d = deadpool_entra::RefreshPolicy::default();
    match azure_scale(args) {
        Some(k) => deadpool_entra::RefreshPolicy {
            refresh_before_expiry: d.refresh_before_expiry.mul_f64(k),
            ..d
        },
        None => d,
    }
}
