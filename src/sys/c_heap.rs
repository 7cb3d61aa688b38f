//! The C allocator's functions on the static musl builds, served by ours (`alloc.rs`).
//!
//! std keeps a few allocations on `System` whatever the global allocator is (a thread's
//! handle, the thread-local destructor list), so the C library's `malloc` would be linked for
//! them: zig's comes with its own heap, 8 KB of the mipsel binary. Defining the functions here
//! keeps it out. `free` is not told a block's size, so each block carries it in a header.
//!
//! ```text
//! | size (usize) | pad to 16 | caller's bytes ...      16-byte aligned, like musl's malloc
//! ```

use super::alloc::Allocator;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_void};
use std::ptr;

/// The header in front of every block; also the blocks' alignment.
const HEAD: usize = 16;
const ENOMEM: c_int = 12;
const EINVAL: c_int = 22;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEAD)?, HEAD).ok()
}

/// A block of `size` caller bytes, zeroed if asked; null when out of memory.
fn allocate(size: usize, zeroed: bool) -> *mut c_void {
    let Some(layout) = layout(size) else {
        return ptr::null_mut();
    };
    // SAFETY: `layout` has a non-zero size (at least HEAD) and a valid alignment.
    let base = unsafe {
        if zeroed {
            Allocator.alloc_zeroed(layout)
        } else {
            Allocator.alloc(layout)
        }
    };
    if base.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `base` is HEAD-aligned and the block is at least HEAD bytes long, so the size
    // fits in front and `base + HEAD` is inside (or one past the end of) the block.
    unsafe {
        base.cast::<usize>().write(size);
        base.add(HEAD).cast()
    }
}

/// The caller bytes of `block` (from `allocate`) and its base.
///
/// # Safety
/// `block` must be a live pointer `allocate` returned.
unsafe fn header(block: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: per the contract, HEAD bytes in front of `block` are its header.
    unsafe {
        let base = block.cast::<u8>().sub(HEAD);
        (base, base.cast::<usize>().read())
    }
}

#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    allocate(size, false)
}

#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    count
        .checked_mul(size)
        .map_or(ptr::null_mut(), |n| allocate(n, true))
}

/// # Safety
/// `block` is null or a live block from these functions, as C requires.
#[no_mangle]
pub unsafe extern "C" fn free(block: *mut c_void) {
    if block.is_null() {
        return;
    }
    // SAFETY: per the contract; the layout is the one `allocate` made from the same size.
    unsafe {
        let (base, size) = header(block);
        if let Some(layout) = layout(size) {
            Allocator.dealloc(base, layout);
        }
    }
}

/// # Safety
/// `block` is null or a live block from these functions, as C requires.
#[no_mangle]
pub unsafe extern "C" fn realloc(block: *mut c_void, size: usize) -> *mut c_void {
    if block.is_null() {
        return allocate(size, false);
    }
    let new = allocate(size, false);
    if new.is_null() {
        return new;
    }
    // SAFETY: both blocks are live and distinct, each at least `min(old, size)` bytes long;
    // the old one is freed once, after the copy.
    unsafe {
        let (_, old) = header(block);
        ptr::copy_nonoverlapping(block.cast::<u8>(), new.cast::<u8>(), old.min(size));
        free(block);
    }
    new
}

/// Alignments up to 16 only (what std's `System` asks for here); larger ones fail cleanly.
///
/// # Safety
/// `out` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align < size_of::<usize>() {
        return EINVAL;
    }
    if align > HEAD {
        return ENOMEM;
    }
    let block = allocate(size, false);
    if block.is_null() {
        return ENOMEM;
    }
    // SAFETY: per the contract.
    unsafe { out.write(block) };
    0
}

/// # Safety
/// As C's `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if align > HEAD {
        return ptr::null_mut();
    }
    allocate(size, false)
}
