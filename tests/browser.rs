//! The demo page end to end in a real browser: `node tests/browser/demo.mjs HOST:PORT` drives
//! Debian's headless Chromium through playwright-core against a server started here, over
//! WebSocket and then SSE, including a dropped connection and resume with no gap; the server
//! runs with `--compression`, and the script checks that Chromium negotiated
//! permessage-deflate and that compressed messages arrive intact both ways.
//!
//! Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) and `tests/browser/node_modules` are
//! installed by `.ci/test`; if they are missing this test fails and says so rather than
//! passing without having run.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The whole script, browser start-up included, is killed after this.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Collects a child's pipe into a shared buffer until it closes, then reports on `done`.
fn collect(mut pipe: impl Read + Send + 'static, done: mpsc::Sender<()>) -> Arc<Mutex<Vec<u8>>> {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&sink);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => out
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
        let _ = done.send(());
    });
    sink
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

#[test]
fn demo_page_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "{} is missing: run `.ci/test`, which installs Chromium and playwright-core for this test",
        chromium.display()
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{} is missing: run `.ci/test`, which installs playwright-core there (`npm ci`)",
        dir.join("node_modules/playwright-core").display()
    );

    let server = Server::start(&["--compression"]);
    let mut child = Command::new("node")
        .arg("demo.mjs")
        .arg(server.addr().to_string())
        .arg("--compression")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): run `.ci/test`, which installs what this test needs")
        });
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = collect(
        child.stdout.take().expect("stdout is piped"),
        done_tx.clone(),
    );
    let stderr = collect(child.stderr.take().expect("stderr is piped"), done_tx);

    // No event to block on with a timeout for a child's exit: poll it, as Server::wait_exit does.
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    // The rest of the output, once the pipes close (briefly: a browser left behind would
    // hold them open).
    for _ in 0..2 {
        if done_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            break;
        }
    }
    println!(
        "---- demo.mjs stdout ----\n{}---- demo.mjs stderr ----\n{}",
        text(&stdout),
        text(&stderr)
    );
    let status = status.unwrap_or_else(|| {
        panic!("demo.mjs did not finish within {SCRIPT_TIMEOUT:?} and was killed")
    });
    assert!(status.success(), "demo.mjs failed: {status:?}");
}
