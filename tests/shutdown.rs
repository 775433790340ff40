//! Graceful shutdown: on SIGTERM or SIGINT every open WebSocket gets Close 1001, the server
//! waits for the replies (at most --shutdown-timeout) and exits with status 0.

mod common;

use std::time::Duration;

use common::*;

/// Generous upper bound for the process to exit once its clients have answered.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

fn two_clients_get_1001_then_exit_0(signal: libc::c_int) {
    // A shutdown timeout well past EXIT_DEADLINE: once every client has answered and closed,
    // the server must exit without waiting it out.
    let mut server = Server::start(&["--shutdown-timeout", "30"]);
    let mut a = Client::connect(server.addr(), "/echo");
    let mut b = Client::connect(server.addr(), "/echo");
    a.send_text("a");
    a.expect_text("a");
    b.send_text("b");
    b.expect_text("b");

    send_signal(&server, signal);

    for client in [&mut a, &mut b] {
        client.expect_close(1001);
        client.send_close(1001, "");
        client.expect_eof();
    }
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running after both clients answered the close and disconnected");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_0() {
    two_clients_get_1001_then_exit_0(libc::SIGTERM);
}

#[test]
fn sigint_closes_clients_with_1001_and_exits_0() {
    two_clients_get_1001_then_exit_0(libc::SIGINT);
}

#[test]
fn sigterm_without_connections_exits_0() {
    let mut server = Server::start(&[]);
    send_signal(&server, libc::SIGTERM);
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("idle server still running after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn shutdown_does_not_wait_forever_for_a_silent_client() {
    let mut server = Server::start(&["--shutdown-timeout", "1"]);
    let mut polite = Client::connect(server.addr(), "/echo");
    let mut silent = Client::connect(server.addr(), "/echo");

    send_signal(&server, libc::SIGTERM);

    polite.expect_close(1001);
    polite.send_close(1001, "");
    polite.expect_eof();

    // The silent client reads the Close but never answers.
    silent.expect_close(1001);
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server kept waiting for a client that never answered its close");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    silent.expect_eof();
}

#[test]
fn shutdown_closes_a_client_in_the_middle_of_a_fragmented_message() {
    let mut server = Server::start(&["--shutdown-timeout", "30"]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"half a mess");
    send_signal(&server, libc::SIGTERM);
    c.expect_close(1001);
    c.send_close(1001, "");
    c.expect_eof();
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
