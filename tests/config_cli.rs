//! The command line and the environment: `--help` documents every flag with its default and
//! environment variable; a bad flag or value exits 2 with one line on stderr; every flag can
//! come from `SWITCHBOARD_<FLAG>`, and the command line wins over the environment.

mod common;

use std::io::Read;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use switchboard::config;

use common::*;

/// How long a command that should exit at once may run before the test kills it.
const CLI_DEADLINE: Duration = Duration::from_secs(10);

/// Every flag and the default `--help` must show for it.
fn documented_flags() -> Vec<(&'static str, String)> {
    vec![
        ("listen", config::DEFAULT_LISTEN.to_string()),
        ("workers", "CPU count".to_string()),
        (
            "max-connections",
            format!("fd limit - {}", config::FD_RESERVE),
        ),
        (
            "max-header-bytes",
            config::DEFAULT_MAX_HEADER_BYTES.to_string(),
        ),
        (
            "max-message-bytes",
            config::DEFAULT_MAX_MESSAGE_BYTES.to_string(),
        ),
        (
            "max-outbound-bytes",
            config::DEFAULT_MAX_OUTBOUND_BYTES.to_string(),
        ),
        ("allowed-origin", "any".to_string()),
        ("subprotocol", "none".to_string()),
        ("ping-interval", config::DEFAULT_PING_INTERVAL_S.to_string()),
        ("idle-timeout", config::DEFAULT_IDLE_TIMEOUT_S.to_string()),
        (
            "handshake-timeout",
            config::DEFAULT_HANDSHAKE_TIMEOUT_S.to_string(),
        ),
        ("close-timeout", config::DEFAULT_CLOSE_TIMEOUT_S.to_string()),
        (
            "shutdown-timeout",
            config::DEFAULT_SHUTDOWN_TIMEOUT_S.to_string(),
        ),
        ("poll-timeout", config::DEFAULT_POLL_TIMEOUT_S.to_string()),
        ("history-size", config::DEFAULT_HISTORY_SIZE.to_string()),
        ("history-ttl", config::DEFAULT_HISTORY_TTL_S.to_string()),
        (
            "max-subscriptions",
            config::DEFAULT_MAX_SUBSCRIPTIONS.to_string(),
        ),
        ("publish-token", "none".to_string()),
        ("log-level", "info".to_string()),
    ]
}

fn env_var(flag: &str) -> String {
    format!(
        "SWITCHBOARD_{}",
        flag.to_ascii_uppercase().replace('-', "_")
    )
}

/// What a run of the binary that should end by itself produced.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` and `env` (the caller's `SWITCHBOARD_*` removed) and waits for
/// it to exit: both pipes reach EOF when it does. A process still running after
/// [`CLI_DEADLINE`] is killed and fails the test.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = switchboard_command();
    cmd.args(args).envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn the switchboard binary");
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().expect("stdout is piped");
    let tx_out = tx.clone();
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        let _ = tx_out.send((1, s));
    });
    let mut err = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        let _ = tx.send((2, s));
    });
    let deadline = Instant::now() + CLI_DEADLINE;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((1, s)) => stdout = s,
            Ok((_, s)) => stderr = s,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("switchboard {args:?} (env {env:?}) still running after {CLI_DEADLINE:?}");
            }
        }
    }
    let status = child.wait().expect("wait for switchboard");
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Asserts a refusal: exit status 2, nothing on stdout, and exactly one line on stderr that
/// names the problem (`needle`).
fn assert_refused(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let o = run_cli(args, env);
    assert_eq!(
        o.status.code(),
        Some(2),
        "switchboard {args:?} (env {env:?}) should exit 2: {o:?}"
    );
    assert!(
        o.stdout.is_empty(),
        "{args:?} {env:?}: stdout {:?}",
        o.stdout
    );
    assert!(
        o.stderr.ends_with('\n') && o.stderr.matches('\n').count() == 1,
        "{args:?} {env:?}: stderr should be exactly one line, got {:?}",
        o.stderr
    );
    assert!(
        o.stderr.starts_with("switchboard: "),
        "{args:?} {env:?}: stderr {:?}",
        o.stderr
    );
    assert!(
        o.stderr.contains(needle),
        "{args:?} {env:?}: stderr {:?} does not mention {needle:?}",
        o.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// --help and --version
// ---------------------------------------------------------------------------------------------

#[test]
fn help_lists_every_flag_with_its_default_and_env_var() {
    let o = run_cli(&["--help"], &[]);
    assert!(o.status.success(), "--help: {o:?}");
    assert!(
        o.stderr.is_empty(),
        "--help wrote to stderr: {:?}",
        o.stderr
    );
    let lines: Vec<&str> = o.stdout.lines().collect();

    for (flag, default) in documented_flags() {
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("--{flag} ")))
            .unwrap_or_else(|| panic!("--help does not list --{flag}:\n{}", o.stdout));
        let text = lines.get(at + 1).copied().unwrap_or_default();
        assert!(
            text.contains(&format!("[default: {default}]")),
            "--{flag}: default {default:?} not shown in {text:?}"
        );
        assert!(
            text.contains(&format!("[env: {}]", env_var(flag))),
            "--{flag}: env var {} not shown in {text:?}",
            env_var(flag)
        );
    }
    // Nothing listed is missing its default or variable either.
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.trim_start().strip_prefix("--") else {
            continue;
        };
        let name = name.split_whitespace().next().unwrap_or_default();
        if name == "help" || name == "version" {
            continue;
        }
        let text = lines.get(i + 1).copied().unwrap_or_default();
        assert!(
            text.contains("[default: ") && text.contains(&format!("[env: {}]", env_var(name))),
            "--{name} is listed without its default or env var: {text:?}"
        );
    }

    let short = run_cli(&["-h"], &[]);
    assert!(short.status.success());
    assert_eq!(short.stdout, o.stdout, "-h and --help differ");
}

#[test]
fn version_exits_0() {
    for flag in ["--version", "-V"] {
        let o = run_cli(&[flag], &[]);
        assert!(o.status.success(), "{flag}: {o:?}");
        assert_eq!(
            o.stdout.trim(),
            format!("switchboard {}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_flags_and_values_exit_2_with_one_line() {
    // Each case starts with a valid --listen on port 0, so a refusal that wrongly starts the
    // server binds nothing fixed (and `run_cli` fails it at the deadline).
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unknown flag --bogus"),
        (&["--bogus=1"], "unknown flag --bogus"),
        (&["-x"], "unexpected argument"),
        (&["stray"], "unexpected argument"),
        (&["--workers"], "needs a value"),
        (&["--workers", "0"], "out of range"),
        (&["--workers", "1025"], "out of range"),
        (&["--workers", "two"], "not a whole number"),
        (&["--workers", "-1"], "not a whole number"),
        (&["--workers=1", "--workers=2"], "more than once"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--max-header-bytes", "255"], "out of range"),
        (&["--max-header-bytes", "1048577"], "out of range"),
        (&["--max-message-bytes", "124"], "out of range"),
        (&["--max-message-bytes", "2147483649"], "out of range"),
        (&["--max-outbound-bytes", "1023"], "out of range"),
        (&["--ping-interval", "0"], "--ping-interval"),
        (&["--ping-interval", "1.5"], "not a whole number"),
        (&["--idle-timeout", "86401"], "out of range"),
        (&["--handshake-timeout", "-1"], "--handshake-timeout"),
        (&["--close-timeout", ""], "--close-timeout"),
        (&["--shutdown-timeout", "soon"], "--shutdown-timeout"),
        (&["--poll-timeout", "0"], "--poll-timeout"),
        (&["--history-size", "1000001"], "out of range"),
        (&["--history-ttl", "0"], "--history-ttl"),
        (&["--max-subscriptions", "0"], "out of range"),
        (&["--publish-token", ""], "--publish-token"),
        (&["--publish-token", "   "], "--publish-token"),
        (&["--allowed-origin", ""], "--allowed-origin"),
        (&["--subprotocol", " "], "--subprotocol"),
        (&["--log-level", "loud"], "--log-level"),
        (&["--listen", "localhost:80"], "not an IP:PORT"),
        (&["--listen", "127.0.0.1"], "not an IP:PORT"),
        (
            &["--ping-interval", "5", "--idle-timeout", "5"],
            "must be longer",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        assert_refused(&all, &[], needle);
    }
}

#[test]
fn an_invalid_value_from_the_environment_exits_2_with_one_line() {
    // Every single-valued flag, through its variable. (Empty items of the repeatable flags'
    // comma lists are skipped, so those are checked by what they do, below.)
    let cases: &[(&str, &str)] = &[
        ("listen", "nope"),
        ("workers", "0"),
        ("max-connections", "lots"),
        ("max-header-bytes", "1"),
        ("max-message-bytes", "1"),
        ("max-outbound-bytes", "1"),
        ("ping-interval", "0"),
        ("idle-timeout", "0"),
        ("handshake-timeout", "x"),
        ("close-timeout", "0"),
        ("shutdown-timeout", "0"),
        ("poll-timeout", "-5"),
        ("history-size", "-1"),
        ("history-ttl", "0"),
        ("max-subscriptions", "0"),
        ("publish-token", ""),
        ("log-level", "LOUD"),
    ];
    for (flag, value) in cases {
        let var = env_var(flag);
        // The listen address itself must come from the environment in its own case.
        let args: &[&str] = if *flag == "listen" {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        assert_refused(args, &[(&var, value)], &format!("--{flag}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Flags from the environment, and precedence
// ---------------------------------------------------------------------------------------------

/// Reads the 503 an over-capacity connection gets right after accept.
fn expect_503(addr: std::net::SocketAddr) {
    let mut stream = tcp(addr);
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_eq!(resp.status, 503, "expected 503 at capacity, got {resp:?}");
    assert!(
        resp.header("retry-after").is_some(),
        "503 without Retry-After"
    );
}

#[test]
fn max_connections_from_the_environment() {
    let server = Server::start_with_env(&[], &[("SWITCHBOARD_MAX_CONNECTIONS", "1")]);
    let mut first = Client::connect(server.addr(), "/echo");
    expect_503(server.addr());
    first.send_text("the one");
    first.expect_text("the one");
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let server = Server::start_with_env(
        &["--max-connections", "2"],
        &[("SWITCHBOARD_MAX_CONNECTIONS", "1")],
    );
    let mut a = Client::connect(server.addr(), "/echo");
    let mut b = Client::connect(server.addr(), "/echo");
    expect_503(server.addr());
    a.send_text("a");
    a.expect_text("a");
    b.send_text("b");
    b.expect_text("b");
    drop((a, b));

    // Even an invalid environment value is ignored when the flag is given.
    let server = Server::start_with_env(&["--workers", "1"], &[("SWITCHBOARD_WORKERS", "zero")]);
    assert_eq!(metric(server.addr(), "switchboard_workers"), 1.0);

    // A repeatable flag given on the command line replaces the environment's list.
    let server = Server::start_with_env(
        &["--subprotocol", "chat"],
        &[("SWITCHBOARD_SUBPROTOCOL", "mqtt")],
    );
    let c = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: mqtt, chat"],
    );
    assert_eq!(c.response.header("sec-websocket-protocol"), Some("chat"));
}

#[test]
fn workers_from_the_environment() {
    let server = Server::start_with_env(&[], &[("SWITCHBOARD_WORKERS", "3")]);
    assert_eq!(metric(server.addr(), "switchboard_workers"), 3.0);
}

#[test]
fn listen_from_the_environment() {
    let mut cmd = switchboard_command();
    cmd.env("SWITCHBOARD_LISTEN", "127.0.0.1:0");
    let server = Server::start_command(cmd);
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);

    // The command line's address wins over an unusable one in the environment.
    let server = Server::start_with_env(&[], &[("SWITCHBOARD_LISTEN", "192.0.2.1:1")]);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);
}

#[test]
fn subprotocols_from_the_environment() {
    let server = Server::start_with_env(&[], &[("SWITCHBOARD_SUBPROTOCOL", "chat")]);
    let mut c = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: superchat, chat"],
    );
    assert_eq!(c.response.header("sec-websocket-protocol"), Some("chat"));
    c.send_text("negotiated");
    c.expect_text("negotiated");

    // A comma list, in the server's order of preference.
    let server = Server::start_with_env(&[], &[("SWITCHBOARD_SUBPROTOCOL", "mqtt, chat")]);
    let c = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: chat, mqtt"],
    );
    assert_eq!(c.response.header("sec-websocket-protocol"), Some("mqtt"));
    let c = Client::connect_with(server.addr(), "/echo", &["Sec-WebSocket-Protocol: chat"]);
    assert_eq!(c.response.header("sec-websocket-protocol"), Some("chat"));
}

#[test]
fn empty_items_of_a_variable_list_are_skipped() {
    // A trailing comma or a doubled one in a variable is not an (invalid) empty item; on the
    // command line an empty item is refused (unit tests in config.rs).
    let mut cmd = switchboard_command();
    cmd.env("SWITCHBOARD_LISTEN", "127.0.0.1:0,");
    let server = Server::start_command(cmd);
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);

    let server = Server::start_with_env(&[], &[("SWITCHBOARD_SUBPROTOCOL", ",mqtt,, chat,")]);
    let c = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: chat, mqtt"],
    );
    assert_eq!(c.response.header("sec-websocket-protocol"), Some("mqtt"));
}

#[test]
fn allowed_origins_from_the_environment() {
    let server = Server::start_with_env(
        &[],
        &[(
            "SWITCHBOARD_ALLOWED_ORIGIN",
            "http://a.example, http://b.example",
        )],
    );
    let mut c = Client::connect_with(server.addr(), "/echo", &["Origin: http://b.example"]);
    c.send_text("allowed");
    c.expect_text("allowed");
    let (req, _key) = upgrade_request("/echo", &["Origin: http://c.example"]);
    assert_error_response(server.addr(), req.as_bytes(), 403);
}

#[test]
fn size_limits_from_the_environment() {
    let server = Server::start_with_env(
        &[],
        &[
            ("SWITCHBOARD_MAX_HEADER_BYTES", "1024"),
            ("SWITCHBOARD_MAX_MESSAGE_BYTES", "200"),
        ],
    );
    let filler = format!("X-Filler: {}", "f".repeat(2000));
    let (req, _key) = upgrade_request("/echo", &[&filler]);
    assert_error_response(server.addr(), req.as_bytes(), 431);

    let mut c = Client::connect(server.addr(), "/echo");
    c.send_binary(&[1; 200]);
    c.expect_binary(&[1; 200]);
    c.send_binary(&[1; 201]);
    c.expect_fail(1009);
}

#[test]
fn timeouts_from_the_environment() {
    let server = Server::start_with_env(
        &[],
        &[
            ("SWITCHBOARD_HANDSHAKE_TIMEOUT", "1"),
            ("SWITCHBOARD_PING_INTERVAL", "1"),
            ("SWITCHBOARD_IDLE_TIMEOUT", "3"),
            ("SWITCHBOARD_POLL_TIMEOUT", "1"),
        ],
    );
    let addr = server.addr();

    // A connection that sends nothing is dropped at the handshake timeout (the default is
    // 10 s, past this read timeout).
    let mut idle = tcp(addr);
    assert_closed(&mut idle, &[]);

    // A silent WebSocket is pinged after a second (the default is 30 s).
    let mut c = Client::connect(addr, "/echo");
    let f = c.read_frame_full();
    assert_eq!(f.opcode, OP_PING, "expected a ping, got {}", describe(&f));

    // A held poll is answered, empty, at the poll timeout (the default is 25 s).
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("t", &serde_json::json!("x")), 1);
    let resp = http.get("/poll?channel=t&since=1");
    assert_eq!(resp.status, 200, "{resp:?}");
    let (msgs, _cursor) = poll_reply(&resp);
    assert!(msgs.is_empty(), "timed-out poll: {msgs:?}");
}

#[test]
fn history_settings_from_the_environment() {
    let server = Server::start_with_env(
        &[],
        &[
            ("SWITCHBOARD_HISTORY_SIZE", "2"),
            ("SWITCHBOARD_HISTORY_TTL", "1"),
        ],
    );
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    for i in 0..5 {
        http.publish_json("h", &serde_json::json!(i));
    }
    let kept = |http: &mut HttpConn| {
        let resp = http.get("/history/h");
        assert_eq!(resp.status, 200, "{resp:?}");
        json_body(&resp)["messages"]
            .as_array()
            .expect("history messages")
            .len()
    };
    assert_eq!(kept(&mut http), 2, "history size 2 from the environment");
    // Expired after the one-second TTL (the default is 300 s).
    poll_until(Duration::from_secs(10), "history to expire", || {
        (kept(&mut http) == 0).then_some(())
    });
}

#[test]
fn channel_settings_from_the_environment() {
    let server = Server::start_with_env(
        &[],
        &[
            ("SWITCHBOARD_MAX_SUBSCRIPTIONS", "1"),
            ("SWITCHBOARD_PUBLISH_TOKEN", "s3cret"),
        ],
    );
    let addr = server.addr();
    let (req, _key) = upgrade_request("/ws?channel=a&channel=b", &[]);
    assert_error_response(addr, req.as_bytes(), 400);
    let mut sub = ws_connect(addr, "channel=a");
    assert_eq!(sub.read_json()["type"], "subscribed");

    let mut http = HttpConn::connect(addr);
    let resp = http.request(
        "POST",
        "/publish/a",
        &["Content-Type: application/json"],
        b"1",
    );
    assert_api_error(&resp, 401, "unauthorized");
    let resp = http.request(
        "POST",
        "/publish/a",
        &[
            "Content-Type: application/json",
            "Authorization: Bearer s3cret",
        ],
        b"1",
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let (_id, m) = sub.read_message_id("a");
    assert_eq!(m["data"], 1);
}

#[test]
fn log_level_from_the_environment() {
    let server = Server::start_with_env(&[], &[("SWITCHBOARD_LOG_LEVEL", "debug")]);
    // A refused request is logged at debug level only.
    let (req, _key) = upgrade_request("/nowhere", &[]);
    assert_error_response(server.addr(), req.as_bytes(), 404);
    poll_until(IO_TIMEOUT, "a DEBUG line in the logs", || {
        server.logs().contains(" DEBUG ").then_some(())
    });
}
