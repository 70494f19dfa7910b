//! Everything is cleaned up: no postgres process and no temporary directory left behind,
//! after `Drop` and after `shutdown()`, also when the tests run as root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use entra_emulator::{Emulator, OSSRDBMS_RESOURCE};

/// Processes whose command line mentions `needle` (reads /proc).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle)
                .then_some(format!("{}: {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

async fn started() -> (Emulator, PathBuf, PathBuf, u32, PathBuf) {
    let emu = Emulator::builder()
        .password_role("bench", "pw")
        .start()
        .await
        .expect("start");
    let data = emu.cluster().data_dir().to_path_buf();
    let tmp = emu.temp_dir().to_path_buf();
    let pid = emu.cluster().pid().expect("postmaster running");
    let template = emu.cluster().template_dir().to_path_buf();
    assert!(template.exists());
    assert!(
        !processes_mentioning(&data).is_empty(),
        "postgres should be running"
    );
    // An open session through the front, so backends exist too.
    let token = emu.issue_token(
        &emu.default_identity().name,
        OSSRDBMS_RESOURCE,
        Duration::from_secs(60),
    );
    let client = common::login(&emu, &emu.default_identity().name, &token)
        .await
        .expect("login");
    client.query_one("SELECT 1", &[]).await.unwrap();
    std::mem::forget(client); // keep the session open through the shutdown
    (emu, data, tmp, pid, template)
}

fn assert_clean(data: &Path, tmp: &Path, pid: u32) {
    let left = processes_mentioning(data);
    assert!(left.is_empty(), "postgres processes left: {left:?}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} still exists"
    );
    assert!(!tmp.exists(), "temporary directory {} left", tmp.display());
}

// One test, so that no other emulator in this process shares the initdb template and the
// template's removal can be checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_and_shutdown_stop_postgres_and_remove_every_directory() {
    let (emu, data, tmp, pid, template) = started().await;
    drop(emu);
    assert_clean(&data, &tmp, pid);
    assert!(!template.exists(), "template {} left", template.display());

    let (emu, data, tmp, pid, template) = started().await;
    emu.shutdown().await;
    assert_clean(&data, &tmp, pid);
    assert!(!template.exists(), "template {} left", template.display());
}

#[test]
fn missing_binaries_error_names_the_package() {
    let msg = entra_emulator::Error::MissingPostgres.to_string();
    assert!(
        msg.contains("`postgresql`") && msg.contains("apt-get install postgresql"),
        "{msg}"
    );
}

/// Even a SIGKILLed `entra-emulator up` leaves nothing behind: a watcher process, holding the
/// other end of a pipe, stops postgres and removes the directories when the pipe closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_command_is_cleaned_up_by_its_watcher() {
    let scratch = tempfile::tempdir().unwrap();
    let env_file = scratch.path().join("emu.env");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_entra-emulator"))
        .arg("up")
        .arg("--env-file")
        .arg(&env_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let env = common::bounded(async {
        loop {
            if let Ok(s) = std::fs::read_to_string(&env_file) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let ca = env
        .lines()
        .find_map(|l| l.strip_prefix("export PGSSLROOTCERT="))
        .unwrap()
        .trim_matches('\'')
        .to_string();
    let tmp = Path::new(&ca).parent().unwrap().to_path_buf();
    let data = tmp.join("data");
    assert!(!processes_mentioning(&data).is_empty());
    child.start_kill().unwrap(); // SIGKILL: no Drop, no signal handler
    child.wait().await.unwrap();
    common::bounded(async {
        while tmp.exists() || !processes_mentioning(&data).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}
