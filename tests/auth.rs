//! Connection tokens against the real server: who gets in (401 before the upgrade for a
//! missing, expired, early, forged or algorithm-confused token), who they are (`sub`, never
//! `?user=`), what they may do per channel (`forbidden` on /ws, 403 over HTTP), the expiry
//! close and the refresh that avoids it, and the API key.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use common::*;

const SECRET: &str = "a test secret that is at least thirty-two bytes long";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims for `sub` valid for an hour, allowed what `subscribe` and `publish` name.
fn claims(sub: &str, subscribe: &[&str], publish: &[&str]) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "subscribe": subscribe, "publish": publish})
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("an HMAC key"),
    )
    .expect("sign HS256")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("test key")
}

fn signed(alg: Algorithm, private_pem: &str, claims: &Value) -> String {
    let pem = fixture(private_pem);
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => panic!("{alg:?}"),
    }
    .expect("test private key");
    encode(&Header::new(alg), claims, &key).expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn with_secret(extra: &[&str]) -> Server {
    let mut args = vec!["--token-secret", SECRET];
    args.extend(extra);
    Server::start(&args)
}

/// The status and body of an upgrade to `path`.
fn upgrade_status(server: &Server, path: &str, extra: &[&str]) -> (u16, String) {
    let (req, _) = upgrade_request(path, extra);
    let (resp, _, _) = http_exchange(server.addr(), req.as_bytes());
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

#[test]
fn a_good_token_connects_and_every_bad_one_is_refused_before_the_upgrade() {
    let server = with_secret(&[]);
    let good = hs256(&claims("alice", &["*"], &["*"]));
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={good}"), &[]).0,
        101
    );
    let bearer = format!("Authorization: Bearer {good}");
    assert_eq!(upgrade_status(&server, "/ws", &[&bearer]).0, 101);

    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(claims("alice", &["*"], &["*"]).to_string().as_bytes());
    let unsigned = format!("{header}.{body}.");
    let mut forged = hs256(&claims("mallory", &["*"], &["*"]));
    forged.pop();
    forged.push('A');
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", &["*"], &["*"]),
        &EncodingKey::from_secret(b"another secret that is at least thirty-two bytes")
            .expect("an HMAC key"),
    )
    .expect("sign");
    let expired = hs256(&json!({"sub": "alice", "exp": now() - 60, "subscribe": ["*"]}));
    let early = hs256(&json!({"sub": "alice", "exp": now() + 3600, "nbf": now() + 600}));
    let no_exp = hs256(&json!({"sub": "alice", "subscribe": ["*"]}));
    for (what, token) in [
        ("none", ""),
        ("alg none", unsigned.as_str()),
        ("tampered", forged.as_str()),
        ("another key", other_secret.as_str()),
        ("expired", expired.as_str()),
        ("not yet valid", early.as_str()),
        ("no exp", no_exp.as_str()),
        ("garbage", "not.a.token"),
    ] {
        let path = if token.is_empty() {
            "/ws".to_owned()
        } else {
            format!("/ws?token={token}")
        };
        for route in ["/ws", "/sse", "/poll"] {
            let path = path.replacen("/ws", route, 1);
            let path = if path.contains('?') {
                format!("{path}&channel=c")
            } else {
                format!("{path}?channel=c")
            };
            let resp = if route == "/ws" {
                let (req, _) = upgrade_request(&path, &[]);
                http_exchange(server.addr(), req.as_bytes()).0
            } else {
                http_get(server.addr(), &path)
            };
            assert_eq!(resp.status, 401, "{what} on {route}: {resp:?}");
            assert!(
                resp.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer")),
                "{resp:?}"
            );
        }
    }
    assert!(
        metric(
            server.addr(),
            "switchboard_rejected_connections_total{reason=\"unauthorized\"}"
        ) >= 24.0
    );
}

#[test]
fn an_hs256_token_made_with_the_public_key_is_not_taken_for_rs256() {
    let key = format!("{FIXTURES}/rsa_public.pem");
    let server = Server::start(&["--token-public-key", &key]);
    let c = claims("alice", &["*"], &["*"]);
    let rs = signed(Algorithm::RS256, "rsa_private.pem", &c);
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={rs}"), &[]).0,
        101
    );
    // The classic confusion: the public key (known to all) used as an HMAC secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(&fixture("rsa_public.pem")).expect("an HMAC key"),
    )
    .expect("sign");
    let (status, body) = upgrade_status(&server, &format!("/ws?token={confused}"), &[]);
    assert_eq!(status, 401, "{body}");
    // An ES256 token when only an RSA key is configured: refused too.
    let es = signed(Algorithm::ES256, "ec_private.pem", &c);
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={es}"), &[]).0,
        401
    );

    let ec = format!("{FIXTURES}/ec_public.pem");
    let server = Server::start(&["--token-public-key", &ec]);
    assert_eq!(
        upgrade_status(&server, &format!("/ws?token={es}"), &[]).0,
        101
    );
}

#[test]
fn unusable_keys_stop_the_start_with_a_reason() {
    for (flags, says) in [
        (vec!["--token-secret", "short"].as_slice(), "32"),
        (
            &["--token-public-key", "/nonexistent/key.pem"],
            "/nonexistent/key.pem",
        ),
        (
            &[
                "--token-public-key",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/auth/rsa1024_public.pem"
                ),
            ],
            "2048",
        ),
        (&["--token-audience", "x"], "--token-audience"),
    ] {
        let out = switchboard_command()
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .output()
            .expect("run switchboard");
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
}

#[test]
fn the_user_is_the_token_sub_and_never_the_url() {
    let server = with_secret(&[]);
    let alice = hs256(&claims("alice", &["room:*"], &[]));
    let (status, body) = upgrade_status(&server, &format!("/ws?token={alice}&user=bob"), &[]);
    assert_eq!(status, 400, "{body}");
    let mut a = ws_connect(server.addr(), &format!("token={alice}&channel=room:1"));
    assert_eq!(a.read_json()["type"], "subscribed");
    let p = json_body(&http_get(
        server.addr(),
        &format!("/presence/room:1?token={alice}"),
    ));
    assert_eq!(p["users"], json!(["alice"]), "{p}");
}

#[test]
fn rights_decide_channel_by_channel_and_the_connection_stays() {
    let server = with_secret(&[]);
    let t = hs256(&claims("alice", &["room:*"], &["room:1"]));
    let mut c = ws_connect(
        server.addr(),
        &format!("token={t}&channel=room:1&channel=other"),
    );
    let mut got: Vec<Value> = vec![c.read_json(), c.read_json()];
    got.sort_by_key(|v| v["type"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got[0]["code"], "forbidden", "{got:?}");
    assert_eq!(got[1]["type"], "subscribed", "{got:?}");

    for (op, code) in [
        (
            json!({"op":"subscribe","channel":"room:2","ref":1}),
            "subscribed",
        ),
        (
            json!({"op":"subscribe","channel":"secret","ref":2}),
            "forbidden",
        ),
        (
            json!({"op":"publish","channel":"room:1","data":1,"ref":3}),
            "published",
        ),
        (
            json!({"op":"publish","channel":"room:2","data":1,"ref":4}),
            "forbidden",
        ),
        (
            json!({"op":"history","channel":"secret","ref":5}),
            "forbidden",
        ),
        (
            json!({"op":"presence","channel":"secret","ref":6}),
            "forbidden",
        ),
        (
            json!({"op":"history","channel":"room:2","ref":7}),
            "history",
        ),
    ] {
        c.send_json(&op);
        let reply = loop {
            let v = c.read_json();
            if v["type"] != "message" {
                break v;
            }
        };
        let kind = reply["code"].as_str().or(reply["type"].as_str());
        assert_eq!(kind, Some(code), "{op} → {reply}");
        assert_eq!(reply["ref"], op["ref"]);
    }
    // No publish claim at all: nothing may be published.
    let reader = hs256(&json!({"sub": "r", "exp": now() + 60, "subscribe": ["*"]}));
    let mut r = ws_connect(server.addr(), &format!("token={reader}"));
    r.send_json(&json!({"op":"publish","channel":"room:1","data":1}));
    assert_eq!(r.read_json()["code"], "forbidden");

    // A stream names its channels up front: one it may not read is a 403.
    for route in ["/sse", "/poll"] {
        let ok = http_get(server.addr(), &format!("{route}?token={t}&channel=secret"));
        assert_eq!(ok.status, 403, "{route}: {ok:?}");
    }
    let (mut sse, _) = SseStream::connect_live(
        server.addr(),
        &format!("/sse?channel=room:9&token={t}"),
        &[],
    );
    HttpConn::connect(server.addr()).request(
        "POST",
        "/publish/room:9",
        &[&format!(
            "Authorization: Bearer {}",
            hs256(&claims("p", &[], &["*"]))
        )],
        b"hi",
    );
    assert_eq!(sse.next_message().json()["data"], "hi");
    assert!(metric(server.addr(), "switchboard_forbidden_total") >= 5.0);
}

#[test]
fn a_token_expires_with_4001_unless_refreshed() {
    let server = with_secret(&[]);
    // The server allows 5 s of clock leeway after `exp`.
    let exp = now() + 1;
    let short = |sub: &str| hs256(&json!({"sub": sub, "exp": exp, "subscribe": ["*"]}));
    let mut kept = ws_connect(
        server.addr(),
        &format!("token={}&channel=a", short("alice")),
    );
    let mut lost = ws_connect(server.addr(), &format!("token={}&channel=a", short("bob")));
    assert_eq!(kept.read_json()["type"], "subscribed");
    assert_eq!(lost.read_json()["type"], "subscribed");

    // Refused refreshes keep the old token: another user, not later, garbage.
    let mallory = hs256(&json!({"sub": "mallory", "exp": now() + 600, "subscribe": ["*"]}));
    for token in [mallory.as_str(), &short("alice"), "x.y.z"] {
        kept.send_json(&json!({"op":"refresh","token": token, "ref": 1}));
        let e = kept.read_json();
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("unauthorized")),
            "{e}"
        );
    }
    // A later token for the same user, narrower: `a` is no longer allowed and ends.
    let later = now() + 600;
    let fresh = hs256(&json!({"sub": "alice", "exp": later, "subscribe": ["b"]}));
    kept.send_json(&json!({"op":"refresh","token": fresh, "ref": 2}));
    let mut replies = [kept.read_json(), kept.read_json()];
    replies.sort_by_key(|v| v["type"].as_str().unwrap_or_default().to_owned());
    assert_eq!(replies[0], json!({"type":"refreshed","exp":later,"ref":2}));
    assert_eq!(replies[1], json!({"type":"unsubscribed","channel":"a"}));

    // At exp + leeway (about 6 s from the start), longer than one read timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let frame = loop {
        match lost.try_read_frame() {
            Ok(Some(f)) => break f,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(
                    e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut,
                    "{e}"
                )
            }
            other => panic!("no close before the deadline: {other:?}"),
        }
    };
    assert_eq!(frame.close_code(), Some(4001), "{}", describe(&frame));
    // The refreshed connection is still there after the old expiry.
    kept.send_json(&json!({"op":"subscribe","channel":"b","ref":3}));
    assert_eq!(kept.read_json_answering_pings()["type"], "subscribed");
    assert_eq!(
        metric(server.addr(), "switchboard_tokens_expired_total"),
        1.0
    );
    assert_eq!(
        metric(server.addr(), "switchboard_tokens_refreshed_total"),
        1.0
    );
}

#[test]
fn the_api_key_and_user_tokens_guard_the_http_api() {
    let server = with_secret(&["--api-key", "k3y"]);
    let mut http = HttpConn::connect(server.addr());
    let key = "Authorization: Bearer k3y";
    let user = format!(
        "Authorization: Bearer {}",
        hs256(&claims("alice", &["room:*"], &["room:1"]))
    );
    for (method, path, auth, status) in [
        ("POST", "/publish/room:1", None, 401),
        (
            "POST",
            "/publish/room:1",
            Some("Authorization: Bearer wrong"),
            401,
        ),
        ("POST", "/publish/room:1", Some(key), 200),
        ("POST", "/publish/room:1", Some(user.as_str()), 200),
        ("POST", "/publish/room:2", Some(user.as_str()), 403),
        ("GET", "/history/room:2", Some(user.as_str()), 200),
        ("GET", "/history/secret", Some(user.as_str()), 403),
        ("GET", "/presence/secret", Some(user.as_str()), 403),
        ("GET", "/presence/secret", Some(key), 200),
        ("GET", "/presence?user=bob", Some(user.as_str()), 403),
        ("GET", "/users/bob", Some(user.as_str()), 403),
        ("GET", "/users/bob", Some(key), 200),
        ("POST", "/users/bob/send", None, 401),
        ("GET", "/healthz", None, 200),
    ] {
        let extra: Vec<&str> = auth.into_iter().collect();
        let resp = http.request(method, path, &extra, b"x");
        assert_eq!(resp.status, status, "{method} {path} {auth:?}: {resp:?}");
        if status == 401 {
            assert_api_error(&resp, 401, "unauthorized");
        }
        if status == 403 {
            assert_api_error(&resp, 403, "forbidden");
        }
    }
    // Tokens off, API key on: a /ws connection publishes only with the key.
    let server = Server::start(&["--api-key", "k3y"]);
    let mut open = ws_connect(server.addr(), "");
    open.send_json(&json!({"op":"publish","channel":"c","data":1}));
    assert_eq!(open.read_json()["code"], "unauthorized");
    let mut keyed = ws_connect(server.addr(), "token=k3y");
    keyed.send_json(&json!({"op":"publish","channel":"c","data":1}));
    assert_eq!(keyed.read_json()["type"], "published");
}

#[test]
fn an_open_server_on_the_network_is_warned_about() {
    let mut open = Server::start(&["--listen", "0.0.0.0:0"]);
    let closed = with_secret(&["--listen", "0.0.0.0:0"]);
    poll_until(Duration::from_secs(5), "the start-up log", || {
        open.logs().contains("started").then_some(())
    });
    assert!(open.logs().contains("WARNING"), "{}", open.logs());
    assert!(!closed.logs().contains("WARNING"), "{}", closed.logs());
    assert!(
        closed.logs().contains("tokens required (HS256)"),
        "{}",
        closed.logs()
    );
    assert!(open.is_running());
}
