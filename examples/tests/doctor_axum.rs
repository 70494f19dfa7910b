//! The axum example's `/admin/doctor`: refused without the admin secret, and with it the
//! doctor's report as JSON (200 when the login works), holding no secret.

mod common;

use deadpool_entra_examples::doctor_axum::doctor_router;
use entra_emulator::Emulator;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_doctor_route_needs_the_secret_and_reports_without_secrets() {
    tokio::time::timeout(common::TEST_TIMEOUT, async {
        let emulator = Emulator::start().await.expect("emulator starts");
        // A password role: the report's login needs no identity endpoint (the managed
        // identity credential would read the process environment, which tests share).
        emulator
            .add_password_role("doctor_pw", "pw-7d1c2e")
            .await
            .expect("password role");
        let mut env = emulator.env();
        env.push(("AZURE_POSTGRESQL_USER".into(), "doctor_pw".into()));
        env.push(("PGPASSWORD".into(), "pw-7d1c2e".into()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = doctor_router("admin-secret-1", env);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let url = format!("{base}/admin/doctor");

        let none = http.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401);
        let wrong = http
            .get(&url)
            .bearer_auth("admin-secret-2")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);

        let res = http
            .get(&url)
            .bearer_auth("admin-secret-1")
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        let report: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["login_works"], true, "{text}");
        let checks = report["checks"].as_array().unwrap();
        let verdict = |name: &str| {
            checks
                .iter()
                .find(|c| c["name"] == name)
                .map(|c| c["verdict"].as_str().unwrap_or("").to_owned())
        };
        assert_eq!(verdict("login").as_deref(), Some("ok"), "{text}");
        // A password in auto mode is said loudly.
        assert_eq!(
            verdict("configuration").as_deref(),
            Some("warning"),
            "{text}"
        );
        assert!(!text.contains("pw-7d1c2e"), "the password is in the report");
        assert!(!text.contains("admin-secret-1"));
        assert!(!text.contains("eyJ"), "a token is in the report");
        emulator.shutdown().await;
    })
    .await
    .expect("within the test timeout");
}
