//! [E] Giving freed memory back to the operating system.
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

/// Below this, a table is left as the allocator placed it.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// Makes room in `v` for `additional` more items. Once `v` is large, it grows into memory
/// the kernel is asked to back with transparent huge pages (`MADV_HUGEPAGE`) before it is
/// first touched, so its pages fault in 2 MiB at a time: for the big read-mostly tables the
/// answer path looks up at random (the decision table's rows and ranges, hundreds of MB at
/// full scale). With 4 KiB pages nearly every such lookup also misses the TLB and walks the
/// page tables; with 2 MiB pages it does not.
///
/// Growth doubles, as `Vec`'s own does, by copying into the new advised buffer; a final
/// `into_boxed_slice` shrinks in place and keeps the huge pages. Where huge pages are off
/// the advice does nothing and the table is as before. Runs on rebuilds only, never on the
/// answer path.
#[inline]
pub fn reserve_huge<T: Copy>(v: &mut Vec<T>, additional: usize) {
    let needed = v.len() + additional;
    if needed <= v.capacity() {
        return;
    }
    grow_huge(v, needed);
}

#[cold]
fn grow_huge<T: Copy>(v: &mut Vec<T>, needed: usize) {
    let capacity = needed.max(v.capacity() * 2).max(8);
    if capacity * size_of::<T>() < HUGE_MIN_BYTES {
        v.reserve_exact(capacity - v.len());
        return;
    }
    let mut next: Vec<T> = Vec::with_capacity(capacity);
    advise_huge(next.as_ptr() as usize, capacity * size_of::<T>());
    next.extend_from_slice(v);
    *v = next;
}

/// Advises huge pages for the whole 2 MiB pages inside `[start, start + len)`.
fn advise_huge(start: usize, len: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const HUGE: usize = 2 << 20;
        let first = start.next_multiple_of(HUGE);
        let end = (start + len) & !(HUGE - 1);
        if end <= first {
            return;
        }
        // SAFETY: the range lies inside one live allocation of ours (rounded inwards to
        // whole huge pages); the advice changes how it is backed, never its contents.
        let rc =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "huge pages not available for a table"
            );
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (start, len);
}
