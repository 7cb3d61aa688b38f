//! Async glue on async-io: the buffer pool, TCP pumps, UDP associations and outbound
//! connections. Everything runs on one thread; shared state is `Rc`/`Cell`.

pub mod connect;
pub mod limit;
pub mod pool;
pub mod tcp;
pub mod udp;

use crate::proto::Invalid;
use core::fmt;
use std::io;

/// Why a relayed connection ended early; each becomes one log line.
#[derive(Debug)]
pub enum RelayError {
    ClientIo(io::Error),
    ServerIo(io::Error),
    /// The server's stream failed to decrypt or broke the framing rules.
    Server(Invalid),
    /// The server closed in the middle of a chunk.
    Truncated,
    /// No traffic in either direction for the idle timeout.
    Idle,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::ClientIo(e) => write!(f, "client: {e}"),
            RelayError::ServerIo(e) => write!(f, "server: {e}"),
            RelayError::Server(why) => write!(f, "server stream: {why}"),
            RelayError::Truncated => f.write_str("server closed mid-chunk (truncated stream)"),
            RelayError::Idle => f.write_str("idle timeout"),
        }
    }
}

impl From<io::Error> for RelayError {
    fn from(e: io::Error) -> Self {
        RelayError::ClientIo(e)
    }
}
