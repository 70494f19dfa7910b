//! Against the emulator (a real PostgreSQL behind an Azure-like token-checking TLS
//! front): drop-in use, retirement under short tokens, forced refresh, typed errors.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_entra::{Error, ErrorKind, FnSource, GenericClient, Pool, RetirePolicy, Token};
use entra_emulator::Emulator;

mod common;

use common::{HOUR, builder, emulator, source};

// Code written for deadpool-postgres, unchanged.
async fn count_rows(client: &deadpool_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    let stmt = client.prepare_cached("SELECT count(*) FROM dropin").await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}

async fn insert_two(client: &mut deadpool_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let stmt = tx.prepare_cached("INSERT INTO dropin VALUES ($1)").await?;
    tx.execute(&stmt, &[&1i32]).await?;
    tx.execute(&stmt, &[&2i32]).await?;
    tx.commit().await
}

async fn generic<C: GenericClient>(c: &C) -> Result<String, tokio_postgres::Error> {
    Ok(c.query_one("SELECT current_user::text", &[]).await?.get(0))
}

async fn handler(pool: &deadpool_postgres::Pool) -> Result<i64, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    Ok(count_rows(&client).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_deadpool_postgres_code_runs_on_this_pool() {
    let emu = emulator().await;
    // A user's token carries `upn`: with no user configured, the role comes from it.
    let mi = emu.default_user().to_owned();
    let (src, _) = source(&emu, &mi, HOUR);
    let pool = builder(&emu)
        .token_source(src)
        .max_size(4)
        .build()
        .await
        .unwrap();
    let mut client = pool.get().await.unwrap();
    client
        .batch_execute("CREATE TABLE dropin (id int)")
        .await
        .unwrap();
    insert_two(&mut client).await.unwrap();
    assert_eq!(count_rows(&client).await.unwrap(), 2);
    assert_eq!(generic(&client).await.unwrap(), mi);
    let tx = client.transaction().await.unwrap();
    assert_eq!(generic(&tx).await.unwrap(), mi);
    tx.rollback().await.unwrap();
    drop(client);
    // The inner pool (Deref) serves deadpool-postgres handlers too.
    assert_eq!(handler(&pool).await.unwrap(), 2);
    assert!(pool.status().size >= 1);
    let health = pool.health().await;
    assert!(health.healthy, "{health:?}");
    let stats = pool.stats();
    assert!(stats.logins_ok >= 1);
    assert_eq!(stats.token.identity_calls, 1);
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_retire_before_their_token_expires_and_are_replaced() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let lifetime = Duration::from_secs(6);
    let (src, calls) = source(&emu, &mi, lifetime);
    let pool = builder(&emu)
        .token_source(src)
        .user(mi)
        .max_size(4)
        .retire_policy(RetirePolicy {
            sweep_interval: Duration::from_millis(200),
            ..RetirePolicy::default()
        })
        .build()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            for _ in 0..150 {
                match pool.get().await {
                    Ok(c) => {
                        if c.simple_query("SELECT 1").await.is_err() {
                            errors += 1;
                        }
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        errors += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    let stats = pool.stats();
    let counters = emu.counters();
    eprintln!("{stats:#?}\n{counters:#?}");
    assert_eq!(errors, 0, "{stats:?}");
    assert_eq!(
        counters.expired_token_logins, 0,
        "an expired token was offered: {counters:?}"
    );
    assert!(stats.retired_token_age > 0, "{stats:?}");
    assert!(stats.created_in_background > 0, "{stats:?}");
    assert!(calls.load(Ordering::SeqCst) >= 3, "the token was refreshed");
    assert_eq!(stats.token.refreshes_failed, 0);
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_forces_one_refresh_and_a_retry() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let calls = Arc::new(AtomicU64::new(0));
    let (e2, c2, p) = (emu.clone(), calls.clone(), mi.clone());
    // The first token is already expired although the source claims an hour.
    let src = FnSource::new("Stale", move |scope| {
        let n = c2.fetch_add(1, Ordering::SeqCst);
        let t = if n == 0 {
            e2.issue_expired_token(&p)
        } else {
            e2.issue_token(&p, &scope, HOUR)
        };
        async move { Ok(Token::expiring_in(t, HOUR)) }
    });
    let pool = builder(&emu)
        .token_source(src)
        .user(mi)
        .build()
        .await
        .unwrap();
    let client = pool
        .get()
        .await
        .expect("the retry with a fresh token succeeds");
    client.simple_query("SELECT 1").await.unwrap();
    let stats = pool.stats();
    assert_eq!(stats.forced_refresh_retries, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(emu.counters().logins_refused_expired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_role_is_a_typed_login_error_with_the_fix() {
    let emu = emulator().await;
    let (src, _) = source(&emu, "ghost-identity", HOUR);
    let pool = builder(&emu)
        .token_source(src)
        .user("ghost-identity")
        .build()
        .await
        .unwrap();
    match pool.get().await {
        Err(Error::Login(e)) => {
            assert_eq!(e.kind(), ErrorKind::RoleMissing, "{e}");
            assert!(e.to_string().contains("pgaadauth_create_principal"), "{e}");
        }
        other => panic!("expected a login error, got {other:?}"),
    }
}

/// A role that exists but does not fit the token: another identity's (its security label
/// holds another object id, as after the identity was deleted and recreated), or one
/// created for a user while the token is a managed identity's, or one created for a
/// managed identity while the token is a user's. The server answers with Azure's texts;
/// the pool reports each with its own kind and fix, never "create the role", and logs in
/// once: a new token would be refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_does_not_fit_the_token_is_not_reported_as_missing() {
    let emu = emulator().await;
    emu.add_identity(entra_emulator::IdentitySpec::user_assigned("worker"))
        .await
        .unwrap();
    let mi = emu.default_identity().name.clone();
    let user = emu.default_user().to_owned();
    // (token of, role, kind, what the error must say)
    let cases = [
        (
            "worker",
            mi.as_str(),
            ErrorKind::RoleOidMismatch,
            "pgaadauth_create_principal_with_oid",
        ),
        (
            mi.as_str(),
            user.as_str(),
            ErrorKind::RoleTypeMismatch,
            "the token is an application's",
        ),
        (
            user.as_str(),
            mi.as_str(),
            ErrorKind::RoleTypeMismatch,
            "the token is a user's",
        ),
    ];
    for (principal, role, kind, says) in cases {
        let (src, calls) = source(&emu, principal, HOUR);
        let pool = builder(&emu)
            .token_source(src)
            .user(role)
            .build()
            .await
            .unwrap();
        let err = match pool.get().await {
            Err(e) => e,
            Ok(_) => panic!("{principal}'s token logged in as {role}"),
        };
        let text = err.to_string();
        assert_eq!(err.kind(), kind, "{principal} as {role}: {text}");
        assert!(
            matches!(&err, Error::Login(l) if l.sqlstate == "28000"),
            "{text}"
        );
        assert!(text.contains(says), "{principal} as {role}: {text}");
        assert!(text.contains("a new token will not help"), "{text}");
        assert!(
            !text.contains(&format!("pgaadauth_create_principal('{role}'")),
            "no advice to create a role that exists: {text}"
        );
        let stats = pool.stats();
        assert_eq!(stats.logins_failed, 1, "one login, no retry: {text}");
        assert_eq!(stats.forced_refresh_retries, 0);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no second token asked for");
        pool.close();
    }
}

/// An Entra group's role: a member logs in to it with its own token and the group's name
/// as the user, as Azure allows; a principal outside the group is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_logs_in_to_the_groups_role_with_its_own_token() {
    let emu = emulator().await;
    let member = emu.default_user().to_owned();
    let outsider = emu.default_identity().name.clone();
    emu.add_group("db-readers", &[member.as_str()])
        .await
        .unwrap();
    assert!(
        emu.add_group("nobody-group", &["not-registered"])
            .await
            .is_err(),
        "members must be registered principals"
    );

    // A pool logging in to the group's role with `principal`'s tokens.
    let group_pool = |principal: &str| {
        let (src, _) = source(&emu, principal, HOUR);
        builder(&emu).token_source(src).user("db-readers").build()
    };
    let pool = group_pool(&member).await.unwrap();
    let client = pool
        .get()
        .await
        .expect("a member logs in to the group's role");
    assert_eq!(generic(&client).await.unwrap(), "db-readers");
    drop(client);
    pool.close();

    let pool = group_pool(&outsider).await.unwrap();
    match pool.get().await {
        Err(Error::Login(e)) => assert_eq!(e.kind(), ErrorKind::RoleMissing, "{e}"),
        other => panic!("expected a login error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, HOUR);
    let pool = Pool::builder()
        .host(emu.pg_host())
        .port(emu.pg_port())
        .dbname(emu.database())
        .user(mi)
        .token_source(src)
        .build()
        .await
        .unwrap();
    match pool.get().await {
        Err(e @ Error::Tls { .. }) => assert!(e.to_string().contains("sslrootcert"), "{e}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert_eq!(emu.counters().logins_accepted, 0);
}

/// Every duration a user can configure at its largest, and a token source that says its
/// token lives for ever: the pool builds, serves, reports and closes without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_and_lifetimes_neither_panic_nor_stall() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (e2, p) = (emu.clone(), mi.clone());
    let forever = FnSource::new("Forever", move |scope| {
        let t = e2.issue_token(&p, &scope, HOUR);
        async move { Ok(Token::expiring_in(t, Duration::MAX)) }
    });
    let huge = Duration::MAX;
    let pool = builder(&emu)
        .token_source(forever)
        .max_size(2)
        .wait_timeout(Some(huge))
        .create_timeout(Some(huge))
        .recycle_timeout(Some(huge))
        .refresh_policy(deadpool_entra::RefreshPolicy {
            refresh_before_expiry: huge,
            min_backoff: huge,
            max_backoff: huge,
            fetch_timeout: Some(huge),
        })
        .retire_policy(RetirePolicy {
            token_margin: huge,
            token_spread: huge,
            max_lifetime: Some(huge),
            sweep_interval: huge,
            ..RetirePolicy::default()
        })
        .build()
        .await
        .expect("builds");
    for _ in 0..3 {
        let c = pool.get().await.expect("a connection");
        assert_eq!(generic(&c).await.unwrap(), mi);
    }
    let stats = pool.stats();
    assert_eq!(stats.token.refresher_panics, 0);
    assert!(
        pool.health_with_timeout(Duration::from_secs(5))
            .await
            .database_ok
    );
    pool.close();
    emu_shutdown(emu).await;
}

async fn emu_shutdown(emu: Arc<Emulator>) {
    if let Ok(emu) = Arc::try_unwrap(emu) {
        emu.shutdown().await;
    }
}

/// `hostaddr` (the private-endpoint pattern): the connection goes to the address, and the
/// certificate is verified against `host`. A name that does not resolve proves the former
/// (the error is TLS's, not the resolver's); a name the certificate does not carry proves
/// the latter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostaddr_connects_to_the_address_and_verifies_the_host_name() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let addr: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let (src, _) = source(&emu, &mi, HOUR);
    let pool = builder(&emu)
        .host("localhost")
        .hostaddr(addr)
        .token_source(src)
        .max_size(1)
        .build()
        .await
        .unwrap();
    let c = pool
        .get()
        .await
        .expect("localhost's certificate, reached at 127.0.0.1");
    assert_eq!(generic(&c).await.unwrap(), mi);
    drop(c);
    pool.close();

    let (src, _) = source(&emu, &mi, HOUR);
    let pool = builder(&emu)
        .host("db.does-not-resolve.invalid")
        .hostaddr(addr)
        .token_source(src)
        .max_size(1)
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .await
        .unwrap();
    let e = pool
        .get()
        .await
        .expect_err("the certificate does not name that host");
    assert!(matches!(&e, Error::Tls { .. }), "{e:?}");
    assert!(
        e.to_string().contains("db.does-not-resolve.invalid") || e.to_string().contains("Name"),
        "{e}"
    );
    assert_eq!(
        emu.counters().logins_accepted,
        1,
        "no token offered to the wrong name"
    );
    pool.close();
}

/// Several hosts, as libpq takes them: the first down, the pool logs in to the second;
/// `target_session_attrs=read-write` skips a read replica, `read-only` picks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_hosts_the_first_down_and_target_session_attrs() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conninfo = |hosts: &str, ports: String, attrs: &str| {
        format!(
            "host={hosts} port={ports} dbname={} sslrootcert={} target_session_attrs={attrs} connect_timeout=5",
            emu.database(),
            emu.ca_cert_path().display()
        )
    };
    let read_only = |pool: Pool| async move {
        let c = pool.get().await.expect("a connection");
        let v: String = c
            .query_one("SHOW transaction_read_only", &[])
            .await
            .unwrap()
            .get(0);
        pool.close();
        v
    };
    let build = |s: String| {
        let (src, _) = source(&emu, &mi, HOUR);
        async move {
            s.parse::<deadpool_entra::Config>()
                .unwrap()
                .builder()
                .token_source(src)
                .max_size(1)
                .build()
                .await
                .expect("pool builds")
        }
    };
    // The first host does not answer: the second serves.
    let pool = build(conninfo(
        "127.0.0.1,localhost",
        format!("{dead},{}", emu.pg_port()),
        "any",
    ))
    .await;
    assert_eq!(read_only(pool).await, "off");
    // A replica first: `any` takes it, `read-write` skips it, `read-only` wants it.
    let replica_first = format!("{},{}", emu.replica_pg_port(), emu.pg_port());
    for (attrs, expected) in [("any", "on"), ("read-write", "off"), ("read-only", "on")] {
        let pool = build(conninfo(
            "127.0.0.1,localhost",
            replica_first.clone(),
            attrs,
        ))
        .await;
        assert_eq!(read_only(pool).await, expected, "{attrs}");
    }
    let writer_first = format!("{},{}", emu.pg_port(), emu.replica_pg_port());
    let pool = build(conninfo("localhost,127.0.0.1", writer_first, "read-only")).await;
    assert_eq!(read_only(pool).await, "on");
}

/// A token for the wrong resource is refused for its audience: a new token from the same
/// source cannot fix that, so the pool asks for none (one identity call, the build's) and
/// reports the audience with the scope to use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_audience_is_reported_without_asking_for_another_token() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let calls = Arc::new(AtomicU64::new(0));
    let (e2, c2, p) = (emu.clone(), calls.clone(), mi.clone());
    let wrong = FnSource::new("WrongScope", move |_scope| {
        c2.fetch_add(1, Ordering::SeqCst);
        let t = e2.issue_token(&p, "https://management.azure.com/.default", HOUR);
        async move { Ok(Token::expiring_in(t, HOUR)) }
    });
    let pool = builder(&emu)
        .token_source(wrong)
        .max_size(1)
        .build()
        .await
        .unwrap();
    let e = pool.get().await.expect_err("the audience is refused");
    match &e {
        Error::Login(l) => assert_eq!(l.kind(), ErrorKind::TokenWrongAudience, "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no fetch for another token"
    );
    assert_eq!(pool.stats().forced_refresh_retries, 0);
    pool.close();
}
