//! Memory allocation: parsing allocates and frees one syntax node at a time, which glibc's malloc does slowly
//! across threads; mimalloc does it in a fraction of the time. The binaries install [`Allocator`] for Rust code,
//! and [`route_tree_sitter`] sends the C parser's allocations to mimalloc as well.

use std::sync::Once;

/// The global allocator of the worker's binaries (`#[global_allocator] static A: Allocator = Allocator;`).
pub use mimalloc::MiMalloc as Allocator;

static ROUTED: Once = Once::new();

/// Makes tree-sitter allocate with mimalloc. Runs once per process, before the first parser is created (every
/// parser, and so every tree, is made after this call; nothing allocated by the old allocator is ever freed
/// by the new one).
pub fn route_tree_sitter() {
    ROUTED.call_once(|| {
        // SAFETY: called before any tree-sitter object exists in this process (see above); mimalloc's functions
        // have the C signatures tree-sitter expects.
        unsafe {
            tree_sitter::set_allocator(
                Some(libmimalloc_sys::mi_malloc),
                Some(zeroed_array),
                Some(libmimalloc_sys::mi_realloc),
                Some(libmimalloc_sys::mi_free),
            );
        }
    });
}

/// `calloc` on mimalloc (the crate exposes `mi_zalloc`, not `mi_calloc`).
unsafe extern "C" fn zeroed_array(count: usize, size: usize) -> *mut std::ffi::c_void {
    match count.checked_mul(size) {
        // SAFETY: mi_zalloc accepts any size and returns null when it cannot allocate.
        Some(bytes) => unsafe { libmimalloc_sys::mi_zalloc(bytes) },
        None => std::ptr::null_mut(),
    }
}
