//! The allocator's policy for large blocks. glibc hands every block over 32 MB back to the kernel
//! when it is freed, so each high-resolution image's feature maps and search chunks were
//! page-faulted and zeroed afresh: a third of a 1 MP prediction went there (README, Performance).

/// Serves large blocks from the heap and trims it only past 1 GB free at its top, so the next
/// image or chunk reuses the pages the last one freed. Called once, before other threads start.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Returns the heap's free pages to the kernel between phases of different shapes (a fit's
/// features, coreset, calibration), so one phase's freed buffers do not add to the next one's peak.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
