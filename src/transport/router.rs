//! Which handler a request goes to. WebSocket routes upgrade; the rest answer plain HTTP.

use crate::error::HandshakeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// WebSocket: echo every message back (conformance and benchmarks).
    Echo,
    /// WebSocket: the channel protocol (JSON ops, or raw payloads with `format=raw`).
    Ws,
    /// `GET /sse`: Server-Sent Events stream.
    Sse,
    /// `GET /poll`: long-polling.
    Poll,
    /// `GET /`: the demo page.
    Demo,
    /// `GET /healthz`: liveness probe.
    Healthz,
    /// `GET /metrics`: Prometheus text format.
    Metrics,
    /// `POST /publish/{channel}`.
    Publish,
    /// `GET /history/{channel}`.
    History,
    /// `GET /presence/{channel}`.
    Presence,
    /// `GET /presence?user=..`: which of these users are online.
    PresenceBatch,
    /// `GET /users/{user}`: where the user's connections are.
    UserInfo,
    /// `POST /users/{user}/send`: a direct message to the user's connections.
    UserSend,
    /// `POST /users/{user}/disconnect`: close the user's connections.
    UserDisconnect,
}

impl Route {
    /// Whether the route is reached by a WebSocket upgrade.
    pub fn is_websocket(self) -> bool {
        matches!(self, Route::Echo | Route::Ws)
    }

    /// Whether a connection on this route, when open, is a held request: a long-poll, or an
    /// API call waiting for the engine's answer (requests pipelined behind it wait).
    pub fn is_held(self) -> bool {
        matches!(
            self,
            Route::Poll
                | Route::Publish
                | Route::History
                | Route::Presence
                | Route::PresenceBatch
                | Route::UserInfo
                | Route::UserSend
                | Route::UserDisconnect
        )
    }
}

/// Maps method and path to a route and its path parameter (the channel): 404 for an unknown
/// path, 405 for a known path with a method it does not take.
pub fn route<'p>(method: &str, path: &'p str) -> Result<(Route, &'p str), HandshakeError> {
    let (route, param, methods): (Route, &str, &[&str]) = match path {
        "/echo" => (Route::Echo, "", &["GET"]),
        "/ws" => (Route::Ws, "", &["GET"]),
        "/" => (Route::Demo, "", &["GET", "HEAD"]),
        "/sse" => (Route::Sse, "", &["GET"]),
        "/poll" => (Route::Poll, "", &["GET", "HEAD"]),
        "/healthz" => (Route::Healthz, "", &["GET", "HEAD"]),
        "/metrics" => (Route::Metrics, "", &["GET", "HEAD"]),
        "/presence" => (Route::PresenceBatch, "", &["GET", "HEAD"]),
        _ if path.starts_with("/users/") => {
            let rest = path.strip_prefix("/users/").unwrap_or_default();
            match rest.split_once('/') {
                None if !rest.is_empty() => (Route::UserInfo, rest, &["GET", "HEAD"]),
                Some((u, "send")) if !u.is_empty() => (Route::UserSend, u, &["POST"]),
                Some((u, "disconnect")) if !u.is_empty() => (Route::UserDisconnect, u, &["POST"]),
                _ => return Err(HandshakeError::NotFound),
            }
        }
        _ => match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
            Some(("publish", ch)) if !ch.is_empty() => (Route::Publish, ch, &["POST"]),
            Some(("history", ch)) if !ch.is_empty() => (Route::History, ch, &["GET", "HEAD"]),
            Some(("presence", ch)) if !ch.is_empty() => (Route::Presence, ch, &["GET", "HEAD"]),
            _ => return Err(HandshakeError::NotFound),
        },
    };
    // CORS preflight: any known path.
    if methods.contains(&method) || method == "OPTIONS" {
        Ok((route, param))
    } else {
        Err(HandshakeError::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/echo"), Ok((Route::Echo, "")));
        assert_eq!(route("GET", "/ws"), Ok((Route::Ws, "")));
        assert_eq!(
            route("POST", "/echo"),
            Err(HandshakeError::MethodNotAllowed)
        );
        assert_eq!(route("HEAD", "/healthz"), Ok((Route::Healthz, "")));
        assert_eq!(
            route("POST", "/publish/room:1"),
            Ok((Route::Publish, "room:1"))
        );
        assert_eq!(
            route("GET", "/publish/room"),
            Err(HandshakeError::MethodNotAllowed)
        );
        assert_eq!(route("POST", "/publish/"), Err(HandshakeError::NotFound));
        assert_eq!(route("GET", "/history/a"), Ok((Route::History, "a")));
        assert_eq!(route("GET", "/presence/a"), Ok((Route::Presence, "a")));
        assert_eq!(route("GET", "/presence"), Ok((Route::PresenceBatch, "")));
        assert_eq!(route("GET", "/echo/"), Err(HandshakeError::NotFound));
        assert_eq!(route("GET", "/"), Ok((Route::Demo, "")));
        assert_eq!(route("GET", "/sse"), Ok((Route::Sse, "")));
        assert_eq!(route("GET", "/poll"), Ok((Route::Poll, "")));
        assert_eq!(route("OPTIONS", "/publish/a"), Ok((Route::Publish, "a")));
        assert_eq!(route("GET", "/nope"), Err(HandshakeError::NotFound));
        assert_eq!(route("GET", "/users/al"), Ok((Route::UserInfo, "al")));
        assert_eq!(route("POST", "/users/al/send"), Ok((Route::UserSend, "al")));
        assert_eq!(
            route("POST", "/users/al/disconnect"),
            Ok((Route::UserDisconnect, "al"))
        );
        assert_eq!(
            route("GET", "/users/al/send"),
            Err(HandshakeError::MethodNotAllowed)
        );
        assert_eq!(route("GET", "/users/"), Err(HandshakeError::NotFound));
        assert_eq!(
            route("POST", "/users/al/other"),
            Err(HandshakeError::NotFound)
        );
    }
}
