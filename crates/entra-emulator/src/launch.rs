//! Starting an [`Emulator`]: keys, certificates and the cluster, the principals, then every
//! server on the emulator's own runtime.

use std::sync::Arc;

use crate::admin::{Admin, check_name};
use crate::serve::certs::make_tls;
use crate::state::Shared;
use crate::{
    builder::EmulatorBuilder,
    emulator::Emulator,
    entra::identity::IdentitySpec,
    entra::identity::ManagedIdentity,
    entra::ids::random_hex,
    entra::token,
    error::Error,
    network,
    network::Network,
    network::Node,
    postgres::cluster::Cluster,
    postgres::{cluster, front, pgwire},
    runtime::BgRuntime,
    serve::{authority, http, https},
    standin,
    state::Faults,
};

impl Emulator {
    pub(crate) async fn start_with(b: EmulatorBuilder) -> Result<Emulator, Error> {
        check_name(&b.database)?;
        check_name(&b.default_identity)?;
        check_name(&b.user)?;
        if let Some(server) = &b.azure_network {
            network::check_server_name(server)?;
            // Refuses outside a private network namespace.
            network::netns::enter()?;
        }
        let tmp = cluster::temp_dir("entra-emulator-")?;
        let root = tmp.path().to_path_buf();

        let t0 = std::time::Instant::now();
        // Certificates.
        let tls = make_tls(&root)?;

        // Keys and cluster in parallel: RSA generation takes a moment. Entra's key signs
        // access tokens; the OIDC issuer's key signs federated tokens (workload identity).
        let signer = tokio::task::spawn_blocking(|| {
            Ok::<_, Error>((token::Signer::new()?, token::Signer::new()?))
        });
        let cluster = Cluster::start(
            &root,
            b.cluster_tls
                .then_some((tls.server_cert.as_path(), tls.server_key.as_path())),
            b.max_connections,
        )
        .await?;
        let (signer, federation) = signer
            .await
            .map_err(|e| Error::Setup(format!("key task failed: {e}")))??;

        cluster
            .execute(
                "postgres",
                &format!("CREATE DATABASE {}", pgwire::ident(&b.database)),
            )
            .await?;

        tracing::debug!(elapsed = ?t0.elapsed(), "database created");
        let identity_header = random_hex(32);
        let shared = Arc::new(Shared::new(
            signer,
            federation,
            identity_header.clone(),
            b.token_lifetime,
            b.default_identity.clone(),
            b.user.clone(),
            b.token_cache,
        ));
        shared.issued.set_window(b.token_cache_window);

        // The servers run on the emulator's own runtime (two threads), like an external server:
        // they do not compete with the caller's runtime (a current-thread test runtime, a load
        // generator) and are not stalled by blocking code there.
        let runtime = BgRuntime::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("entra-emulator")
                .enable_all()
                .build()
                .map_err(|e| Error::io("cannot start the emulator's runtime", e))?,
        );
        let bind = |what: &'static str| {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| Error::io(format!("cannot listen for the {what}"), e))?;
            l.set_nonblocking(true)
                .map_err(|e| Error::io(format!("cannot listen for the {what}"), e))?;
            Ok::<_, Error>(l)
        };
        let identity_listener = bind("identity endpoints")?;
        let authority_listener = bind("Entra authority")?;
        let authority_port = port_of_early(&authority_listener);
        let admin_listener = bind("admin API")?;
        let front_listener = bind("PostgreSQL front")?;
        let replica_listener = bind("PostgreSQL read-replica front")?;
        let replica_port = port_of_early(&replica_listener);
        let front_port = port_of_early(&front_listener);
        // The Azure network's standbys: the primary's port on their own addresses.
        let mut node_listeners = Vec::new();
        let network = match &b.azure_network {
            Some(server) => {
                for node in [Node::Standby, Node::ReadOnlyStandby] {
                    let l = std::net::TcpListener::bind((node.ip(), front_port))
                        .and_then(|l| l.set_nonblocking(true).map(|()| l))
                        .map_err(|e| {
                            Error::io(
                                format!("cannot listen for the {node:?} on {}", node.ip()),
                                e,
                            )
                        })?;
                    node_listeners.push((node, l));
                }
                Some(Network::new(server, front_port, runtime.handle().clone())?)
            }
            None => None,
        };
        let port_of = port_of_early;
        let (identity_port, admin_port) = (port_of(&identity_listener), port_of(&admin_listener));

        let az_dir = root.join("bin");
        let cli_program = standin::resolve_program(b.cli_program.clone());
        standin::write_shims(&az_dir, cli_program.as_deref(), identity_port)?;

        let mut emu = Emulator {
            admin: Admin {
                shared: shared.clone(),
                socket_dir: cluster.socket_dir().to_path_buf(),
                port: cluster.port(),
                database: b.database.clone(),
                env: Arc::new(Vec::new()),
            },
            faults: Faults {
                shared: shared.clone(),
            },
            tasks: Vec::new(),
            runtime: None,
            cluster: Some(cluster),
            tmp: Some(tmp),
            root,
            ca_path: tls.ca_cert,
            az_dir,
            front_port,
            replica_port,
            network: network.clone(),
            identity_port,
            authority_port,
            admin_port,
            database: b.database.clone(),
            default_identity: ManagedIdentity {
                name: String::new(),
                client_id: String::new(),
                object_id: String::new(),
                resource_id: String::new(),
                user_assigned: false,
            },
            default_user: b.user.clone(),
        };
        // From here on, `emu`'s Drop cleans up if anything fails.
        emu.default_identity = emu
            .admin
            .add_identity(IdentitySpec::system_assigned(&b.default_identity))
            .await?;
        emu.admin.add_user(&b.user, None).await?;
        for spec in b.identities {
            emu.admin.add_identity(spec).await?;
        }
        for (role, pw) in &b.password_roles {
            emu.admin.add_password_role(role, pw).await?;
        }
        emu.admin.env = Arc::new(emu.env());
        tracing::debug!(elapsed = ?t0.elapsed(), "principals created");

        let tokio_listener = |l: std::net::TcpListener| {
            tokio::net::TcpListener::from_std(l)
                .expect("a non-blocking listener inside the runtime")
        };
        let id_task = runtime.handle().spawn({
            let shared = shared.clone();
            async move {
                let listener = http::OutageListener {
                    inner: tokio_listener(identity_listener),
                    shared: shared.clone(),
                };
                let router = http::identity_router(shared);
                let _ = axum::serve(listener, router).await;
            }
        });
        let admin_task = runtime.handle().spawn({
            let router = http::admin_router(emu.admin.clone());
            async move {
                let _ = axum::serve(tokio_listener(admin_listener), router).await;
            }
        });
        let backend_socket = emu
            .admin
            .socket_dir
            .join(format!(".s.PGSQL.{}", emu.admin.port));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
        // The authority is `https://localhost:P`: served on ::1 too when IPv6 is up (as the
        // front is), so that nothing else answers there.
        let authority_v6 =
            std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, authority_port))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();
        let https_acceptor = tokio_rustls::TlsAcceptor::from(tls.https_config.clone());
        let mut authority_tasks = Vec::new();
        for l in std::iter::once(authority_listener).chain(authority_v6) {
            let (shared, acceptor) = (shared.clone(), https_acceptor.clone());
            authority_tasks.push(runtime.handle().spawn(async move {
                let router = authority::router(shared.clone());
                https::serve(tokio_listener(l), acceptor, router, shared).await;
            }));
        }
        let front = Arc::new(front::Front {
            shared: shared.clone(),
            acceptor: acceptor.clone(),
            backend_socket: backend_socket.clone(),
            read_only: false,
            node: network.clone().map(|n| (n, Node::Primary)),
        });
        let replica = Arc::new(front::Front {
            shared: shared.clone(),
            acceptor: acceptor.clone(),
            backend_socket: backend_socket.clone(),
            read_only: true,
            node: None,
        });
        // `localhost` may resolve to ::1 first: serve the same port there when IPv6 is up, so
        // that nothing else can answer on it and clients need no fallback.
        let front_v6 = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, front_port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .ok();
        let mut tasks = vec![id_task, admin_task];
        tasks.extend(authority_tasks);
        if let Some(l) = front_v6 {
            let front = front.clone();
            tasks.push(
                runtime
                    .handle()
                    .spawn(async move { front::serve(tokio_listener(l), front).await }),
            );
        }
        tasks.push(
            runtime
                .handle()
                .spawn(async move { front::serve(tokio_listener(front_listener), front).await }),
        );
        tasks.push(
            runtime.handle().spawn(async move {
                front::serve(tokio_listener(replica_listener), replica).await
            }),
        );
        for (node, l) in node_listeners {
            let front = Arc::new(front::Front {
                shared: shared.clone(),
                acceptor: acceptor.clone(),
                backend_socket: backend_socket.clone(),
                read_only: node.read_only(),
                node: network.clone().map(|n| (n, node)),
            });
            tasks.push(
                runtime
                    .handle()
                    .spawn(async move { front::serve(tokio_listener(l), front).await }),
            );
        }
        emu.runtime = Some(runtime);
        emu.tasks = tasks;
        tracing::info!(front_port, identity_port, admin_port, server = ?emu.server_host(), root = %emu.root.display(), "entra-emulator ready");
        Ok(emu)
    }
}

/// The port a listener is bound to (0 if it cannot say).
fn port_of_early(l: &std::net::TcpListener) -> u16 {
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}
