//! The actix-web example's service, started on 127.0.0.1:0 against an emulator and
//! called over HTTP.

mod common;

use deadpool_entra_examples::notes_actix;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_notes_service_serves_healthz_and_crud_then_shuts_down() {
    tokio::time::timeout(common::TEST_TIMEOUT, async {
        let (emulator, pool) = common::emulator_and_pool().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = notes_actix::server(pool.clone(), listener, false).unwrap();
        let handle = server.handle();
        let running = tokio::spawn(server);

        common::healthz_and_notes_crud(&base).await;
        common::healthz_is_503_when_the_database_refuses_logins(&base, &emulator).await;

        // Graceful shutdown: the server returns, then the pool closes.
        handle.stop(true).await;
        running.await.unwrap().unwrap();
        pool.close();
        assert!(pool.get().await.is_err(), "a closed pool hands out nothing");
        emulator.shutdown().await;
    })
    .await
    .expect("test finished in time");
}
