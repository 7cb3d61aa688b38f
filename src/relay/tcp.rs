//! TCP relaying between a plaintext socket and an AEAD stream socket.
//!
//! Each direction is a pump that waits for readability *before* borrowing a pool block, reads
//! as much as one block holds, seals or opens it in place, writes it in one call and gives the
//! block back. While data streams, a pump costs a read and a write per block and nothing else:
//! a read that filled the block means the socket likely holds more, so the next read goes
//! ahead at once, and a short read marks the socket drained, so the next one waits for the
//! kernel's edge ([`Streak`]). A run of full reads yields to the executor every
//! [`YIELD_EVERY`] blocks, so that one busy connection cannot keep the others, the listeners
//! and the timers from running. End of stream is passed on as a FIN
//! (half-close); the pair ends when both directions have ended, on the first error, or after
//! `timeout` without traffic.

use super::pool::{Block, Pool, Spill, BLOCK_SIZE};
use super::{RelayError, Traffic};
use crate::proto::cipher::{MAX_SALT_LEN, TAG_LEN};
use crate::proto::stream::{Opening, Sealing};
use crate::proto::tcp::{HEADER_LEN, MAX_PAYLOAD, OVERHEAD};
use crate::proto::ParseError;
use crate::rt::{self, Async, Timer};
use futures_lite::future;
use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

// MANUAL_ASYNC: the futures every connection keeps are written as functions returning an
// `async move` block, not as `async fn`: an `async fn` stores its arguments twice in its future
// (as captured and again as locals), 40-80 bytes per function here.

/// Blocks a pump moves without waiting before it yields to the executor (256 KiB).
const YIELD_EVERY: u32 = 8;

/// Paces a pump's reads. A read that filled its buffer means more is likely queued: the next
/// read goes ahead at once (the source is still ready), yielding to the executor every
/// [`YIELD_EVERY`] blocks. A short read of a stream socket means its queue was emptied, so the
/// source is marked drained and the next read waits for the kernel, without first making a
/// read that would only report `WouldBlock`.
struct Streak {
    run: u32,
}

impl Streak {
    fn new() -> Streak {
        Streak { run: 0 }
    }

    /// Waits until `src` may be readable, yielding first after a long run of full reads.
    async fn ready(&mut self, src: &Async<TcpStream>) -> io::Result<()> {
        if self.run != 0 && self.run.is_multiple_of(YIELD_EVERY) {
            future::yield_now().await;
        }
        src.readable().await
    }

    /// Records a read of `n` bytes into `room` bytes of space.
    fn read(&mut self, src: &Async<TcpStream>, n: usize, room: usize) {
        if n < room {
            src.drained();
            self.run = 0;
        } else {
            self.run = self.run.wrapping_add(1);
        }
    }

    /// Records a read that found nothing.
    fn empty(&mut self) {
        self.run = 0;
    }
}

/// Payload of the chunks we seal: one byte short of the protocol's 0x3FFF, so that a full
/// chunk is 16,416 bytes on the wire, a multiple of 4, and every chunk's payload in a block
/// starts 4-byte aligned. The word-wise ChaCha20 of 32-bit routers needs that to avoid
/// unaligned stores (about three times the speed under qemu-mipsel; crates/ss-aead), and an
/// ss-smol peer's receiving side then finds its payloads aligned too.
const SEAL_PAYLOAD: usize = MAX_PAYLOAD - 1;
const SEALED_CHUNK: usize = OVERHEAD + SEAL_PAYLOAD;

/// Where chunk `i` starts in a block. Slot 0 follows the salt, so salt + chunks are contiguous;
/// the two spare bytes in front put slot 0's payload (after its 18-byte header) at offset 52.
const fn chunk_at(i: usize) -> usize {
    2 + MAX_SALT_LEN + i * SEALED_CHUNK
}
const _: () = assert!(SEALED_CHUNK.is_multiple_of(4) && SLOT0_PAYLOAD.is_multiple_of(4));

/// Where slot 0's payload starts, and where it ends.
const SLOT0_PAYLOAD: usize = chunk_at(0) + HEADER_LEN;
const SLOT0_END: usize = SLOT0_PAYLOAD + SEAL_PAYLOAD;

/// Where slot 0's payload starts in the block that carries a stream's first frame: after the
/// salt and the first header (a Shadowsocks 2022 header is longer than a chunk's length field,
/// so slot 0 is shorter then), 4-byte aligned.
fn first_payload_at(enc: &Sealing) -> usize {
    enc.first_len().next_multiple_of(4).max(SLOT0_PAYLOAD)
}

/// Where received ciphertext is placed in a block: so that the next chunk's payload starts
/// 4-byte aligned (see [`SEAL_PAYLOAD`]).
fn receive_at(dec: &Opening) -> usize {
    (4 - dec.payload_offset() % 4) % 4
}

/// Tracks the last moment either direction moved data, and counts the sealed side's bytes.
pub struct Activity<'t> {
    last: Cell<Instant>,
    traffic: &'t Traffic,
}

impl<'t> Activity<'t> {
    pub fn new(traffic: &'t Traffic) -> Activity<'t> {
        Activity {
            last: Cell::new(rt::now()),
            traffic,
        }
    }
    /// On the loop's clock: no system call per block.
    pub fn touch(&self) {
        self.last.set(rt::now());
    }
    /// `n` bytes went out on the sealed side.
    fn sent(&self, n: usize) {
        self.traffic.add(&self.traffic.sent, n);
    }
    /// `n` bytes came in on the sealed side.
    fn received(&self, n: usize) {
        self.traffic.add(&self.traffic.received, n);
    }
    /// Resolves once `timeout` has passed with no `touch`.
    #[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC
    pub fn idle(&self, timeout: Duration) -> impl Future<Output = ()> + '_ {
        async move {
            loop {
                let deadline = self.last.get() + timeout;
                if rt::now() >= deadline {
                    return;
                }
                Timer::at(deadline).await;
            }
        }
    }
}

/// Seals `plain_len` bytes of plaintext sitting in the payload slots of `block` (slot 0's
/// from `at`) into chunks, and returns the range to send: the stream's first frame, salt and
/// header included, when `first`. On error nothing in the block may be sent.
fn seal_block(
    enc: &mut Sealing,
    block: &mut [u8],
    at: usize,
    plain_len: usize,
    first: bool,
) -> Result<(usize, usize), RelayError> {
    let len0 = plain_len.min(SLOT0_END - at);
    let (start, sealed) = if first {
        let start = at - enc.first_len();
        let frame = &mut block[start..at + len0 + TAG_LEN];
        (start, enc.seal_first(frame, rt::unix_now()))
    } else {
        let frame = &mut block[chunk_at(0)..at + len0 + TAG_LEN];
        (chunk_at(0), enc.seal_chunk(frame))
    };
    sealed.map_err(RelayError::Seal)?;
    let mut end = at + len0 + TAG_LEN;
    let mut left = plain_len - len0;
    let mut i = 1;
    while left > 0 {
        let len = left.min(SEAL_PAYLOAD);
        let frame = &mut block[chunk_at(i)..chunk_at(i) + len + OVERHEAD];
        enc.seal_chunk(frame).map_err(RelayError::Seal)?;
        end = chunk_at(i) + len + OVERHEAD;
        left -= len;
        i += 1;
    }
    Ok((start, end))
}

/// Reads into the payload slots of a block, slot 0 from `at`.
fn read_into_slots(src: &TcpStream, block: &mut [u8], at: usize) -> io::Result<usize> {
    let (slot0, rest) = block.split_at_mut(chunk_at(1));
    let slot0 = &mut slot0[at..SLOT0_END];
    let slot1 = &mut rest[HEADER_LEN..HEADER_LEN + SEAL_PAYLOAD];
    let mut src = src;
    src.read_vectored(&mut [IoSliceMut::new(slot0), IoSliceMut::new(slot1)])
}

/// Bytes [`read_into_slots`] can read from `at`.
fn slots_room(at: usize) -> usize {
    SLOT0_END - at + SEAL_PAYLOAD
}

// readv fills slot 0 completely before slot 1, which is exactly the SEAL_PAYLOAD chunking
// `seal_block` applies, so plaintext never has to move. Blocks start aligned in the pool.
const _: () = assert!(BLOCK_SIZE >= chunk_at(2) && BLOCK_SIZE.is_multiple_of(4));

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
#[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC
pub fn encrypt_pump<'a>(
    src: &'a Async<TcpStream>,
    dst: &'a Async<TcpStream>,
    enc: &'a mut Sealing,
    sent: &'a mut bool,
    first: Option<FirstWrite<'a>>,
    pool: &'a Rc<Pool>,
    activity: &'a Activity<'a>,
) -> impl Future<Output = Result<(), RelayError>> + 'a {
    async move {
        let mut salt_sent = false;
        if let Some(first) = first {
            // The wait ends with data, with EOF, or at the deadline.
            let mut deadline = Timer::after(first.wait);
            let payload_at = first_payload_at(enc);
            // An address is at most 262 bytes: never cut in practice.
            let prefix = &first.prefix[..first.prefix.len().min(SEAL_PAYLOAD / 2)];
            let skip = prefix.len() + enc.first_gap();
            let (mut block, n, eof) = loop {
                let ready = future::or(async { src.readable().await.map(|()| true) }, async {
                    (&mut deadline).await;
                    Ok(false)
                })
                .await
                .map_err(RelayError::PlainIo)?;
                let mut block = pool.take().await;
                if !ready {
                    break (block, 0, false);
                }
                match src.try_read_with(|s| read_into_slots(s, &mut block, payload_at + skip)) {
                    Ok(0) => break (block, 0, true),
                    Ok(n) => {
                        if n < slots_room(payload_at + skip) {
                            src.drained();
                        }
                        break (block, n, false);
                    }
                    // Not readable after all: wait for the kernel (the block goes back meanwhile).
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(RelayError::PlainIo(e)),
                }
            };
            block[payload_at..payload_at + prefix.len()].copy_from_slice(prefix);
            if skip + n > 0 {
                let len = enc.fill_gap(&mut block[payload_at..SLOT0_END], skip, n);
                let (start, end) = seal_block(enc, &mut block, payload_at, len, true)?;
                salt_sent = true;
                *sent = n > 0;
                activity.sent(end - start);
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
        let mut streak = Streak::new();
        loop {
            streak.ready(src).await.map_err(RelayError::PlainIo)?;
            let mut block = pool.take().await;
            let at = if salt_sent {
                SLOT0_PAYLOAD
            } else {
                first_payload_at(enc)
            };
            let n = match src.try_read_with(|s| read_into_slots(s, &mut block, at)) {
                Ok(0) => {
                    let _ = dst.get_ref().shutdown(Shutdown::Write);
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    streak.empty();
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RelayError::PlainIo(e)),
            };
            streak.read(src, n, slots_room(at));
            let (start, end) = seal_block(enc, &mut block, at, n, !salt_sent)?;
            salt_sent = true;
            *sent = true;
            activity.sent(end - start);
            send(dst, block, start..end, pool)
                .await
                .map_err(RelayError::SealedIo)?;
            activity.touch();
        }
    }
}

/// sealed `src` → plaintext `dst`. Between reads, the ciphertext of a partly received chunk
/// stays in its block, unless the plaintext before it could not be written at once: then both
/// are spilled, the block goes back to the pool, and the partial chunk is restored into a
/// block when more ciphertext arrives. Received bytes sit in `block[begin..filled]`, `begin`
/// chosen by [`receive_at`].
#[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC
pub fn decrypt_pump<'a>(
    src: &'a Async<TcpStream>,
    dst: &'a Async<TcpStream>,
    dec: &'a mut Opening,
    pending: Option<Pending>,
    pool: &'a Rc<Pool>,
    activity: &'a Activity<'a>,
) -> impl Future<Output = Result<(), RelayError>> + 'a {
    async move {
        let mut held: Option<Block> = None;
        let mut carried: Option<(Spill, usize)> = None;
        let (mut begin, mut filled) = (0, 0);
        // Pending bytes may already hold whole chunks: decode them before reading more.
        let mut fresh = false;
        let mut streak = Streak::new();
        if let Some(p) = pending.filter(|p| p.filled > 0) {
            filled = p.filled;
            held = Some(p.block);
            fresh = true;
        }
        loop {
            let mut block = match held.take() {
                Some(b) => {
                    if !fresh {
                        streak.ready(src).await.map_err(RelayError::SealedIo)?;
                    }
                    b
                }
                None => {
                    streak.ready(src).await.map_err(RelayError::SealedIo)?;
                    let mut b = pool.take().await;
                    begin = receive_at(dec);
                    filled = begin;
                    if let Some((spill, at)) = carried.take() {
                        filled = begin + spill.len() - at;
                        b[begin..filled].copy_from_slice(&spill[at..]);
                    }
                    b
                }
            };
            if !fresh && begin + dec.element_len() > block.len() {
                // A Shadowsocks 2022 chunk longer than a block; rare enough to box.
                Box::pin(jumbo_chunk(
                    src,
                    dst,
                    dec,
                    block,
                    begin..filled,
                    pool,
                    activity,
                ))
                .await?;
                activity.touch();
                continue;
            }
            if !fresh {
                let n = match src.try_read_with(|mut s| s.read(&mut block[filled..])) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        streak.empty();
                        // Only a partial chunk keeps the block while waiting; an empty one goes
                        // back to the pool, so an idle connection holds none.
                        if filled > begin {
                            held = Some(block);
                        }
                        continue;
                    }
                    Err(e) => return Err(RelayError::SealedIo(e)),
                };
                streak.read(src, n, block.len() - filled);
                activity.received(n);
                if n == 0 {
                    if filled > begin || !dec.at_boundary() {
                        return Err(RelayError::Truncated);
                    }
                    let _ = dst.get_ref().shutdown(Shutdown::Write);
                    return Ok(());
                }
                filled += n;
            }
            fresh = false;
            let tail = match open_and_write(dec, dst, &mut block, begin..filled, pool)? {
                Opened::Written(tail) => tail,
                Opened::Spilled {
                    spill,
                    unsent,
                    tail,
                } => {
                    drop(block);
                    dst.write_all(&spill[..unsent])
                        .await
                        .map_err(RelayError::PlainIo)?;
                    if tail > 0 {
                        carried = Some((spill, unsent));
                    }
                    activity.touch();
                    continue;
                }
                Opened::Stuck { unsent, tail } => {
                    // No spill budget left: write from the block, holding it until the peer
                    // takes the bytes.
                    dst.write_all(&block[unsent])
                        .await
                        .map_err(RelayError::PlainIo)?;
                    tail
                }
            };
            activity.touch();
            if !tail.is_empty() {
                begin = receive_at(dec);
                filled = begin + tail.len();
                block.copy_within(tail, begin);
                held = Some(block);
            }
        }
    }
}

/// Receives the rest of an element longer than a block (a Shadowsocks 2022 chunk of up to
/// 0xFFFF + 16 bytes), whose first bytes are `block[partial]`, into a buffer of its own from
/// the spill budget (waiting while that is spent), opens it there and writes its plaintext.
/// Peers such as shadowsocks-rust send 64 KiB chunks while streaming: this is their data path.
async fn jumbo_chunk(
    src: &Async<TcpStream>,
    dst: &Async<TcpStream>,
    dec: &mut Opening,
    block: Block,
    partial: Range<usize>,
    pool: &Rc<Pool>,
    activity: &Activity<'_>,
) -> Result<(), RelayError> {
    let need = dec.element_len();
    let mut big = loop {
        match pool.take_jumbo() {
            Some(b) => break b,
            None => Timer::after(Duration::from_millis(50)).await,
        };
    };
    let Some(big) = big.get_mut(..need) else {
        return Err(RelayError::Truncated);
    };
    let mut have = partial.len();
    big[..have].copy_from_slice(&block[partial]);
    drop(block);
    while have < need {
        match src.try_read_with(|mut s| s.read(&mut big[have..need])) {
            Ok(0) => return Err(RelayError::Truncated),
            Ok(n) => {
                activity.received(n);
                have += n;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                src.readable().await.map_err(RelayError::SealedIo)?
            }
            Err(e) => return Err(RelayError::SealedIo(e)),
        }
    }
    let step = dec.decode(big).map_err(|e| match e {
        ParseError::Invalid(why) => RelayError::Sealed(why),
        ParseError::NeedMore(_) => RelayError::Truncated,
    })?;
    dst.write_all(&big[step.plain])
        .await
        .map_err(RelayError::PlainIo)
}

/// What [`open_and_write`] left to do.
enum Opened {
    /// All plaintext was written; the partial element's ciphertext is at `.0` in the block.
    Written(Range<usize>),
    /// The unwritten plaintext (`unsent` bytes), then `tail` bytes of partial ciphertext, were
    /// copied out of the block, which can go back to the pool.
    Spilled {
        spill: Spill,
        unsent: usize,
        tail: usize,
    },
    /// No spill budget left: the unwritten plaintext was moved together at `unsent`.
    Stuck {
        unsent: Range<usize>,
        tail: Range<usize>,
    },
}

/// Opens the whole chunks in `block[received]` in place and writes their plaintext with what
/// the socket takes at once. Not async, so that its working state (the runs, the slices to
/// spill) is never kept in the connection's future.
fn open_and_write(
    dec: &mut Opening,
    dst: &Async<TcpStream>,
    block: &mut Block,
    received: Range<usize>,
    pool: &Rc<Pool>,
) -> Result<Opened, RelayError> {
    if dec.needs_clock() {
        dec.set_clock(rt::unix_now());
    }
    let mut runs = Runs::default();
    let mut start = received.start;
    loop {
        match dec.decode(&mut block[start..received.end]) {
            Ok(step) => {
                runs.add(block, start + step.plain.start..start + step.plain.end);
                start += step.consumed;
            }
            Err(ParseError::NeedMore(_)) => break,
            Err(ParseError::Invalid(why)) => return Err(RelayError::Sealed(why)),
        }
    }
    // The partial element's ciphertext, kept for the next read.
    let tail = start..received.end;
    let written = runs.write_now(dst, block).map_err(RelayError::PlainIo)?;
    if written == runs.len {
        return Ok(Opened::Written(tail));
    }
    let spilled = {
        let mut parts = runs.unsent(block, written);
        // Cannot fail: `unsent` leaves room for one more part.
        let _ = parts.push(&block[tail.clone()]);
        pool.spill_parts(&parts)
    };
    if let Some(spill) = spilled {
        return Ok(Opened::Spilled {
            spill,
            unsent: runs.len - written,
            tail: tail.len(),
        });
    }
    Ok(Opened::Stuck {
        unsent: runs.compact_unsent(block, written),
        tail,
    })
}

/// Plaintext runs written per `writev`; a read holding more chunks than this (small ones) has
/// the later chunks' plaintext moved onto the last run.
const MAX_RUNS: usize = 8;

/// Where the plaintext of the chunks decoded from one read lies in the block. Written with one
/// `writev` straight from where each chunk was opened, instead of first moving it all together.
/// Offsets are `u32` (a block is 32 KiB): this lives in every connection's future.
#[derive(Default)]
struct Runs {
    ranges: heapless::Vec<(u32, u32), MAX_RUNS>,
    len: usize,
}

fn span(&(start, end): &(u32, u32)) -> Range<usize> {
    start as usize..end as usize
}

impl Runs {
    fn add(&mut self, block: &mut [u8], plain: Range<usize>) {
        if plain.is_empty() {
            return;
        }
        self.len += plain.len();
        // Block offsets always fit (BLOCK_SIZE is far below 4 GiB).
        let run = (plain.start as u32, plain.end as u32);
        if self.ranges.push(run).is_err() {
            // Full: append to the last run. Its end lies before this chunk's header, so the
            // bytes in between are spent ciphertext.
            if let Some(last) = self.ranges.last_mut() {
                block.copy_within(plain.clone(), last.1 as usize);
                last.1 += plain.len() as u32;
            }
        }
    }

    /// Writes what the socket takes without waiting; returns how much that was.
    fn write_now(&self, dst: &Async<TcpStream>, block: &[u8]) -> io::Result<usize> {
        let mut slices: heapless::Vec<IoSlice<'_>, MAX_RUNS> = self
            .ranges
            .iter()
            .map(|r| IoSlice::new(&block[span(r)]))
            .collect();
        let mut bufs = &mut slices[..];
        let mut written = 0;
        while written < self.len {
            match dst.try_write_with(|mut s| s.write_vectored(bufs)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Where the runs' bytes after the first `written` lie in the block.
    fn unsent_spans(&self, written: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut skip = written;
        self.ranges.iter().filter_map(move |r| {
            let run = span(r);
            if skip >= run.len() {
                skip -= run.len();
                return None;
            }
            let from = run.start + skip;
            skip = 0;
            Some(from..run.end)
        })
    }

    /// Moves the runs' bytes after the first `written` together (down over the spent headers
    /// between them) and returns where they are now.
    fn compact_unsent(&self, block: &mut [u8], written: usize) -> Range<usize> {
        let mut spans = self.unsent_spans(written);
        let Some(first) = spans.next() else {
            return 0..0;
        };
        let mut end = first.end;
        for run in spans {
            block.copy_within(run.clone(), end);
            end += run.len();
        }
        first.start..end
    }

    /// The runs' bytes after the first `written`, with room for one more part.
    fn unsent<'b>(
        &self,
        block: &'b [u8],
        written: usize,
    ) -> heapless::Vec<&'b [u8], { MAX_RUNS + 1 }> {
        self.unsent_spans(written).map(|r| &block[r]).collect()
    }
}

/// Writes what the socket takes without waiting; returns how much that was.
fn write_now(dst: &Async<TcpStream>, buf: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match dst.try_write_with(|mut s| s.write(&buf[at..])) {
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
#[allow(clippy::manual_async_fn)] // see MANUAL_ASYNC
fn send<'a>(
    dst: &'a Async<TcpStream>,
    block: Block,
    range: Range<usize>,
    pool: &'a Rc<Pool>,
) -> impl Future<Output = io::Result<()>> + 'a {
    async move {
        let at = range.start + write_now(dst, &block[range.clone()])?;
        if at == range.end {
            return Ok(());
        }
        let Some(spill) = pool.spill(&block[at..range.end]) else {
            return dst.write_all(&block[at..range.end]).await;
        };
        drop(block);
        dst.write_all(&spill).await
    }
}

/// Both halves of one connection's cipher state, boxed once per connection: futures store
/// what they own by value more than once, a pointer only costs 8 bytes each time.
pub struct Ciphers {
    pub enc: Sealing,
    pub dec: Opening,
    /// Set once data read from the plain side was sent sealed (not just a target address).
    pub sent: bool,
}

/// Relays between a plaintext socket and a sealed (AEAD) socket until both directions end, an
/// error occurs, or the pair is idle for `timeout`. A client mode passes `first` (the target
/// address goes out with the salt); ss-server passes the ciphertext it read past the first
/// chunk as `pending`.
///
/// The two pumps and the idle timer live in one allocation of their own, about 900 bytes: the
/// router build's allocator rounds sizes up to powers of two, and inside the task's own future
/// they made it 2.3 KiB, so 4 KiB per connection (tests/cross_qemu.rs measures the RSS).
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    plain: &Async<TcpStream>,
    sealed: &Async<TcpStream>,
    ciphers: &mut Ciphers,
    first: Option<FirstWrite<'_>>,
    pending: Option<Pending>,
    pool: &Rc<Pool>,
    timeout: Duration,
    traffic: &Traffic,
) -> Result<(), RelayError> {
    let activity = Activity::new(traffic);
    let pumps = pumps(
        plain, sealed, ciphers, first, pending, pool, &activity, timeout,
    );
    Box::pin(pumps).await.map(|_| ())
}

/// Both directions, until both end, one fails, or `timeout` passes without traffic.
#[allow(clippy::too_many_arguments)]
fn pumps<'a>(
    plain: &'a Async<TcpStream>,
    sealed: &'a Async<TcpStream>,
    ciphers: &'a mut Ciphers,
    first: Option<FirstWrite<'a>>,
    pending: Option<Pending>,
    pool: &'a Rc<Pool>,
    activity: &'a Activity<'a>,
    timeout: Duration,
) -> impl Future<Output = Result<((), ()), RelayError>> + 'a {
    let up = encrypt_pump(
        plain,
        sealed,
        &mut ciphers.enc,
        &mut ciphers.sent,
        first,
        pool,
        activity,
    );
    let down = decrypt_pump(sealed, plain, &mut ciphers.dec, pending, pool, activity);
    let idle = async move {
        activity.idle(timeout).await;
        Err(RelayError::Idle)
    };
    // Returned as is: wrapping it in another async block would store the pumps twice.
    future::or(future::try_zip(up, down), idle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: std::future::Future>(f: F) -> Poll<F::Output> {
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A chunk that cannot be sealed ends the pump with an error; nothing is left to send.
    #[test]
    fn seal_block_propagates_a_seal_failure() {
        use crate::proto::cipher::{MasterKey, Method};
        use crate::proto::tcp::Encryptor;
        use crate::proto::SealError;
        let m = Method::ChaCha20Poly1305;
        let key = MasterKey::from_password(m, b"k");
        let mut block = vec![0u8; BLOCK_SIZE];
        let mut good = Sealing::Aead(Encryptor::new(m, &key, &[3; 32]));
        let at = first_payload_at(&good);
        let (start, end) = seal_block(&mut good, &mut block, at, 10, true).unwrap();
        assert_eq!(end - start, 32 + 10 + OVERHEAD);
        let mut short = Sealing::Aead(Encryptor::new(m, &key, &[3; 16]));
        assert!(matches!(
            seal_block(&mut short, &mut block, at, 10, true),
            Err(RelayError::Seal(SealError::ShortSalt))
        ));
    }

    /// While reads keep filling the buffer the source stays ready and the pump goes on, but
    /// yields every `YIELD_EVERY` blocks; a short read marks the source drained, so the next
    /// call waits for the kernel; so does a read that found nothing.
    #[test]
    fn a_streaming_pump_reads_on_but_yields_and_waits_after_a_short_read() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (sock, _) = l.accept().unwrap();
        let src = Async::new(sock).unwrap();

        let mut streak = Streak::new();
        // A fresh source counts as ready.
        assert!(poll_once(streak.ready(&src)).is_ready());
        let mut pending_at = Vec::new();
        for i in 1..=2 * YIELD_EVERY {
            streak.read(&src, 100, 100);
            if poll_once(streak.ready(&src)).is_pending() {
                pending_at.push(i);
            }
        }
        assert_eq!(pending_at, [YIELD_EVERY, 2 * YIELD_EVERY]);
        streak.read(&src, 99, 100);
        assert!(poll_once(streak.ready(&src)).is_pending());

        let _peer2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let src = Async::new(l.accept().unwrap().0).unwrap();
        let e = src
            .try_read_with(|mut s| s.read(&mut [0u8; 8]))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        streak.empty();
        assert!(poll_once(streak.ready(&src)).is_pending());
    }

    /// Runs keep each chunk's plaintext where it was opened; past `MAX_RUNS` the later ones are
    /// moved onto the last run; `unsent` skips what was written.
    #[test]
    fn plaintext_runs() {
        // Chunk i: 3 bytes of "header", then 4 bytes of plaintext [i; 4].
        let chunks = MAX_RUNS + 3;
        let mut block: Vec<u8> = (0..chunks)
            .flat_map(|i| [0xEE; 3].into_iter().chain([i as u8; 4]))
            .collect();
        let mut runs = Runs::default();
        runs.add(&mut block, 0..0);
        for i in 0..chunks {
            runs.add(&mut block, i * 7 + 3..i * 7 + 7);
        }
        assert_eq!(runs.len, 4 * chunks);
        assert_eq!(runs.ranges.len(), MAX_RUNS);
        let all: Vec<u8> = runs
            .ranges
            .iter()
            .flat_map(|r| block[span(r)].to_vec())
            .collect();
        let want: Vec<u8> = (0..chunks).flat_map(|i| [i as u8; 4]).collect();
        assert_eq!(all, want);
        for written in [0, 1, 4, 5, 4 * chunks - 1, 4 * chunks] {
            let rest: Vec<u8> = runs.unsent(&block, written).concat();
            assert_eq!(rest, want[written..], "written {written}");
        }
    }
}
