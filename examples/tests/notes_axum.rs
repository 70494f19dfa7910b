//! The axum example's service, started on 127.0.0.1:0 against an emulator and called
//! over HTTP.

mod common;

use deadpool_entra_examples::notes_axum;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_notes_service_serves_healthz_and_crud_then_shuts_down() {
    tokio::time::timeout(common::TEST_TIMEOUT, async {
        let (emulator, pool) = common::emulator_and_pool().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(notes_axum::serve(listener, pool.clone(), None, async {
            let _ = stop_rx.await;
        }));

        common::healthz_and_notes_crud(&base).await;
        common::healthz_is_503_when_the_database_refuses_logins(&base, &emulator).await;

        // Graceful shutdown: the server returns, then the pool closes.
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        pool.close();
        assert!(pool.get().await.is_err(), "a closed pool hands out nothing");
        emulator.shutdown().await;
    })
    .await
    .expect("test finished in time");
}
