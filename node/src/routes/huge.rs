//! [P] Growing the big decision tables into transparent huge pages.
//!
//! The one system call here, `madvise(MADV_HUGEPAGE)`, is advice to the kernel about the page
//! size backing memory this process allocated: it does no I/O, reads no clock, and no value
//! depends on whether it is honoured (where huge pages are off, nothing changes but speed).
//! It is the tidy test's one sanctioned `libc::` in pure code.

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
