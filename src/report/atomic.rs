//! Atomic file writes: readers see the old file or the new one, never half of either.
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// `fill` writes into a buffered temporary file with a random name in `path`'s folder, which is
/// flushed, synced and renamed over `path`; on any error the temporary file is removed and an
/// existing `path` is left as it was.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(
        ".{}.",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = std::io::BufWriter::new(file);
    fill(&mut w)?;
    w.flush()?;
    w.get_ref().sync_all()?;
    drop(w);
    tmp_path.persist(path).map_err(|e| e.error)
}

/// Fails now if `path` could not be written atomically later (its folder is missing or
/// read-only, or it is a folder): long runs check their outputs before the work, not after.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::other("it is a folder"));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".patchcore-check.")
        .tempfile_in(dir)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out.txt");
        write_atomic(&p, b"first").expect("write");
        let failed = write_atomic_with(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&p).expect("read"), b"first");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(left.len(), 1, "the temporary file is removed on error");
        write_atomic(&p, b"second").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"second");
        check_writable(&p).expect("writable");
        assert!(check_writable(dir.path()).is_err(), "a folder");
        assert!(check_writable(&dir.path().join("no/such/out.txt")).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
