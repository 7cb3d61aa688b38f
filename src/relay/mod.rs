//! The relaying machinery on the event loop (`rt`): the buffer pool, the TCP pumps, connections
//! to the Shadowsocks server and to ss-server's targets. Everything runs on one thread; shared state is `Rc`/`Cell`.

pub mod connect;
pub mod direct;
pub mod names;
pub mod pool;
pub mod tcp;
pub mod upstream;

use crate::proto::{Invalid, SealError};
use core::fmt;
use std::cell::Cell;
use std::io;

/// Why a relayed connection ended early; each becomes one log line. "Plain" is the side
/// that speaks plaintext (the SOCKS5 client, or ss-server's target), "sealed" the AEAD side.
#[derive(Debug)]
pub enum RelayError {
    PlainIo(io::Error),
    SealedIo(io::Error),
    /// The sealed stream failed to decrypt or broke the framing rules.
    Sealed(Invalid),
    /// The sealed side closed in the middle of a chunk.
    Truncated,
    /// No traffic in either direction for the idle timeout.
    Idle,
    /// Our own data could not be sealed (a bug, not the peer's doing); nothing unsealed left.
    Seal(SealError),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::PlainIo(e) | RelayError::SealedIo(e) => e.fmt(f),
            RelayError::Sealed(why) => why.fmt(f),
            RelayError::Truncated => f.write_str("stream closed mid-chunk (truncated)"),
            RelayError::Idle => f.write_str("idle timeout"),
            RelayError::Seal(why) => why.fmt(f),
        }
    }
}

/// Bytes on the sealed side (what the Shadowsocks peer sees) of the connections counted here.
#[derive(Default)]
pub struct Traffic {
    pub sent: Cell<u64>,
    pub received: Cell<u64>,
}

impl Traffic {
    fn add(&self, counter: &Cell<u64>, n: usize) {
        counter.set(counter.get().wrapping_add(n as u64));
    }
}
