//! A short `churn --compare` against the in-process emulator. It checks correctness only
//! (no errors for our pool, no expired token offered, well-formed JSON), never speed.

use std::process::Command;

#[test]
fn compare_smoke_run_on_the_emulator() {
    let dir = std::env::temp_dir().join(format!("churn-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_churn"))
        .args([
            "--compare",
            "--tasks",
            "4",
            "--max-size",
            "4",
            "--duration",
            "2s",
            "--round",
            "1s",
            "--warmup",
            "500ms",
            "--token-lifetime",
            "10s",
            "--quiet",
            "--markdown",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--chart")
        .arg(&svg)
        .output()
        .expect("run churn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "churn failed: {stderr}");
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("| ours |"), "markdown rows: {md}");

    let text = std::fs::read_to_string(&json).expect("JSON written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("well-formed JSON");
    for key in [
        "churn_version",
        "command",
        "machine",
        "settings",
        "elapsed_secs",
        "pools",
        "series",
        "faults",
        "rotations",
        "server_start",
        "server_end",
    ] {
        assert!(v.get(key).is_some(), "JSON lacks {key}");
    }
    let pools = v["pools"].as_array().expect("pools array");
    let names: Vec<&str> = pools.iter().filter_map(|p| p["pool"].as_str()).collect();
    assert_eq!(names, ["ours", "baseline", "per-connect", "rebuild"]);
    for p in pools {
        for key in [
            "throughput_rps",
            "requests_ok",
            "errors",
            "errors_by_kind",
            "checkout",
            "query",
            "waited_for_login",
            "counters",
            "server",
        ] {
            assert!(p.get(key).is_some(), "pool result lacks {key}: {p}");
        }
        assert!(p["requests_ok"].as_u64().unwrap() > 0, "no requests: {p}");
        for q in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
            assert!(p["checkout"][q].is_number(), "checkout lacks {q}");
        }
    }
    let ours = &pools[0];
    assert_eq!(
        ours["errors"].as_u64(),
        Some(0),
        "our pool had errors: {ours}"
    );
    assert!(ours["ratios"]["throughput"].is_number());
    assert_eq!(
        v["server_end"]["expired_token_logins"].as_u64(),
        Some(0),
        "an expired token was offered"
    );
    assert!(!v["series"].as_array().unwrap().is_empty());
    let svg_text = std::fs::read_to_string(&svg).expect("chart written");
    assert!(svg_text.starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}
