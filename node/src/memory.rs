//! [E] Giving freed memory back to the operating system. (How the big tables grow into
//! huge pages is [`crate::routes::huge`].)
//!
//! glibc's allocator keeps memory a program frees in its arenas for reuse instead of
//! returning it, except at the very top of the main heap. After a large rebuild (the
//! decision tables over a hundred full views: their old versions, the interning index and
//! the growth slack of the new ones are freed at once, a few hundred MB) that memory stays
//! counted in the process's RSS for as long as nothing reuses it. [`release_free`] asks
//! glibc to hand back every whole free page, in every arena.

/// Returns free memory to the system after a large rebuild; costs a walk over the free
/// lists (milliseconds), so it is for the rare heavy change, not the answer path.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer and only touches glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
