//! Every secret the emulator handed out, and a process-wide TRACE capture of all `tracing`
//! output, so that one test can prove that no secret ever reached a log line or an error.
//!
//! The scenarios are one test binary, so one global subscriber sees the events of every
//! scenario running in this process. It is installed once, by whichever test starts first.

use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, OnceLock};

/// Fragments shorter than this are not looked for: a JWT's header segment (`eyJhbGci...`)
/// is the same for every token and is no secret; the payload and signature are.
const FRAGMENT_LEN: usize = 24;
/// The capture stops growing here; the scan reports if it was cut.
const CAPTURE_CAP_BYTES: usize = 512 * 1024 * 1024;

struct Capture {
    buf: Mutex<Vec<u8>>,
    truncated: std::sync::atomic::AtomicBool,
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();
static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

fn capture() -> &'static Capture {
    CAPTURE.get_or_init(|| Capture {
        buf: Mutex::new(Vec::with_capacity(1 << 20)),
        truncated: Default::default(),
    })
}

fn secrets() -> &'static Mutex<Vec<String>> {
    SECRETS.get_or_init(Default::default)
}

struct CaptureWriter;

impl io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let cap = capture();
        let mut buf = cap.buf.lock().unwrap_or_else(|e| e.into_inner());
        if buf.len() + data.len() <= CAPTURE_CAP_BYTES {
            buf.extend_from_slice(data);
        } else {
            cap.truncated
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the process-wide TRACE subscriber (once) that writes every event and span of
/// every crate into an in-memory buffer. Call at the start of every scenario.
pub fn init_tracing() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_writer(|| CaptureWriter);
        // `try_init` also routes the `log` crate's records (tokio-postgres, rustls) into
        // the capture. Another subscriber could only exist if a test installed one; none does.
        let _ = subscriber.try_init();
    });
}

/// Remembers a secret (a token the emulator issued, a static password) to be looked for
/// in the captured output.
pub fn record_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut all = secrets().lock().unwrap_or_else(|e| e.into_inner());
    all.push(secret.to_owned());
}

/// How many secrets were recorded so far.
pub fn secrets_recorded() -> usize {
    secrets().lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Adds an error's `Display` and `Debug` renderings (and its `source()` chain) to the
/// capture, so the final scan covers them too; returns the `Display` text.
pub fn note_error(err: &(dyn std::error::Error + 'static)) -> String {
    let display = err.to_string();
    let mut text = format!("ERROR-DISPLAY: {display}\nERROR-DEBUG: {err:?}\nERROR-ALT: {err:#?}\n");
    let mut source = err.source();
    let mut depth = 0;
    while let Some(s) = source {
        text.push_str(&format!("ERROR-SOURCE: {s}\nERROR-SOURCE-DEBUG: {s:?}\n"));
        source = s.source();
        depth += 1;
        if depth > 16 {
            break;
        }
    }
    use io::Write;
    let _ = CaptureWriter.write(text.as_bytes());
    display
}

/// Adds any text (a stats snapshot, a health report) to the capture.
pub fn note_text(text: &str) {
    use io::Write;
    let _ = CaptureWriter.write(text.as_bytes());
    let _ = CaptureWriter.write(b"\n");
}

/// What a scan of the capture found.
#[derive(Debug)]
pub struct LeakReport {
    pub secrets_checked: usize,
    pub bytes_scanned: usize,
    pub truncated: bool,
    /// Short, safe descriptions of the leaks found: where and which secret index, never
    /// the secret itself (the report is printed on failure).
    pub leaks: Vec<String>,
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Scans everything captured so far for every secret recorded so far: whole secrets, and
/// every `FRAGMENT_LEN`-long piece of a JWT's payload and signature (a token printed cut
/// short, or only its signature, is still a leak).
pub fn scan_for_leaks() -> LeakReport {
    let secrets: Vec<String> = secrets().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let cap = capture();
    let buf = cap.buf.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let truncated = cap.truncated.load(std::sync::atomic::Ordering::Relaxed);

    let mut windows: std::collections::HashMap<&[u8], usize> = Default::default();
    let mut short: Vec<(usize, &str)> = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        let parts: Vec<&str> = s.split('.').collect();
        let pieces: Vec<&str> = if parts.len() == 3 {
            vec![parts[1], parts[2]]
        } else {
            vec![s.as_str()]
        };
        for p in pieces {
            let p = p.as_bytes();
            if p.len() < FRAGMENT_LEN || !p.iter().all(|b| is_b64url(*b)) {
                short.push((i, s.as_str()));
                continue;
            }
            for w in p.windows(FRAGMENT_LEN) {
                windows.insert(w, i);
            }
        }
    }
    let mut leaks: HashSet<String> = HashSet::new();
    // Runs of base64url characters in the capture, each window looked up.
    let mut start = 0;
    while start < buf.len() {
        if !is_b64url(buf[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < buf.len() && is_b64url(buf[end]) {
            end += 1;
        }
        if end - start >= FRAGMENT_LEN {
            for w in buf[start..end].windows(FRAGMENT_LEN) {
                if let Some(i) = windows.get(w) {
                    let line_start = buf[..start]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |p| p + 1);
                    let prefix: String =
                        String::from_utf8_lossy(&buf[line_start..start.min(line_start + 160)])
                            .into();
                    leaks.insert(format!("secret #{i} (token) in line starting: {prefix:?}"));
                    break;
                }
            }
        }
        start = end;
    }
    let text = String::from_utf8_lossy(&buf);
    for (i, s) in short {
        if text.contains(s) {
            leaks.insert(format!(
                "secret #{i} (short secret, {} chars) found",
                s.len()
            ));
        }
    }
    let mut leaks: Vec<String> = leaks.into_iter().collect();
    leaks.sort();
    LeakReport {
        secrets_checked: secrets.len(),
        bytes_scanned: buf.len(),
        truncated,
        leaks,
    }
}

/// Whether a given text contains any recorded secret (for asserting on one error at once).
pub fn contains_secret(text: &str) -> bool {
    let secrets = secrets().lock().unwrap_or_else(|e| e.into_inner());
    secrets.iter().any(|s| {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() == 3 {
            text.contains(parts[1]) || text.contains(parts[2])
        } else {
            text.contains(s.as_str())
        }
    })
}

/// Whether the captured output contains `needle` (to prove that something was logged).
pub fn captured_contains(needle: &str) -> bool {
    let buf = capture().buf.lock().unwrap_or_else(|e| e.into_inner());
    let needle = needle.as_bytes();
    !needle.is_empty() && buf.windows(needle.len()).any(|w| w == needle)
}

/// Bytes captured so far.
pub fn captured_bytes() -> usize {
    capture()
        .buf
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
}
