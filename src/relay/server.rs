//! Server-side pieces of ss-server shared by TCP and UDP: the replay filter, the ban list, the
//! target policy and resolver, and the probe-resistant reading of a connection's first chunk.

use super::pool::{Block, Pool, Spill};
use super::tcp::Pending;
use crate::dns::Resolver;
use crate::policy::ban::Ban;
use crate::policy::targets::target_allowed;
use crate::proto::address::Address;
use crate::proto::cipher::MAX_SALT_LEN;
use crate::proto::replay::ReplayFilter;
use crate::proto::tcp::{Decryptor, HEADER_LEN};
use crate::proto::{Invalid, ParseError};
use crate::rt::{Async, Timer};
use crate::sys::{self, OutboundOpts};
use futures_lite::{future, AsyncReadExt};
use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// State only the server has, shared by its TCP and UDP sides.
pub struct ServerState {
    pub resolver: Rc<Resolver>,
    pub replay: RefCell<ReplayFilter>,
    /// UDP has a filter of its own: every datagram brings a salt, and at a high packet rate a
    /// shared filter would forget TCP salts within minutes.
    pub replay_udp: RefCell<ReplayFilter>,
    pub ban: RefCell<Ban>,
    pub allow_private: bool,
    /// Outbound options per target family (the source address differs).
    pub out_v4: OutboundOpts,
    pub out_v6: OutboundOpts,
}

impl ServerState {
    pub fn outbound(&self, target: &SocketAddr) -> &OutboundOpts {
        if target.is_ipv4() {
            &self.out_v4
        } else {
            &self.out_v6
        }
    }

    pub fn banned(&self, ip: IpAddr) -> bool {
        self.ban.borrow_mut().is_banned(ip, Instant::now())
    }

    /// Counts an authentication failure; logs once when it starts a ban.
    pub fn failed(&self, ip: IpAddr) {
        if self.ban.borrow_mut().record_failure(ip, Instant::now()) {
            log::warn!("{ip}: too many failed authentications, refusing it for a while");
        }
    }

    /// Resolves `target` to the first address policy allows.
    pub async fn resolve(&self, target: &Address) -> Result<SocketAddr, String> {
        let candidates = match target {
            Address::Ip(sa) => vec![*sa],
            Address::Domain(name, port) => self
                .resolver
                .resolve(name, *port)
                .await
                .map_err(|e| e.to_string())?,
        };
        candidates
            .into_iter()
            .find(|sa| target_allowed(sa.ip(), self.allow_private))
            .ok_or_else(|| {
                "target is a loopback/private/link-local address (allow with --allow-private-targets)"
                    .to_string()
            })
    }
}

/// Why the first chunk did not yield a target.
pub enum FirstError {
    /// Wrong key, garbage or a replayed salt: the probe path.
    Auth(&'static str),
    /// An authenticated client sent something unusable.
    Request(ParseError),
    Io(io::Error),
    Closed,
    TimedOut,
}

/// The decrypted first chunk, still in the block it arrived in.
pub struct First {
    pub target: Address,
    pub block: Block,
    /// Plaintext after the address: the client's first payload.
    pub early: Range<usize>,
    /// Ciphertext received past the first chunk.
    pub rest: Range<usize>,
}

/// Reads until the first chunk decrypts, checks its salt against the replay filter and parses
/// the target address at its start.
pub async fn read_first(
    pool: &Rc<Pool>,
    srv: &ServerState,
    client: &Async<TcpStream>,
    dec: &mut Decryptor,
) -> Result<First, FirstError> {
    // Until the first chunk's length authenticates, read only the salt and the sealed length,
    // into a small buffer: a prober without the key must not be able to hold a pool block.
    let mut head = [0u8; MAX_SALT_LEN + HEADER_LEN];
    let head = &mut head[..dec.element_len() + HEADER_LEN];
    (&*client)
        .read_exact(head)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => FirstError::Closed,
            _ => FirstError::Io(e),
        })?;
    let mut at = 0;
    while at < head.len() {
        match dec.decode(&mut head[at..]) {
            Ok(step) => at += step.consumed,
            Err(e) => return Err(auth_error(e)),
        }
    }
    // Only a key holder gets here. Even so, take a block only once the whole first chunk is
    // queued, so slow or stalled clients cannot pin the pool while it trickles in.
    // Usually the whole chunk came with the salt: then no SO_RCVLOWAT round trip is needed.
    let need = dec.element_len();
    if sys::bytes_queued(client.get_ref()).map_err(FirstError::Io)? < need {
        let lowat = sys::set_recv_lowat(client.get_ref(), need).is_ok();
        client.queued(need).await.map_err(FirstError::Io)?;
        if lowat {
            let _ = sys::set_recv_lowat(client.get_ref(), 1);
        }
    }
    let mut block = pool.take().await;
    let mut filled = 0;
    let mut start = 0;
    loop {
        let room = block.len() - filled;
        let n = match client.try_read_with(|mut s| s.read(&mut block[filled..])) {
            Ok(0) => return Err(FirstError::Closed),
            Ok(n) => {
                if n < room {
                    // Everything queued was read: the relay waits for more, no read first.
                    client.drained();
                }
                n
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                client.readable().await.map_err(FirstError::Io)?;
                continue;
            }
            Err(e) => return Err(FirstError::Io(e)),
        };
        filled += n;
        loop {
            match dec.decode(&mut block[start..filled]) {
                Ok(step) if step.plain.is_empty() => start += step.consumed,
                Ok(step) => {
                    let plain = start + step.plain.start..start + step.plain.end;
                    start += step.consumed;
                    let replayed = dec
                        .salt()
                        .is_some_and(|salt| srv.replay.borrow_mut().check_and_insert(salt));
                    if replayed {
                        return Err(FirstError::Auth(
                            "replayed salt (a recorded connection sent again)",
                        ));
                    }
                    let (target, used) =
                        Address::parse(&block[plain.clone()]).map_err(FirstError::Request)?;
                    return Ok(First {
                        target,
                        block,
                        early: plain.start + used..plain.end,
                        rest: start..filled,
                    });
                }
                Err(ParseError::NeedMore(_)) => break,
                Err(e) => return Err(auth_error(e)),
            }
        }
        client.readable().await.map_err(FirstError::Io)?;
    }
}

/// A first chunk's leftovers while the target is resolved and connected, which can take
/// seconds: copied out of the pool when the spill budget allows, so the pool keeps serving
/// established connections.
pub enum Parked {
    Spilled {
        bytes: Spill,
        early: usize,
    },
    InBlock {
        block: Block,
        early: Range<usize>,
        rest: Range<usize>,
    },
}

impl First {
    pub fn park(self, pool: &Rc<Pool>) -> (Address, Parked) {
        let First {
            target,
            block,
            early,
            rest,
        } = self;
        let parked = match pool.spill_parts(&[&block[early.clone()], &block[rest.clone()]]) {
            Some(bytes) => Parked::Spilled {
                bytes,
                early: early.len(),
            },
            None => Parked::InBlock { block, early, rest },
        };
        (target, parked)
    }
}

impl Parked {
    /// The client's first payload, to write to the target.
    pub fn early(&self) -> &[u8] {
        match self {
            Parked::Spilled { bytes, early } => &bytes[..*early],
            Parked::InBlock { block, early, .. } => &block[early.clone()],
        }
    }

    /// Ciphertext past the first chunk, back in a block for the relay.
    pub async fn into_pending(self, pool: &Rc<Pool>) -> Option<Pending> {
        match self {
            Parked::Spilled { bytes, early } if bytes.len() > early => {
                let mut block = pool.take().await;
                let filled = bytes.len() - early;
                block[..filled].copy_from_slice(&bytes[early..]);
                Some(Pending { block, filled })
            }
            Parked::Spilled { .. } => None,
            Parked::InBlock {
                mut block, rest, ..
            } => {
                let filled = rest.len();
                block.copy_within(rest, 0);
                Some(Pending { block, filled })
            }
        }
    }
}

/// How a failure to decode the first chunk is reported: every cause looks the same to the
/// peer, the log says which.
fn auth_error(e: ParseError) -> FirstError {
    match e {
        ParseError::NeedMore(_) => FirstError::Auth("authentication failed (short first chunk)"),
        ParseError::Invalid(Invalid::BadTag) => {
            FirstError::Auth("authentication failed (wrong password or a probe)")
        }
        ParseError::Invalid(_) => FirstError::Auth("authentication failed (invalid chunk)"),
    }
}

/// Reads and drops whatever arrives until nothing has for `timeout`, so a prober learns
/// neither where authentication failed nor how many bytes it took.
pub async fn discard_until_idle(client: &Async<TcpStream>, timeout: Duration) {
    let mut sink = [0u8; 512];
    loop {
        let read = future::or(async { Some((&*client).read(&mut sink).await) }, async {
            Timer::after(timeout).await;
            None
        })
        .await;
        match read {
            Some(Ok(n)) if n > 0 => continue,
            _ => return,
        }
    }
}
