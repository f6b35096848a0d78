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

/// `items` as a boxed slice whose memory the kernel is asked to back with transparent huge
/// pages, for the big read-mostly tables the answer path looks up at random: the decision
/// table's rows and ranges (hundreds of MB at full scale). With 4 KiB pages nearly every
/// such lookup also misses the TLB and walks the page tables; with 2 MiB pages it does not.
///
/// In place: `MADV_HUGEPAGE` marks the table's whole 2 MiB pages, and `MADV_COLLAPSE`
/// (Linux 6.1+) remaps them now, 2 MiB at a time, so memory use never rises by more than
/// that. Older kernels collapse them later (khugepaged); where huge pages are off, or the
/// table is small, nothing changes. Runs once per rebuild, never on the answer path.
pub fn into_hugepages<T>(items: Vec<T>) -> Box<[T]> {
    let items = items.into_boxed_slice();
    let bytes = size_of_val(&*items);
    if bytes >= HUGE_MIN_BYTES {
        advise_huge(items.as_ptr() as usize, bytes);
    }
    items
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
        for advice in [libc::MADV_HUGEPAGE, libc::MADV_COLLAPSE] {
            // SAFETY: the range lies inside one live allocation of ours (rounded inwards to
            // whole huge pages); both advices change how it is backed, never its contents.
            let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, advice) };
            if rc != 0 {
                tracing::debug!(
                    advice,
                    error = %std::io::Error::last_os_error(),
                    "huge pages not available for a table"
                );
                return;
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (start, len);
}
