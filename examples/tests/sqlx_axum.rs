//! The sqlx example's service: a `sqlx-entra` pool configured from the emulator's
//! environment, its tokens from the emulator's managed identity endpoint over HTTP,
//! called over HTTP.

mod common;

use deadpool_entra::Config;
use deadpool_entra_examples::sqlx_notes_axum;
use entra_emulator::Emulator;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlx_service_serves_healthz_and_notes_and_answers_503_when_logins_fail() {
    tokio::time::timeout(common::TEST_TIMEOUT, async {
        let emulator = Emulator::start().await.expect("emulator starts");
        let cfg = Config::from_env_vars(emulator.env()).expect("a valid configuration");
        let pool = sqlx_entra::PoolBuilder::new(cfg)
            .token_source(common::managed_identity_over_http(&emulator))
            .build()
            .await
            .expect("pool builds against the emulator");
        sqlx_notes_axum::migrate(&pool).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = sqlx_notes_axum::router(pool.pg().clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();

        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let created = http
            .post(format!("{base}/notes"))
            .json(&json!({"body": "from sqlx"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let list: Value = http
            .get(format!("{base}/notes"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list[0]["body"], "from sqlx", "{list}");

        // A closed pool: 503, not a hang or a panic.
        pool.close().await;
        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 503);
        let stats = pool.stats();
        assert!(!format!("{stats:?} {pool:?}").contains("eyJ"));
        emulator.shutdown().await;
    })
    .await
    .expect("test finished in time");
}
