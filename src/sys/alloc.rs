//! The global allocator: the C library's malloc, except that large blocks come straight from
//! `mmap`.
//!
//! Why: the memory model counts on a zeroed allocation that nobody has touched costing no RSS
//! (the relay pool, the replay filter and the ban table are allocated zeroed at start-up and
//! filled slowly, or never). musl's and glibc's `calloc` hand out fresh anonymous pages for
//! large sizes and skip the memset, but the C library zig links into the router builds zeroes
//! every byte of a `calloc` in a loop: a default ss-tunnel on the x86_64 router build sat at
//! 2,636 KiB of RSS idle instead of 892 KiB, and under qemu-mipsel the loop ran 8 million
//! instructions at start. Pages from `mmap` are zero by the kernel's promise and cost nothing
//! until written, whatever the C library does.

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::ptr::{self, NonNull};

/// Sizes from which a block is mapped on its own (musl's threshold is about the same).
const DIRECT: usize = 128 * 1024;
/// Alignment a fresh mapping is known to have: the smallest page size Linux uses.
const PAGE_ALIGN: usize = 4096;

/// See the module documentation. Install with `#[global_allocator]`.
pub struct Allocator;

fn is_direct(layout: Layout) -> bool {
    layout.size() >= DIRECT && layout.align() <= PAGE_ALIGN
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

// SAFETY: every block is either the C library's (sizes below DIRECT, or over-aligned ones) or
// a mapping of exactly `layout.size()` bytes; `is_direct` on the layout, which callers must
// pass back unchanged, tells which, so each block is freed by the allocator that made it.
// Mappings are page-aligned, which satisfies every alignment `is_direct` accepts, and zero-
// filled, as `alloc_zeroed` requires.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_direct(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_direct(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_direct(layout) {
            if let Some(p) = NonNull::new(block) {
                // SAFETY: `block` is a mapping of `layout.size()` bytes made by `map` (the
                // caller passes the layout it allocated with) and nothing uses it any more.
                let _ = unsafe { munmap(p.cast(), layout.size()) };
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to `layout.align()`, does
        // not overflow, which is what this constructor requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_direct(layout) && !is_direct(new_layout) {
            // SAFETY: forwarded with the caller's guarantees; both sizes are the C library's.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // One side is a mapping: move the bytes between the two allocators.
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
    fn over_aligned_and_small_blocks_go_to_the_c_library() {
        assert!(!is_direct(
            Layout::from_size_align(DIRECT, 2 * PAGE_ALIGN).unwrap()
        ));
        assert!(!is_direct(layout(DIRECT - 1)));
        assert!(is_direct(layout(DIRECT)));
        let a = Allocator;
        let l = Layout::from_size_align(DIRECT, 2 * PAGE_ALIGN).unwrap();
        // SAFETY: (test) freed with the layout it was allocated with.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % (2 * PAGE_ALIGN), 0);
            a.dealloc(p, l);
        }
    }
}
