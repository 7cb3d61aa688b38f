//! Size-classed slabs for the process's small and medium allocations, which give memory back
//! to the kernel when a burst of connections is over.
//!
//! Why not the C library's malloc: the one zig links into the router builds keeps every freed
//! block on a free list for good, so after a flood of 1,000 connections ss-local stayed at
//! its high-water mark (548 KiB idle, 3,076 KiB during, 3,084 KiB after). Here every block of
//! up to [`MAX_CLASS`] bytes lives in a 64 KiB slab of blocks of one size; a slab whose last
//! block is freed is unmapped (one per class is kept as a spare, its pages dropped with
//! `MADV_DONTNEED`, so a connection opening and closing at a slab boundary costs no mmap).
//!
//! ```text
//!  slab (SLAB bytes, aligned to SLAB)
//!  +--------+--------+--------+--------+-- ... --+--------+---------+
//!  | header | slot 0 | slot 1 | slot 2 |         | slot n | (spare) |
//!  +--------+--------+--------+--------+-- ... --+--------+---------+
//!  0        start: HEADER, or the slot size for power-of-two slots above HEADER (so that
//!           every slot is aligned to its size)
//!  a free slot holds the index + 1 of the next free one (0: none); slots at or after `bump`
//!  were never handed out and are still zero
//! ```
//!
//! The header is at the start so that it shares its page with the first slots: a class in use
//! costs one page of RSS, not two.
//!
//! A block's slab is its address rounded down to SLAB, so freeing is O(1) with no per-block
//! header; which allocator a block came from follows from its `Layout`, which Rust passes back
//! unchanged. Classes are multiples of 16 in quarter steps between powers of two (16, 32, ...,
//! 128, 160, 192, 224, 256, 320, ...), so a block wastes at most a fifth of its size; an
//! alignment above 16 takes the power-of-two class at least that large, whose slots are all
//! aligned to it because the slab is.
//!
//! One lock (a flag; the process has one thread, so it is never contended) guards the lists.

use nix::sys::mman::{madvise, mmap_anonymous, munmap, MapFlags, MmapAdvise, ProtFlags};
use std::cell::UnsafeCell;
use std::num::NonZeroUsize;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};

/// The size of one slab, and its alignment.
const SLAB: usize = 64 * 1024;
/// Room for the header at a slab's start (more than it needs, so slots keep 16-byte alignment).
const HEADER: usize = 64;
/// The largest block served from slabs; larger ones are mappings of their own.
pub const MAX_CLASS: usize = 16 * 1024;
/// The largest alignment a slot can promise.
pub const MAX_ALIGN: usize = 4096;
const CLASSES: usize = 36;

/// The class of a block of `size` (1..=MAX_CLASS) bytes and alignment `align` (a power of two,
/// at most MAX_ALIGN), with the class's slot size.
pub fn class_of(size: usize, align: usize) -> Option<(usize, usize)> {
    let mut size = size.max(1);
    if align > 16 {
        size = size.max(align).checked_next_power_of_two()?;
    }
    if size > MAX_CLASS || align > MAX_ALIGN {
        return None;
    }
    if size <= 128 {
        let slot = size.next_multiple_of(16);
        return Some((slot / 16 - 1, slot));
    }
    // Quarter steps of the power of two below: 129..=160 → 160, 161..=192 → 192, ...
    let bits = usize::BITS - (size - 1).leading_zeros();
    let step = 1usize << (bits - 3);
    let slot = size.next_multiple_of(step);
    let class = 8 + (bits as usize - 8) * 4 + (slot / step - 5);
    Some((class, slot))
}

#[repr(C)]
struct Slab {
    /// The partial list of its class: slabs with a free slot.
    next: *mut Slab,
    prev: *mut Slab,
    /// Index + 1 of the first free slot; 0: none (take from `bump`).
    free: u32,
    /// Slots handed out from never-used memory so far.
    bump: u32,
    used: u32,
    slot: u32,
    capacity: u32,
}

const _: () = assert!(std::mem::size_of::<Slab>() <= HEADER);

struct Lists {
    partial: [*mut Slab; CLASSES],
    spare: [*mut Slab; CLASSES],
}

/// The slab heap: the process has one (see `Allocator`); tests make their own.
pub struct Slabs {
    busy: AtomicBool,
    lists: UnsafeCell<Lists>,
}

// SAFETY: `lists` is only touched while `busy` is held (see `locked`), so the raw pointers in
// it are never used from two threads at once.
unsafe impl Sync for Slabs {}

/// A block handed out: where, and whether it is known to be zero (never used since mapped).
pub struct Block {
    pub ptr: *mut u8,
    pub zero: bool,
}

fn header(base: *mut u8) -> *mut Slab {
    base.cast()
}

/// Where a slab's slots start.
fn slots_start(slot: usize) -> usize {
    if slot > HEADER && slot.is_power_of_two() {
        slot
    } else {
        HEADER
    }
}

fn base_of(block: *mut u8) -> *mut u8 {
    block.wrapping_sub(block as usize % SLAB)
}

/// A fresh slab: SLAB bytes aligned to SLAB, carved from a mapping twice that size.
fn map_slab() -> Option<*mut u8> {
    let len = NonZeroUsize::new(2 * SLAB)?;
    // SAFETY: a new private anonymous mapping at an address the kernel picks; it overlaps
    // nothing that exists.
    let wide = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }
    .ok()?;
    let start = wide.as_ptr() as usize;
    let aligned = start.next_multiple_of(SLAB);
    let head = aligned - start;
    let tail = SLAB - head;
    // SAFETY: the head [start, aligned) and the tail [aligned + SLAB, start + 2 * SLAB) are
    // parts of the mapping just made, which nothing refers to yet.
    unsafe {
        if head > 0 {
            let _ = munmap(wide, head);
        }
        if let Some(t) = NonNull::new((aligned + SLAB) as *mut std::ffi::c_void) {
            if tail > 0 {
                let _ = munmap(t, tail);
            }
        }
    }
    Some(aligned as *mut u8)
}

impl Slabs {
    pub const fn new() -> Slabs {
        Slabs {
            busy: AtomicBool::new(false),
            lists: UnsafeCell::new(Lists {
                partial: [ptr::null_mut(); CLASSES],
                spare: [ptr::null_mut(); CLASSES],
            }),
        }
    }

    fn locked<R>(&self, f: impl FnOnce(&mut Lists) -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` is held, so this is the only reference to the lists until it is
        // released below; `f` cannot re-enter (it allocates nothing).
        let r = f(unsafe { &mut *self.lists.get() });
        self.busy.store(false, Ordering::Release);
        r
    }

    /// A slot of class `class` (slot size `slot`), or `None` when no memory can be mapped.
    pub fn alloc(&self, class: usize, slot: usize) -> Option<Block> {
        self.locked(|l| {
            let head = l.partial.get_mut(class)?;
            if head.is_null() {
                let spare = l.spare.get_mut(class)?;
                let base = if spare.is_null() {
                    map_slab()?
                } else {
                    std::mem::replace(spare, ptr::null_mut()).cast()
                };
                let s = header(base);
                // SAFETY: `base` is a whole slab this heap owns and no list holds (fresh, or
                // the spare just taken, whose pages read as zero); its header is ours to set.
                unsafe {
                    s.write(Slab {
                        next: ptr::null_mut(),
                        prev: ptr::null_mut(),
                        free: 0,
                        bump: 0,
                        used: 0,
                        slot: slot as u32,
                        capacity: ((SLAB - slots_start(slot)) / slot) as u32,
                    });
                }
                *head = s;
            }
            let s = *head;
            // SAFETY: `s` heads the partial list, so it is a live slab with a free slot; the
            // slot read from the free list lies in the slab (we wrote it when freeing it).
            unsafe {
                let first = base_of(s.cast()).add(slots_start(slot));
                let (index, zero) = if (*s).free != 0 {
                    let index = (*s).free - 1;
                    let p = first.add(index as usize * slot);
                    (*s).free = p.cast::<u32>().read();
                    (index, false)
                } else {
                    (*s).bump += 1;
                    ((*s).bump - 1, true)
                };
                (*s).used += 1;
                if (*s).used == (*s).capacity {
                    // Full: off the partial list.
                    *head = (*s).next;
                    if let Some(n) = (*s).next.as_mut() {
                        n.prev = ptr::null_mut();
                    }
                    (*s).next = ptr::null_mut();
                }
                Some(Block {
                    ptr: first.add(index as usize * slot),
                    zero,
                })
            }
        })
    }

    /// Frees `block`.
    ///
    /// # Safety
    /// `block` came from `alloc(class, _)` of this heap and is not used any more.
    pub unsafe fn free(&self, block: *mut u8, class: usize) {
        self.locked(|l| {
            let base = base_of(block);
            let s = header(base);
            let (Some(head), Some(spare)) = (l.partial.get_mut(class), l.spare.get_mut(class))
            else {
                return;
            };
            // SAFETY: `block` is a live slot of the slab at `base` (the caller's promise), so
            // the header is that slab's and the slot is ours to overwrite.
            unsafe {
                let slot = (*s).slot as usize;
                let index = (block as usize - base as usize - slots_start(slot)) / slot;
                let was_full = (*s).used == (*s).capacity;
                block.cast::<u32>().write((*s).free);
                (*s).free = index as u32 + 1;
                (*s).used -= 1;
                if was_full {
                    (*s).prev = ptr::null_mut();
                    (*s).next = *head;
                    if let Some(n) = head.as_mut() {
                        n.prev = s;
                    }
                    *head = s;
                }
                if (*s).used == 0 {
                    match (*s).prev.as_mut() {
                        Some(p) => p.next = (*s).next,
                        None => *head = (*s).next,
                    }
                    if let Some(n) = (*s).next.as_mut() {
                        n.prev = (*s).prev;
                    }
                    let Some(whole) = NonNull::new(base.cast::<std::ffi::c_void>()) else {
                        return;
                    };
                    if spare.is_null() {
                        // Kept mapped, its pages given back; it reads as zero when reused.
                        let _ = madvise(whole, SLAB, MmapAdvise::MADV_DONTNEED);
                        *spare = base.cast();
                    } else {
                        let _ = munmap(whole, SLAB);
                    }
                }
            }
        })
    }

    /// How many slabs are on partial lists and spare (for tests).
    #[cfg(test)]
    fn mapped(&self) -> (usize, usize) {
        self.locked(|l| {
            let mut partial = 0;
            for &h in &l.partial {
                let mut s = h;
                while !s.is_null() {
                    partial += 1;
                    // SAFETY: (test) list members are live slabs.
                    s = unsafe { (*s).next };
                }
            }
            (partial, l.spare.iter().filter(|s| !s.is_null()).count())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_multiples_of_16_with_little_waste() {
        let mut last = class_of(1, 8).unwrap();
        assert_eq!(last, (0, 16));
        for size in 1..=MAX_CLASS {
            let (class, slot) = class_of(size, 8).unwrap();
            assert!(slot >= size && slot % 16 == 0, "{size} → {slot}");
            assert!(slot <= 16 || slot * 4 <= size * 5 + 64, "{size} → {slot}");
            assert!(class < CLASSES);
            assert!(class == last.0 || class == last.0 + 1, "{size}");
            if class == last.0 {
                assert_eq!(slot, last.1);
            }
            last = (class, slot);
        }
        assert_eq!(last, (CLASSES - 1, MAX_CLASS));
        assert!(class_of(MAX_CLASS + 1, 8).is_none());
        // Over-aligned: a power-of-two slot at least the alignment.
        assert_eq!(class_of(100, 64).unwrap().1, 128);
        assert_eq!(class_of(8, 4096).unwrap().1, 4096);
        assert!(class_of(8, 8192).is_none());
    }

    #[test]
    fn blocks_are_distinct_aligned_zero_when_fresh_and_keep_their_bytes() {
        let heap = Slabs::new();
        let mut live: Vec<(*mut u8, usize, usize, u8)> = Vec::new();
        let mut seed = 0x9e37_79b9_u32;
        for round in 0..20_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if !seed.is_multiple_of(3) || live.is_empty() {
                let size = 1 + (seed as usize >> 4) % 3000;
                let align = 1 << ((seed >> 20) % 8);
                let (class, slot) = class_of(size, align).unwrap();
                let b = heap.alloc(class, slot).unwrap();
                assert_eq!(b.ptr as usize % align, 0);
                // SAFETY: (test) the block has `size` bytes.
                let bytes = unsafe { std::slice::from_raw_parts_mut(b.ptr, size) };
                if b.zero {
                    assert!(bytes.iter().all(|&x| x == 0), "fresh block not zero");
                }
                let mark = round as u8;
                bytes.fill(mark);
                live.push((b.ptr, size, class, mark));
            } else {
                let i = seed as usize % live.len();
                let (p, size, class, mark) = live.swap_remove(i);
                // SAFETY: (test) a live block of `size` bytes, then freed once.
                unsafe {
                    let bytes = std::slice::from_raw_parts(p, size);
                    assert!(bytes.iter().all(|&x| x == mark), "block overwritten");
                    heap.free(p, class);
                }
            }
        }
        for (p, _, class, _) in live {
            // SAFETY: (test) each live block freed once.
            unsafe { heap.free(p, class) };
        }
        let (partial, spare) = heap.mapped();
        assert_eq!(partial, 0, "slabs still on partial lists");
        assert!(spare <= CLASSES);
    }

    #[test]
    fn emptied_slabs_are_unmapped_but_one_spare_per_class() {
        let heap = Slabs::new();
        let (class, slot) = class_of(2600, 8).unwrap();
        let blocks: Vec<Block> = (0..1000)
            .map(|_| heap.alloc(class, slot).unwrap())
            .collect();
        let per_slab = (SLAB - slots_start(slot)) / slot;
        let slabs = 1000usize.div_ceil(per_slab);
        assert_eq!(heap.mapped(), (1, 0), "only the last slab has room");
        for b in &blocks {
            // SAFETY: (test) written within the slot, then freed once.
            unsafe {
                b.ptr.write_bytes(0xa5, slot);
            }
        }
        for b in blocks.iter().skip(per_slab) {
            // SAFETY: (test) each freed once.
            unsafe { heap.free(b.ptr, class) };
        }
        // The first slab is still full; every other one is gone but one spare.
        assert_eq!(heap.mapped(), (0, 1), "of {slabs} slabs");
        // The spare is reused, and reads as zero.
        let b = heap.alloc(class, slot).unwrap();
        assert!(b.zero);
        // SAFETY: (test) the block has `slot` bytes.
        assert!(unsafe { std::slice::from_raw_parts(b.ptr, slot) }
            .iter()
            .all(|&x| x == 0));
        // SAFETY: (test) freed once.
        unsafe { heap.free(b.ptr, class) };
        for b in blocks.iter().take(per_slab) {
            // SAFETY: (test) each freed once.
            unsafe { heap.free(b.ptr, class) };
        }
        assert_eq!(heap.mapped(), (0, 1));
    }
}
