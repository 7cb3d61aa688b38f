//! The buffer pool: a fixed number of fixed-size blocks allocated once at start-up.
//!
//! A connection borrows a block only while data is in flight and gives it back as soon as the
//! data is written, so an idle connection holds none. When every block is lent out, `take`
//! waits: that is the backpressure that bounds memory. Peak buffer memory is
//! `blocks * BLOCK_SIZE`, and pages the kernel never saw touched cost no RSS: the pool is one
//! large zeroed allocation, which the allocator gets straight from mmap.

use crate::relay::tcp::Pending;
use crate::rt::Semaphore;
use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut, Range};
use std::rc::Rc;

pub use crate::policy::memory::{max_blocks, BLOCK_SIZE, MAX_BLOCKS};

pub struct Pool {
    free: RefCell<Vec<&'static mut [u8]>>,
    /// One unit per free block: `take` waits on it.
    units: Semaphore,
    blocks: usize,
    /// Bytes that may sit in spills (see `spill`); as many as the blocks hold.
    spill_left: Cell<usize>,
    /// The fewest free blocks since the last [`Pool::trim`]: the free list is a stack, so the
    /// blocks below this depth were not lent since.
    low_water: Cell<usize>,
    /// The free blocks below this depth have had their pages released.
    released_below: Cell<usize>,
    /// Idle jumbo buffers (see [`Pool::take_jumbo`]).
    jumbos: RefCell<Vec<Box<[u8]>>>,
}

impl Pool {
    /// Allocates `blocks` blocks (at least one). The memory lives for the whole process. The
    /// error is the one line start-up prints: more than [`MAX_BLOCKS`], or no memory for them.
    pub fn new(blocks: usize) -> Result<Rc<Pool>, String> {
        let blocks = blocks.max(1);
        // Both in u64: the product overflows a 32-bit usize for the values refused here.
        let budget = human_bytes(2 * blocks as u64 * BLOCK_SIZE as u64);
        if blocks > MAX_BLOCKS {
            return Err(format!(
                "--pool-blocks {blocks}: {budget} of buffers (the pool and its spill budget) is \
                 more than this system can address; at most {MAX_BLOCKS}"
            ));
        }
        let arena = crate::sys::zeroed_bytes(blocks * BLOCK_SIZE).ok_or_else(|| {
            format!(
                "--pool-blocks {blocks}: cannot allocate {} of buffers (out of memory or \
                 address space); use fewer",
                human_bytes(blocks as u64 * BLOCK_SIZE as u64)
            )
        })?;
        let arena: &'static mut [u8] = Box::leak(arena);
        // Reversed so the first blocks are lent first: reuse keeps the resident set small.
        let free = arena.chunks_exact_mut(BLOCK_SIZE).rev().collect();
        Ok(Rc::new(Pool {
            free: RefCell::new(free),
            units: Semaphore::new(blocks),
            blocks,
            spill_left: Cell::new(blocks * BLOCK_SIZE),
            low_water: Cell::new(blocks),
            // Never touched yet, so nothing to release.
            released_below: Cell::new(blocks),
            jumbos: RefCell::new(Vec::new()),
        }))
    }

    /// Borrows a block, waiting while none is free.
    pub async fn take(self: &Rc<Self>) -> Block {
        self.units.take_unit().await;
        self.lend()
    }

    pub fn try_take(self: &Rc<Self>) -> Option<Block> {
        self.units.try_take_unit().then(|| self.lend())
    }

    /// A block for a unit just taken: there is one free for every unit.
    fn lend(self: &Rc<Self>) -> Block {
        let mut free = self.free.borrow_mut();
        let buf = free.pop();
        let left = free.len();
        self.low_water.set(self.low_water.get().min(left));
        self.released_below.set(self.released_below.get().min(left));
        Block {
            buf,
            pool: Rc::clone(self),
        }
    }

    /// Called now and then (every few seconds): releases the pages of blocks that were not
    /// lent since the last call, so memory a flood made resident goes back to the system while
    /// the blocks in use stay warm. Returns how many blocks it released.
    pub fn trim(&self) -> usize {
        let mut free = self.free.borrow_mut();
        let cold = self.low_water.get().min(free.len());
        let from = self.released_below.get().min(cold);
        for block in free.get_mut(from..cold).unwrap_or_default() {
            crate::sys::release_pages(block);
        }
        self.released_below.set(self.released_below.get().max(cold));
        self.low_water.set(free.len());
        self.jumbos.borrow_mut().clear();
        cold - from
    }

    /// Blocks currently lent out.
    pub fn in_use(&self) -> usize {
        self.blocks - self.free.borrow().len()
    }

    pub fn capacity(&self) -> usize {
        self.blocks
    }

    /// Copies `bytes` a peer would not take yet out of a block, so the block can go back to the
    /// pool while the write waits: a stalled reader must not hold a block that others need.
    /// Spills come from a budget as large as the pool, so the memory bound stays computable
    /// (twice the pool); `None` when the budget is spent and the caller keeps its block.
    pub fn spill(self: &Rc<Self>, bytes: &[u8]) -> Option<Spill> {
        self.spill_parts(&[bytes])
    }

    /// `spill` of several slices, stored one after the other.
    pub fn spill_parts(self: &Rc<Self>, parts: &[&[u8]]) -> Option<Spill> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let left = self.spill_left.get();
        if len > left {
            return None;
        }
        self.spill_left.set(left - len);
        Some(Spill {
            bytes: parts.concat().into_boxed_slice(),
            pool: Rc::clone(self),
        })
    }
}

/// A buffer for one element longer than a block: a Shadowsocks 2022 chunk or request header
/// (0xFFFF bytes of payload and a tag).
pub const JUMBO_LEN: usize = 0xFFFF + 16;
/// Idle jumbo buffers kept for reuse (a stream of 64 KiB chunks takes one per chunk).
const JUMBOS_KEPT: usize = 4;

impl Pool {
    /// A [`JUMBO_LEN`] buffer charged to the spill budget; `None` while the budget is spent.
    /// Returned buffers are kept for the next one until [`Pool::trim`].
    pub fn take_jumbo(self: &Rc<Self>) -> Option<Jumbo> {
        let left = self.spill_left.get();
        if JUMBO_LEN > left {
            return None;
        }
        self.spill_left.set(left - JUMBO_LEN);
        let buf = self
            .jumbos
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; JUMBO_LEN].into_boxed_slice());
        Some(Jumbo {
            buf: Some(buf),
            pool: Rc::clone(self),
        })
    }
}

/// A jumbo buffer; goes back to the pool's few kept ones (and its budget) when dropped.
pub struct Jumbo {
    buf: Option<Box<[u8]>>,
    pool: Rc<Pool>,
}

impl Deref for Jumbo {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }
}

impl DerefMut for Jumbo {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for Jumbo {
    fn drop(&mut self) {
        self.pool
            .spill_left
            .set(self.pool.spill_left.get() + JUMBO_LEN);
        let mut kept = self.pool.jumbos.borrow_mut();
        if let Some(buf) = self.buf.take().filter(|_| kept.len() < JUMBOS_KEPT) {
            kept.push(buf);
        }
    }
}

/// `bytes` for a person: "514 MiB", "4.0 GiB".
fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 1 << 30 {
        format!("{}.{} GiB", bytes >> 30, ((bytes % (1 << 30)) * 10) >> 30)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

/// Unsent bytes copied out of a block; gives its budget back when dropped.
pub struct Spill {
    bytes: Box<[u8]>,
    pool: Rc<Pool>,
}

impl Deref for Spill {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.pool
            .spill_left
            .set(self.pool.spill_left.get() + self.bytes.len());
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

impl Parked {
    /// Parks `block[early]` (plaintext) and `block[rest]` (ciphertext), spilled when the budget
    /// allows so that the block goes back to the pool at once.
    pub fn new(pool: &Rc<Pool>, block: Block, early: Range<usize>, rest: Range<usize>) -> Parked {
        match pool.spill_parts(&[&block[early.clone()], &block[rest.clone()]]) {
            Some(bytes) => Parked::Spilled {
                bytes,
                early: early.len(),
            },
            None => Parked::InBlock { block, early, rest },
        }
    }

    /// `early` (plaintext) and `rest` (ciphertext) copied into a spill; `None` when the budget
    /// is spent.
    pub fn spilled(pool: &Rc<Pool>, early: &[u8], rest: &[u8]) -> Option<Parked> {
        Some(Parked::Spilled {
            bytes: pool.spill_parts(&[early, rest])?,
            early: early.len(),
        })
    }

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

/// A borrowed block; goes back to the pool when dropped.
pub struct Block {
    buf: Option<&'static mut [u8]>,
    pool: Rc<Pool>,
}

impl Deref for Block {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }
}

impl DerefMut for Block {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.free.borrow_mut().push(buf);
            self.pool.units.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn the_cap_keeps_pool_and_spills_within_a_quarter_of_a_32_bit_address_space() {
        let cap = max_blocks(32);
        assert_eq!(BLOCK_SIZE, 32_880, "recompute the numbers below");
        // 512 MiB / 32,880 bytes.
        assert_eq!(cap, 16_328);
        assert!(2 * cap as u64 * BLOCK_SIZE as u64 <= 1 << 30);
        assert!(
            2 * (cap as u64 + 1) * BLOCK_SIZE as u64 > 1 << 30,
            "not the largest"
        );
        assert_eq!(max_blocks(64), 65_536);
        assert_eq!(MAX_BLOCKS, max_blocks(usize::BITS));
    }

    #[test]
    fn too_many_blocks_is_one_line_naming_the_value_and_the_limit() {
        let e = Pool::new(MAX_BLOCKS + 1).err().unwrap();
        assert!(
            e.starts_with(&format!("--pool-blocks {}: ", MAX_BLOCKS + 1)),
            "{e}"
        );
        assert!(e.ends_with(&format!("at most {MAX_BLOCKS}")), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(human_bytes(2 * 65_536 * BLOCK_SIZE as u64), "4.0 GiB");
        assert_eq!(human_bytes(4 * BLOCK_SIZE as u64), "1 MiB");
        assert_eq!(Pool::new(0).unwrap().capacity(), 1);
    }

    #[test]
    fn lends_and_returns() {
        let pool = Pool::new(2).unwrap();
        let a = pool.try_take().unwrap();
        let mut b = pool.try_take().unwrap();
        assert_eq!(a.len(), BLOCK_SIZE);
        b[0] = 1;
        assert!(pool.try_take().is_none());
        assert_eq!(pool.in_use(), 2);
        drop(a);
        assert_eq!(pool.in_use(), 1);
        assert!(pool.try_take().is_some());
    }

    #[test]
    fn trim_releases_blocks_not_lent_since_the_last_trim_once() {
        let pool = Pool::new(8).unwrap();
        assert_eq!(pool.trim(), 0, "nothing was ever touched");
        let mut flood: Vec<Block> = (0..8).map(|_| pool.try_take().unwrap()).collect();
        for b in &mut flood {
            b.fill(7);
        }
        drop(flood);
        // Used since the last trim: kept.
        assert_eq!(pool.trim(), 0);
        // Two stay in use; the other six were not lent in this period.
        let mut hot: Vec<Block> = (0..2).map(|_| pool.try_take().unwrap()).collect();
        hot[0][0] = 1;
        drop(hot);
        assert_eq!(pool.trim(), 6);
        assert_eq!(pool.trim(), 2, "the two went cold");
        assert_eq!(pool.trim(), 0, "released once");
        // A released block reads as zero but for the two pages it shares with its neighbours
        // (32,880 bytes is not a whole number of pages), and works as before.
        let all: Vec<Block> = (0..8).map(|_| pool.try_take().unwrap()).collect();
        for b in &all {
            let kept = b.iter().filter(|&&x| x != 0).count();
            assert!(kept <= 2 * 4096, "{kept} bytes kept");
        }
    }

    #[test]
    fn take_waits_for_a_returned_block() {
        let pool = Pool::new(1).unwrap();
        let held = pool.try_take().unwrap();
        let ex = crate::rt::LocalExecutor::new();
        let p = pool.clone();
        let waiter = ex.spawn(async move { p.take().await.len() });
        future::block_on(ex.run(async {
            future::yield_now().await;
            assert!(!waiter.is_finished());
            drop(held);
            assert_eq!(waiter.await, BLOCK_SIZE);
        }));
    }
}
