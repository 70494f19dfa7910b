//! The in-process emulator as the target: it starts once, builds pools on demand (the
//! matrix builds new ones per cell on the same server), injects faults and reads the
//! server's counters.

use std::sync::Arc;
use std::time::Duration;

use entra_emulator::Emulator;

use super::{Setup, azure_scale, refresh_timings, retire_timings, with_ours_settings};
use crate::cli::Args;
use crate::fault::{FaultKind, FaultSink, Node};
use crate::pools::PoolKind;
use crate::pools::mi::MiEndpoint;
use crate::pools::ours::OursPool;
use crate::pools::plain::PlainPool;
use crate::pools::rebuild::RebuildPool;
use crate::pools::sqlx::SqlxPool;
use crate::pools::{PoolUnderTest, ServerSettings, tls_from_ca};
use crate::run::{ServerCounters, ServerProbe};
use crate::workload::QueryKind;
use crate::workload::SCHEMA;

/// Role and password of the baseline pools on the emulator.
const BASELINE_ROLE: &str = "churn_baseline";

/// The emulated server's name with network faults: `churn.postgres.database.azure.com`.
const NETWORK_SERVER: &str = "churn";

/// The in-process emulator as a fault sink and counter probe.
pub struct EmuHandle {
    emu: Emulator,
}

impl EmuHandle {
    /// Stops the emulator.
    pub async fn shutdown(self) {
        self.emu.shutdown().await;
    }
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

fn baseline_password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// The emulator as the target of one run: started, with the pools of `kinds` on it.
pub(super) async fn setup(args: &Args, kinds: &[PoolKind]) -> Result<Setup, String> {
    let server = EmulatorServer::start(args, kinds.len(), args.max_size).await?;
    let pools = server.pools(args, kinds).await?;
    Ok(server.into_setup(pools, args))
}

/// The running emulator and what every pool on it needs.
pub struct EmulatorServer {
    handle: Arc<EmuHandle>,
    /// The name pools connect to (also the TLS server name).
    host: String,
    /// The baseline role's password.
    password: String,
    /// Our pool's credential: the real `ManagedIdentityCredential` through the identity
    /// relay when this process was re-run for it.
    credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
    network: bool,
}

impl EmulatorServer {
    /// Starts the emulator for up to `pools` pools of up to `max_size` connections each,
    /// with the token lifetime, query and faults of `args`.
    pub async fn start(args: &Args, pools: usize, max_size: usize) -> Result<Self, String> {
        let password = baseline_password();
        let max_conn = (pools * max_size * 2 + 40).max(200) as u32;
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
        // Our pool: the real `ManagedIdentityCredential` through the identity relay when
        // this process was re-run for it, else an explicit App Service MI token source.
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
        Ok(EmulatorServer {
            handle: Arc::new(EmuHandle { emu }),
            host,
            password,
            credential,
            network,
        })
    }

    /// New pools of `kinds`, sized and timed by `args`, on this server.
    pub async fn pools(
        &self,
        args: &Args,
        kinds: &[PoolKind],
    ) -> Result<Vec<Arc<dyn PoolUnderTest>>, String> {
        let emu = &self.handle.emu;
        let host = &self.host;
        let password = &self.password;
        let credential = &self.credential;
        let settings = ServerSettings {
            host: host.clone(),
            port: emu.pg_port(),
            dbname: emu.database().to_string(),
            max_size: args.max_size,
            wait_timeout: args.wait_timeout,
            tls: tls_from_ca(emu.ca_cert_path())?,
        };
        let mi_user = emu.default_identity().name.clone();
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
                        None => Arc::new(mi_source(new_mi(emu)?)),
                    };
                    // With `--replica-pool`, a second pool on the emulator's read-replica
                    // front shares the first one's token provider.
                    let provider = args.replica_pool.then(|| {
                        deadpool_entra::TokenProvider::new(
                            source.clone(),
                            deadpool_entra::cloud::DEFAULT_SCOPE,
                            refresh_timings(args),
                        )
                    });
                    let build =
                        |port: u16, source: Option<Arc<dyn deadpool_entra::TokenSource>>| {
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
                    Arc::new(PlainPool::baseline(&settings, BASELINE_ROLE, password)?)
                }
                PoolKind::PerConnect => Arc::new(PlainPool::per_connect(
                    &settings,
                    &mi_user,
                    new_mi(emu)?,
                    args.per_connect_lifetime,
                )?),
                PoolKind::Rebuild => {
                    Arc::new(RebuildPool::start(&settings, &mi_user, new_mi(emu)?).await?)
                }
                PoolKind::SqlxOurs => {
                    let mut cfg = deadpool_entra::Config::new();
                    for (k, v) in [
                        ("host", host.clone()),
                        ("port", emu.pg_port().to_string()),
                        ("dbname", emu.database().to_owned()),
                        ("user", mi_user.clone()),
                        ("sslrootcert", emu.ca_cert_path().display().to_string()),
                    ] {
                        cfg.set(k, &v).map_err(|e| e.to_string())?;
                    }
                    cfg.max_size = Some(args.max_size);
                    cfg.min_connections = args.min_connections;
                    cfg.wait_timeout = Some(args.wait_timeout);
                    cfg.create_timeout = None;
                    cfg.lazy = args.cold;
                    cfg.retire = deadpool_entra::RetirePolicy {
                        retire_without_replacement: args.retire_without_replacement,
                        ..retire_timings(args)
                    };
                    if azure_scale(args).is_some() {
                        cfg.refresh = refresh_timings(args);
                    }
                    let source: Arc<dyn deadpool_entra::TokenSource> = match &credential {
                        Some(c) => Arc::new(deadpool_entra::CredentialSource::new(c.clone())),
                        None => Arc::new(mi_source(new_mi(emu)?)),
                    };
                    let pool = sqlx_entra::PoolBuilder::new(cfg)
                        .token_source(source)
                        .build()
                        .await
                        .map_err(|e| format!("building sqlx-entra's pool: {e}"))?;
                    Arc::new(SqlxPool::ours(pool))
                }
                PoolKind::SqlxBaseline => Arc::new(
                    SqlxPool::baseline(
                        host,
                        emu.pg_port(),
                        emu.database(),
                        emu.ca_cert_path(),
                        (BASELINE_ROLE, password),
                        args.max_size,
                        args.wait_timeout,
                    )
                    .await?,
                ),
            };
            pools.push(p);
        }
        Ok(pools)
    }

    /// What the JSON output says about the server.
    pub fn details(&self, args: &Args) -> serde_json::Value {
        let emu = &self.handle.emu;
        serde_json::json!({
            "emulator": true,
            "pg_host": self.host,
            "azure_network": self.network,
            "pg_port": emu.pg_port(),
            "database": emu.database(),
            "managed_identity": emu.default_identity().name,
            "baseline_role": BASELINE_ROLE,
            "ours_credential": if self.credential.is_some() {
                "azure_identity::ManagedIdentityCredential (App Service, via relay)"
            } else {
                "FnSource over a bare App Service MI client"
            },
            "token_lifetime_secs": args.token_lifetime.as_secs_f64(),
        })
    }

    /// A run's setup: `pools` on this server, its probes, and the server itself (stopped
    /// by [`Setup::shutdown`]).
    pub fn into_setup(self, pools: Vec<Arc<dyn PoolUnderTest>>, args: &Args) -> Setup {
        let details = self.details(args);
        Setup {
            pools,
            probe: Some(self.handle.clone()),
            sink: Some(self.handle.clone()),
            details,
            emulator: Some(self.handle),
        }
    }
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
