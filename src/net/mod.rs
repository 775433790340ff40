//! The event loop: the only code that touches client sockets and epoll.
pub mod conn;
pub mod listener;
pub mod notify;
pub mod server;
pub mod sys;
pub mod timer;
pub mod token;
pub mod worker;
pub mod write;
