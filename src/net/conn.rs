//! A client connection as the event loop holds it: its socket, the generation its mio token
//! carries, and its protocol state (owned by the transports).

use mio::net::TcpStream;

use crate::transport::conn::ConnState;

#[derive(Debug)]
pub struct Conn {
    pub socket: TcpStream,
    /// Generation of this slot, carried in the mio token.
    pub gen: u32,
    pub st: ConnState,
}

impl Conn {
    pub fn new(socket: TcpStream, gen: u32, now: u32) -> Self {
        Conn {
            socket,
            gen,
            st: ConnState::new(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_stays_small() {
        // The per-idle-connection budget is 256 bytes of RSS in total; the slab entry is the
        // bulk of it. 80 in a debug build (mio's sockets carry a selector id there), 64 in
        // release; the last 8 are the client address the per-address limits count.
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 80, "Conn grew to {size} bytes");
    }
}
