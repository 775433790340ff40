//! Which handler a request goes to. WebSocket routes upgrade; the rest answer plain HTTP.
//! New transports (`/ws`, `/sse`, `/poll`) and the HTTP API slot in here.

use crate::error::HandshakeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// WebSocket: echo every message back (conformance and benchmarks).
    Echo,
    /// Plain HTTP: liveness probe.
    Healthz,
}

impl Route {
    /// Whether the route is reached by a WebSocket upgrade.
    pub fn is_websocket(self) -> bool {
        matches!(self, Route::Echo)
    }
}

/// Maps method and path to a route: 404 for an unknown path, 405 for a known path with a
/// method it does not take.
pub fn route(method: &str, path: &str) -> Result<Route, HandshakeError> {
    let (route, methods): (Route, &[&str]) = match path {
        "/echo" => (Route::Echo, &["GET"]),
        "/healthz" => (Route::Healthz, &["GET", "HEAD"]),
        _ => return Err(HandshakeError::NotFound),
    };
    if methods.contains(&method) {
        Ok(route)
    } else {
        Err(HandshakeError::MethodNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/echo"), Ok(Route::Echo));
        assert_eq!(
            route("POST", "/echo"),
            Err(HandshakeError::MethodNotAllowed)
        );
        assert_eq!(route("HEAD", "/healthz"), Ok(Route::Healthz));
        assert_eq!(route("GET", "/echo/"), Err(HandshakeError::NotFound));
        assert_eq!(route("GET", "/"), Err(HandshakeError::NotFound));
    }
}
