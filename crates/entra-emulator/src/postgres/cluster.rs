//! A throwaway PostgreSQL cluster: find the binaries, `initdb`, start, stop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::postgres::pgwire;

/// The superuser `initdb` creates (we pass `-U postgres` whatever the OS user is).
const SUPERUSER: &str = "postgres";

/// The real PostgreSQL cluster behind the front.
///
/// It listens on a unix socket in [`Cluster::socket_dir`] and on `127.0.0.1:`[`Cluster::port`]
/// (TLS available with the emulator's certificate), with `trust` authentication: anything
/// local can log in as any role, so it is a throwaway cluster for tests and demos only.
pub struct Cluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    /// Cleans up if this process dies without dropping the emulator.
    watcher: Mutex<Watcher>,
    /// Keeps the template alive while this cluster exists; the last one out removes it.
    _template: Arc<Template>,
}

/// An `initdb`'d data directory, copied for each cluster: `initdb` is the slowest part of
/// starting, and concurrent emulators in one process (parallel tests) share one. It lives as
/// long as some cluster made from it, then its directory is removed.
struct Template {
    watcher: Watcher,
    dir: tempfile::TempDir,
    data: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
}

static TEMPLATE: tokio::sync::Mutex<Weak<Template>> = tokio::sync::Mutex::const_new(Weak::new());

impl Template {
    async fn get(bin_dir: &Path, run_as: Option<(u32, u32)>) -> Result<Arc<Template>, Error> {
        let mut current = TEMPLATE.lock().await;
        if let Some(t) = current.upgrade()
            && t.bin_dir == bin_dir
            && t.run_as == run_as
        {
            return Ok(t);
        }
        let dir = temp_dir("entra-emulator-template-")?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(|e| Error::io("cannot create the template directory", e))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot chmod the template directory", e))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .map_err(|e| Error::io("cannot hand the template to the postgres user", e))?;
        }
        initdb(bin_dir, &data, run_as).await?;
        let watcher = Watcher::spawn(TEMPLATE_WATCHER, &[dir.path().display().to_string()]);
        let t = Arc::new(Template {
            watcher,
            dir,
            data,
            bin_dir: bin_dir.to_path_buf(),
            run_as,
        });
        *current = Arc::downgrade(&t);
        Ok(t)
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        self.watcher.dismiss();
        let _ = fs::remove_dir_all(self.dir.path());
    }
}

/// Run by the cluster watcher when this process is gone: stop the postmaster ($1) at once
/// (SIGQUIT = immediate shutdown), then remove the emulator's directory ($2).
const CLUSTER_WATCHER: &str = r#"trap '' INT HUP TERM QUIT
read _ignored
kill -QUIT "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$1" 2>/dev/null
rm -rf "$2"
"#;

/// Run by the template watcher when this process is gone: remove the template ($1).
const TEMPLATE_WATCHER: &str = r#"trap '' INT HUP TERM QUIT
read _ignored
rm -rf "$1"
"#;

/// A `/bin/sh` process that waits for its stdin (a pipe only this process holds) to close.
/// If this process dies without cleaning up (SIGKILL, abort, a killed test), the pipe closes
/// and the script cleans up in its place. A normal stop dismisses it first.
struct Watcher {
    child: Option<Child>,
    _stdin: Option<std::process::ChildStdin>,
}

impl Watcher {
    fn spawn(script: &str, args: &[String]) -> Watcher {
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("entra-emulator-watcher")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                let stdin = child.stdin.take();
                Watcher {
                    child: Some(child),
                    _stdin: stdin,
                }
            }
            Err(e) => {
                tracing::warn!("cannot start the cleanup watcher: {e}");
                Watcher {
                    child: None,
                    _stdin: None,
                }
            }
        }
    }

    /// Stop the watcher without letting it clean up (the caller does).
    fn dismiss(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self._stdin = None;
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// A fresh temporary directory, mode 0755; under /tmp when root, so that the `postgres` user
/// can traverse every parent.
pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, Error> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    let dir = if is_root() {
        b.tempdir_in("/tmp")
    } else {
        b.tempdir()
    }
    .map_err(|e| Error::io("cannot create a temporary directory", e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot chmod the temporary directory", e))?;
    Ok(dir)
}

async fn initdb(bin_dir: &Path, data_dir: &Path, run_as: Option<(u32, u32)>) -> Result<(), Error> {
    let mut cmd = Command::new(bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .stdin(Stdio::null())
        .env_remove("PGDATA");
    set_user(&mut cmd, run_as);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| Error::Setup(format!("initdb task failed: {e}")))?
        .map_err(|e| Error::io("cannot run initdb", e))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bin_dir", &self.bin_dir)
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// TCP port on 127.0.0.1 (also the number in the unix socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }
    /// The cluster's superuser (`postgres`).
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }
    /// Directory of the `initdb`/`postgres` binaries in use (also has `psql`, `pgbench`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// The `initdb`'d template this cluster's data directory was copied from. Emulators started
    /// while another one runs in the same process share it; it is removed with the last of them.
    pub fn template_dir(&self) -> &Path {
        self._template.dir.path()
    }
    /// Process id of the postmaster, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// Run SQL as the superuser in `database`; rows of the last statement as text.
    pub async fn execute(
        &self,
        database: &str,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, Error> {
        pgwire::simple_query(&self.socket_dir, self.port, SUPERUSER, database, sql)
            .await
            .map_err(|(code, message)| Error::Sql { code, message })
    }

    /// `initdb` into `<root>/data` and start the server. `root` must be traversable by the
    /// server's user.
    pub(crate) async fn start(
        root: &Path,
        tls: Option<(&Path, &Path)>,
        max_connections: u32,
    ) -> Result<Cluster, Error> {
        let bin_dir = find_bin_dir()?;
        let run_as = if is_root() {
            Some(lookup_user("postgres").ok_or_else(|| {
                Error::Setup(
                    "running as root, but there is no unprivileged `postgres` user to run PostgreSQL as \
                     (installing the Debian package `postgresql` creates it, or `useradd --system postgres`)"
                        .into(),
                )
            })?)
        } else {
            None
        };
        let data_dir = root.join("data");
        let socket_dir = root.join("socket");
        let log_path = root.join("postgres.log");
        fs::create_dir_all(&socket_dir)
            .map_err(|e| Error::io("cannot create the socket directory", e))?;
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot chmod the socket directory", e))?;
        let mut server_tls = None;
        if let Some((cert, key)) = tls {
            // The server wants its key owned by itself and not readable by others.
            let c = root.join("server-pg.crt");
            let k = root.join("server-pg.key");
            fs::copy(cert, &c).map_err(|e| Error::io("cannot copy the certificate", e))?;
            fs::copy(key, &k).map_err(|e| Error::io("cannot copy the key", e))?;
            fs::set_permissions(&k, fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("cannot chmod the key", e))?;
            server_tls = Some((c, k));
        }
        if let Some((uid, gid)) = run_as {
            let mut paths = vec![socket_dir.clone()];
            if let Some((c, k)) = &server_tls {
                paths.push(c.clone());
                paths.push(k.clone());
            }
            for p in paths {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|e| {
                    Error::io(
                        format!("cannot hand {} to the postgres user", p.display()),
                        e,
                    )
                })?;
            }
            fs::File::create(&log_path)
                .map_err(|e| Error::io("cannot create the server log", e))?;
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))
                .map_err(|e| Error::io("cannot chown the log", e))?;
        }

        // A copy of this process's initdb'd template (made once, shared by concurrent emulators).
        let template = Template::get(&bin_dir, run_as).await?;
        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(&template.data)
            .arg(&data_dir)
            .stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cp.output())
            .await
            .map_err(|e| Error::Setup(format!("copy task failed: {e}")))?
            .map_err(|e| Error::io("cannot run cp", e))?;
        if !out.status.success() {
            return Err(Error::Setup(format!(
                "copying the template cluster failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        tracing::debug!("data directory ready");
        let mut last_err = String::new();
        for _attempt in 0..4 {
            let port = free_port()?;
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| Error::io("cannot open the server log", e))?;
            let log2 = log
                .try_clone()
                .map_err(|e| Error::io("cannot dup the log", e))?;
            let mut cmd = Command::new(bin_dir.join("postgres"));
            cmd.arg("-D")
                .arg(&data_dir)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&socket_dir);
            let mut conf: Vec<String> = vec![
                "listen_addresses=127.0.0.1".into(),
                format!("max_connections={max_connections}"),
                "shared_buffers=32MB".into(),
                "fsync=off".into(),
                "synchronous_commit=off".into(),
                "full_page_writes=off".into(),
                "dynamic_shared_memory_type=posix".into(),
                "log_min_messages=warning".into(),
                "log_connections=off".into(),
            ];
            if let Some((c, k)) = &server_tls {
                conf.push("ssl=on".into());
                conf.push(format!("ssl_cert_file={}", c.display()));
                conf.push(format!("ssl_key_file={}", k.display()));
            }
            for c in conf {
                cmd.arg("-c").arg(c);
            }
            cmd.stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .env_remove("PGDATA");
            set_user(&mut cmd, run_as);
            let child = cmd
                .spawn()
                .map_err(|e| Error::io("cannot start postgres", e))?;
            let watcher = Watcher::spawn(
                CLUSTER_WATCHER,
                &[child.id().to_string(), root.display().to_string()],
            );
            let cluster = Cluster {
                watcher: Mutex::new(watcher),
                bin_dir: bin_dir.clone(),
                data_dir: data_dir.clone(),
                socket_dir: socket_dir.clone(),
                log_path: log_path.clone(),
                port,
                run_as,
                child: Mutex::new(Some(child)),
                _template: template.clone(),
            };
            match cluster.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    last_err = e;
                    cluster.stop();
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    if !log.contains("could not bind") && !log.contains("already in use") {
                        break;
                    }
                }
            }
        }
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        Err(Error::Setup(format!(
            "postgres did not start: {last_err}\n--- server log ---\n{log}"
        )))
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            {
                let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(child) = g.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    g.take();
                    return Err(format!("postgres exited: {status}"));
                }
            }
            match pgwire::simple_query(
                &self.socket_dir,
                self.port,
                SUPERUSER,
                "postgres",
                "SELECT 1",
            )
            .await
            {
                Ok(_) => return Ok(()),
                Err((code, msg)) => {
                    if start.elapsed() > timeout {
                        return Err(format!("not ready after {timeout:?}: {code} {msg}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop the server at once (`pg_ctl stop -m immediate`) and reap it. Idempotent, blocking.
    pub(crate) fn stop(&self) {
        self.watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dismiss();
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let mut cmd = Command::new(self.bin_dir.join("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t", "20"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        set_user(&mut cmd, self.run_as);
        let stopped = cmd.status().map(|s| s.success()).unwrap_or(false);
        if !stopped {
            // SIGKILL leaves backends behind only if they were mid-start; pg_ctl failing is rare.
            let _ = child.kill();
        }
        // pg_ctl -w returns once the postmaster is gone, so this does not block for long.
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn set_user(cmd: &mut Command, run_as: Option<(u32, u32)>) {
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        // HOME of root would not be readable; postgres does not need one.
        cmd.env("HOME", "/tmp")
            .env("USER", "postgres")
            .env("LOGNAME", "postgres");
    }
}

/// Whether this process runs with effective uid 0.
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata("/proc/self")
                .map(|m| m.uid() == 0)
                .unwrap_or(false)
        })
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("cannot find a free port", e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io("cannot find a free port", e))?
        .port())
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_ctl"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

/// Find the directory with `initdb`, `postgres` and `pg_ctl`: `$ENTRA_EMULATOR_PG_BINDIR`,
/// `pg_config --bindir`, the newest `/usr/lib/postgresql/*/bin`, then `PATH`.
pub(crate) fn find_bin_dir() -> Result<PathBuf, Error> {
    if let Some(d) = std::env::var_os("ENTRA_EMULATOR_PG_BINDIR") {
        let d = PathBuf::from(d);
        if has_server(&d) {
            return Ok(d);
        }
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&d) {
            return Ok(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_server(&d) {
                return Ok(d);
            }
        }
    }
    Err(Error::MissingPostgres)
}
