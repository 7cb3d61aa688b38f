//! The global allocator: size-classed slabs (`slab.rs`) for blocks up to 16 KiB, their own
//! mappings for larger ones, the C library's malloc only for alignments above a page.
//!
//! Why not malloc for everything: the memory model counts on a zeroed allocation that nobody
//! has touched costing no RSS (the relay pool, the replay filter and the ban table are
//! allocated zeroed at start-up and filled slowly, or never), and on memory coming back after
//! a flood of connections. The C library zig links into the router builds zeroes every byte of
//! a `calloc` in a loop (a default ss-tunnel on the x86_64 router build sat at 2,636 KiB of RSS
//! idle instead of 892 KiB) and never returns a freed block. Pages from `mmap` are zero by the
//! kernel's promise and cost nothing until written; slabs are unmapped when emptied.

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::ptr::{self, NonNull};

use super::slab::{class_of, Slabs};

/// Sizes from which a block is mapped on its own.
#[cfg(test)]
const DIRECT: usize = super::slab::MAX_CLASS + 1;
/// Alignment a fresh mapping is known to have: the smallest page size Linux uses.
const PAGE_ALIGN: usize = 4096;

/// The process's slabs.
static SLABS: Slabs = Slabs::new();

/// See the module documentation. Install with `#[global_allocator]`.
pub struct Allocator;

/// Which allocator serves a layout; a block is always freed by the one the same layout picks.
enum Route {
    Slab(usize, usize),
    Direct,
    System,
}

fn route(layout: Layout) -> Route {
    match class_of(layout.size(), layout.align()) {
        Some((class, slot)) => Route::Slab(class, slot),
        None if layout.align() <= PAGE_ALIGN => Route::Direct,
        None => Route::System,
    }
}

fn map(size: usize) -> *mut u8 {
    let Some(len) = NonZeroUsize::new(size) else {
        return ptr::null_mut();
    };
    // SAFETY: a new private anonymous mapping at an address the kernel picks: it overlaps
    // nothing that exists, so creating it cannot invalidate any reference.
    let mapped = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    };
    mapped.map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}

// SAFETY: every block is a slab slot of the class `route` gives for its layout, a mapping of
// exactly `layout.size()` bytes, or the C library's; `route` on the layout, which callers must
// pass back unchanged, tells which, so each block is freed by the allocator that made it.
// Slots are aligned as `class_of` promises for the layout, mappings are page-aligned (every
// alignment `Route::Direct` takes), and both are zero where `alloc_zeroed` says so.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match route(layout) {
            Route::Slab(class, slot) => SLABS.alloc(class, slot).map_or(ptr::null_mut(), |b| b.ptr),
            Route::Direct => map(layout.size()),
            // SAFETY: forwarded with the caller's guarantees.
            Route::System => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match route(layout) {
            Route::Slab(class, slot) => match SLABS.alloc(class, slot) {
                Some(b) if b.zero => b.ptr,
                Some(b) => {
                    // SAFETY: the slot has `slot` >= `layout.size()` bytes and is ours.
                    unsafe { b.ptr.write_bytes(0, layout.size()) };
                    b.ptr
                }
                None => ptr::null_mut(),
            },
            Route::Direct => map(layout.size()),
            // SAFETY: forwarded with the caller's guarantees.
            Route::System => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match route(layout) {
            // SAFETY: `block` was allocated with this layout, so from this class's slabs.
            Route::Slab(class, _) => unsafe { SLABS.free(block, class) },
            Route::Direct => {
                if let Some(p) = NonNull::new(block) {
                    // SAFETY: `block` is a mapping of `layout.size()` bytes made by `map` (the
                    // caller passes the layout it allocated with) and nothing uses it any more.
                    let _ = unsafe { munmap(p.cast(), layout.size()) };
                }
            }
            // SAFETY: forwarded with the caller's guarantees.
            Route::System => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to `layout.align()`, does
        // not overflow, which is what this constructor requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (route(layout), route(new_layout)) {
            // The same slot size: the block already has room (or shrinks in place).
            (Route::Slab(a, _), Route::Slab(b, _)) if a == b => return block,
            (Route::System, Route::System) => {
                // SAFETY: forwarded with the caller's guarantees; both are the C library's.
                return unsafe { System.realloc(block, layout, new_size) };
            }
            _ => {}
        }
        // Another class or allocator: move the bytes.
        // SAFETY: `new_layout` has a non-zero size (realloc's contract).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are valid for the smaller size and are distinct
            // allocations; `block` is freed with the layout it was allocated with.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

/// `len` zero bytes on the heap, or `None` when the allocator has no room: unlike `vec![0; len]`,
/// which aborts the process with no message when the allocation fails. With [`Allocator`]
/// installed a large request is a fresh mapping, so pages nobody writes cost no RSS.
pub fn zeroed_bytes(len: usize) -> Option<Box<[u8]>> {
    if len == 0 {
        return Some(Box::default());
    }
    // Fails for more than isize::MAX bytes, which no allocation may have.
    let layout = Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (checked above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a live allocation of the global allocator made with `layout` (`len` bytes,
    // alignment 1), which is the layout `Box<[u8]>` frees a slice of `len` bytes with; every
    // byte is initialised (zero), and nothing else points at it, so the box owns it uniquely.
    Some(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, len)) })
}

/// Gives the pages that lie wholly inside `buf` back to the kernel: they cost no RSS until
/// written again, and read as zero then. For buffers whose contents no longer matter (a free
/// pool block).
pub fn release_pages(buf: &mut [u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return,
    };
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(page);
    let last = (start + buf.len()) / page * page;
    if last <= first {
        return;
    }
    // SAFETY: [first, last) lies inside `buf`, which we borrow exclusively, so no other
    // reference sees the bytes change; they become zero, a valid value for `u8`. MADV_DONTNEED
    // only drops the pages' contents, never the mapping.
    unsafe {
        nix::libc::madvise(
            first as *mut nix::libc::c_void,
            last - first,
            nix::libc::MADV_DONTNEED,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_bytes_are_zero_and_impossible_sizes_fail_without_aborting() {
        for len in [0, 1, 4095, DIRECT, 3 * DIRECT + 5] {
            let b = zeroed_bytes(len).unwrap();
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0), "{len}");
        }
        // Writable and freed with the right layout (a wrong one would trip the allocator).
        let mut b = zeroed_bytes(DIRECT).unwrap();
        b[DIRECT - 1] = 1;
        drop(b);
        assert!(zeroed_bytes(usize::MAX).is_none(), "above isize::MAX");
        assert!(
            zeroed_bytes(isize::MAX as usize).is_none(),
            "no address space"
        );
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    /// How many of the pages of `[p, p + len)` are resident, by mincore(2).
    fn resident_pages(p: *mut u8, len: usize) -> usize {
        let pages = len.div_ceil(PAGE_ALIGN);
        let mut vec = vec![0u8; pages];
        // SAFETY: (test) `p` is page-aligned and mapped for `len` bytes; `vec` has one byte
        // per page.
        let rc = unsafe { nix::libc::mincore(p.cast(), len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 != 0).count()
    }

    #[test]
    fn large_zeroed_blocks_are_zero_and_cost_no_rss_until_written() {
        let a = Allocator;
        let size = 8 << 20;
        // SAFETY: (test) a non-zero layout; the block is freed with the same layout.
        unsafe {
            let p = a.alloc_zeroed(layout(size));
            assert!(!p.is_null());
            assert_eq!(p as usize % PAGE_ALIGN, 0);
            assert_eq!(resident_pages(p, size), 0, "zeroed block made resident");
            let bytes = std::slice::from_raw_parts_mut(p, size);
            bytes[size - 1] = 7;
            assert_eq!(resident_pages(p, size), 1);
            assert!(bytes[..size - 1].iter().step_by(4093).all(|&b| b == 0));
            a.dealloc(p, layout(size));
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_the_threshold_both_ways() {
        let a = Allocator;
        for (from, to) in [
            (1000, DIRECT * 2),
            (DIRECT * 2, 1000),
            (DIRECT, DIRECT * 3),
            (DIRECT * 3, DIRECT + 1),
            (100, 200),
        ] {
            // SAFETY: (test) each block is used within its size and freed with its layout.
            unsafe {
                let p = a.alloc(layout(from));
                assert!(!p.is_null());
                for i in 0..from {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout(from), to);
                assert!(!q.is_null());
                for i in 0..from.min(to) {
                    assert_eq!(*q.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
                }
                a.dealloc(q, layout(to));
            }
        }
    }

    #[test]
    fn blocks_go_to_slabs_mappings_or_the_c_library_by_size_and_alignment() {
        let routes = |size: usize, align: usize| match route(
            Layout::from_size_align(size, align).unwrap(),
        ) {
            Route::Slab(..) => "slab",
            Route::Direct => "direct",
            Route::System => "system",
        };
        assert_eq!(routes(1, 1), "slab");
        assert_eq!(routes(DIRECT - 1, 8), "slab");
        assert_eq!(routes(DIRECT, 8), "direct");
        assert_eq!(routes(100, PAGE_ALIGN), "slab");
        assert_eq!(routes(DIRECT, PAGE_ALIGN), "direct");
        assert_eq!(routes(100, 2 * PAGE_ALIGN), "system");
        let a = Allocator;
        for l in [
            Layout::from_size_align(DIRECT, 2 * PAGE_ALIGN).unwrap(),
            Layout::from_size_align(100, 256).unwrap(),
            layout(2600),
        ] {
            // SAFETY: (test) freed with the layout it was allocated with.
            unsafe {
                let p = a.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % l.align(), 0);
                p.write_bytes(1, l.size());
                a.dealloc(p, l);
            }
        }
    }

    #[test]
    fn zeroed_slab_blocks_are_zero_after_reuse() {
        let a = Allocator;
        let l = layout(700);
        // SAFETY: (test) each block used within its size and freed with its layout.
        unsafe {
            let p = a.alloc(l);
            p.write_bytes(0xff, 700);
            a.dealloc(p, l);
            let q = a.alloc_zeroed(l);
            assert!(std::slice::from_raw_parts(q, 700).iter().all(|&b| b == 0));
            a.dealloc(q, l);
        }
    }
}
