//! TCP relaying between a plaintext socket and an AEAD stream socket.
//!
//! Each direction is a pump that waits for readability *before* borrowing a pool block, reads
//! as much as one block holds, seals or opens it in place, writes it in one call and gives the
//! block back. End of stream is passed on as a FIN (half-close); the pair ends when both
//! directions have ended, on the first error, or after `timeout` without traffic.

use super::pool::{Block, Pool, Spill, BLOCK_SIZE};
use super::RelayError;
use crate::proto::cipher::MAX_SALT_LEN;
use crate::proto::tcp::{Decryptor, Encryptor, HEADER_LEN, MAX_CHUNK, MAX_PAYLOAD, OVERHEAD};
use crate::proto::ParseError;
use async_io::{Async, Timer};
use futures_lite::{future, AsyncWriteExt};
use std::cell::Cell;
use std::io::{self, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where chunk `i` starts in a block. Slot 0 follows the salt, so salt + chunks are contiguous.
const fn chunk_at(i: usize) -> usize {
    MAX_SALT_LEN + i * MAX_CHUNK
}

/// Tracks the last moment either direction moved data.
#[derive(Clone)]
pub struct Activity(Rc<Cell<Instant>>);

impl Activity {
    pub fn new() -> Activity {
        Activity(Rc::new(Cell::new(Instant::now())))
    }
    pub fn touch(&self) {
        self.0.set(Instant::now());
    }
    /// Resolves once `timeout` has passed with no `touch`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let deadline = self.0.get() + timeout;
            if Instant::now() >= deadline {
                return;
            }
            Timer::at(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// Seals `plain_len` bytes of plaintext sitting in the payload slots of `block` into chunks,
/// and returns the range to send (salt included when `with_salt`).
fn seal_block(
    enc: &mut Encryptor,
    block: &mut [u8],
    plain_len: usize,
    with_salt: bool,
) -> (usize, usize) {
    let mut start = chunk_at(0);
    if with_salt {
        let salt = enc.salt();
        start -= salt.len();
        block[start..chunk_at(0)].copy_from_slice(salt);
    }
    let mut end = start;
    let mut left = plain_len;
    let mut i = 0;
    while left > 0 {
        let len = left.min(MAX_PAYLOAD);
        let frame = &mut block[chunk_at(i)..chunk_at(i) + len + OVERHEAD];
        enc.seal_chunk(frame);
        end = chunk_at(i) + len + OVERHEAD;
        left -= len;
        i += 1;
    }
    (start, end)
}

/// Reads into the payload slots of a block, after `skip` bytes already placed in slot 0.
fn read_into_slots(src: &TcpStream, block: &mut [u8], skip: usize) -> io::Result<usize> {
    let (slot0, rest) = block.split_at_mut(chunk_at(1));
    let slot0 = &mut slot0[chunk_at(0) + HEADER_LEN + skip..chunk_at(0) + HEADER_LEN + MAX_PAYLOAD];
    let slot1 = &mut rest[HEADER_LEN..HEADER_LEN + MAX_PAYLOAD];
    let mut src = src;
    src.read_vectored(&mut [IoSliceMut::new(slot0), IoSliceMut::new(slot1)])
}

// readv fills slot 0 completely before slot 1, which is exactly the MAX_PAYLOAD chunking
// `seal_block` applies, so plaintext never has to move.
const _: () = assert!(BLOCK_SIZE >= chunk_at(2));

/// What the sealed side's first write carries besides the salt: `prefix` (a client's target
/// address) and whatever the plain side sends within `wait`, so salt, address and first payload
/// leave in one segment.
pub struct FirstWrite<'a> {
    pub prefix: &'a [u8],
    pub wait: Duration,
}

/// Ciphertext already received on the sealed side but not yet decoded (the server reads the
/// first chunk itself to learn the target).
pub struct Pending {
    pub block: Block,
    pub filled: usize,
}

/// plaintext `src` → sealed `dst`.
pub async fn encrypt_pump(
    src: &Async<TcpStream>,
    dst: &Async<TcpStream>,
    enc: &mut Encryptor,
    first: Option<FirstWrite<'_>>,
    pool: &Rc<Pool>,
    activity: &Activity,
) -> Result<(), RelayError> {
    let mut salt_sent = false;
    if let Some(first) = first {
        let ready = future::or(async { src.readable().await.map(|_| true) }, async {
            Timer::after(first.wait).await;
            Ok(false)
        })
        .await
        .map_err(RelayError::PlainIo)?;
        let mut block = pool.take().await;
        let skip = first.prefix.len().min(MAX_PAYLOAD);
        block[chunk_at(0) + HEADER_LEN..chunk_at(0) + HEADER_LEN + skip]
            .copy_from_slice(&first.prefix[..skip]);
        let mut eof = false;
        let n = if ready {
            match read_into_slots(src.get_ref(), &mut block, skip) {
                Ok(0) => {
                    eof = true;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(RelayError::PlainIo(e)),
            }
        } else {
            0
        };
        if skip + n > 0 {
            let (start, end) = seal_block(enc, &mut block, skip + n, true);
            salt_sent = true;
            send(dst, block, start..end, pool)
                .await
                .map_err(RelayError::SealedIo)?;
        }
        activity.touch();
        if eof {
            let _ = dst.get_ref().shutdown(Shutdown::Write);
            return Ok(());
        }
    }
    loop {
        src.readable().await.map_err(RelayError::PlainIo)?;
        let mut block = pool.take().await;
        let n = match read_into_slots(src.get_ref(), &mut block, 0) {
            Ok(0) => {
                let _ = dst.get_ref().shutdown(Shutdown::Write);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RelayError::PlainIo(e)),
        };
        let (start, end) = seal_block(enc, &mut block, n, !salt_sent);
        salt_sent = true;
        send(dst, block, start..end, pool)
            .await
            .map_err(RelayError::SealedIo)?;
        activity.touch();
    }
}

/// sealed `src` → plaintext `dst`. Between reads, the ciphertext of a partly received chunk
/// stays in its block, unless the plaintext before it could not be written at once: then both
/// are spilled, the block goes back to the pool, and the partial chunk is restored into a
/// block when more ciphertext arrives.
pub async fn decrypt_pump(
    src: &Async<TcpStream>,
    dst: &Async<TcpStream>,
    dec: &mut Decryptor,
    pending: Option<Pending>,
    pool: &Rc<Pool>,
    activity: &Activity,
) -> Result<(), RelayError> {
    let mut held: Option<Block> = None;
    let mut carried: Option<(Spill, usize)> = None;
    let mut filled = 0;
    // Pending bytes may already hold whole chunks: decode them before reading more.
    let mut fresh = false;
    if let Some(p) = pending.filter(|p| p.filled > 0) {
        filled = p.filled;
        held = Some(p.block);
        fresh = true;
    }
    loop {
        let mut block = match held.take() {
            Some(b) => {
                if !fresh {
                    src.readable().await.map_err(RelayError::SealedIo)?;
                }
                b
            }
            None => {
                src.readable().await.map_err(RelayError::SealedIo)?;
                let mut b = pool.take().await;
                if let Some((spill, at)) = carried.take() {
                    filled = spill.len() - at;
                    b[..filled].copy_from_slice(&spill[at..]);
                }
                b
            }
        };
        if !fresh {
            let n = match src.get_ref().read(&mut block[filled..]) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    held = Some(block);
                    continue;
                }
                Err(e) => return Err(RelayError::SealedIo(e)),
            };
            if n == 0 {
                if filled > 0 || !dec.at_boundary() {
                    return Err(RelayError::Truncated);
                }
                let _ = dst.get_ref().shutdown(Shutdown::Write);
                return Ok(());
            }
            filled += n;
        }
        fresh = false;
        let (mut start, mut out) = (0, 0);
        loop {
            match dec.decode(&mut block[start..filled]) {
                Ok(step) => {
                    let len = step.plain.len();
                    block.copy_within(start + step.plain.start..start + step.plain.end, out);
                    out += len;
                    start += step.consumed;
                }
                Err(ParseError::NeedMore(_)) => break,
                Err(ParseError::Invalid(why)) => return Err(RelayError::Sealed(why)),
            }
        }
        // Plaintext at [0, out), then the partial chunk's ciphertext right after it.
        block.copy_within(start..filled, out);
        filled -= start;
        let written = write_now(dst, &block[..out]).map_err(RelayError::PlainIo)?;
        if written < out {
            match pool.spill(&block[written..out + filled]) {
                Some(spill) => {
                    drop(block);
                    let unsent = out - written;
                    write_all(dst, &spill[..unsent])
                        .await
                        .map_err(RelayError::PlainIo)?;
                    if filled > 0 {
                        carried = Some((spill, unsent));
                    }
                    filled = 0;
                    activity.touch();
                    continue;
                }
                None => write_all(dst, &block[written..out])
                    .await
                    .map_err(RelayError::PlainIo)?,
            }
        }
        activity.touch();
        if filled > 0 {
            block.copy_within(out..out + filled, 0);
            held = Some(block);
        }
    }
}

/// Writes what the socket takes without waiting; returns how much that was.
fn write_now(dst: &Async<TcpStream>, buf: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match dst.get_ref().write(&buf[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// Writes `block[range]` and gives the block back as early as possible: what the socket takes
/// at once is written straight from the block; the rest, if any, is spilled out of it so the
/// block returns to the pool while the peer is slow (or has stopped reading).
async fn send(
    dst: &Async<TcpStream>,
    block: Block,
    range: Range<usize>,
    pool: &Rc<Pool>,
) -> io::Result<()> {
    let at = range.start + write_now(dst, &block[range.clone()])?;
    if at == range.end {
        return Ok(());
    }
    match pool.spill(&block[at..range.end]) {
        Some(spill) => {
            drop(block);
            write_all(dst, &spill).await
        }
        None => write_all(dst, &block[at..range.end]).await,
    }
}

async fn write_all(dst: &Async<TcpStream>, buf: &[u8]) -> io::Result<()> {
    let mut w = dst;
    w.write_all(buf).await
}

/// Both halves of one connection's cipher state, boxed once per connection: futures store
/// what they own by value more than once, a pointer only costs 8 bytes each time.
pub struct Ciphers {
    pub enc: Encryptor,
    pub dec: Decryptor,
}

/// Relays between a plaintext socket and a sealed (AEAD) socket until both directions end, an
/// error occurs, or the pair is idle for `timeout`. A client mode passes `first` (the target
/// address goes out with the salt); ss-server passes the ciphertext it read past the first
/// chunk as `pending`.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    plain: &Async<TcpStream>,
    sealed: &Async<TcpStream>,
    ciphers: &mut Ciphers,
    first: Option<FirstWrite<'_>>,
    pending: Option<Pending>,
    pool: &Rc<Pool>,
    timeout: Duration,
) -> Result<(), RelayError> {
    let activity = Activity::new();
    let up = encrypt_pump(plain, sealed, &mut ciphers.enc, first, pool, &activity);
    let down = decrypt_pump(sealed, plain, &mut ciphers.dec, pending, pool, &activity);
    future::or(future::try_zip(up, down), async {
        activity.idle(timeout).await;
        Err(RelayError::Idle)
    })
    .await
    .map(|_| ())
}
