//! Helpers shared by integration tests: locating ../shared and reading .npy reference arrays.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

/// `../shared/data/<sub>` next to the checkout, or None with a printed skip message.
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is not present (tests that need ../shared skip without it)", p.display());
        None
    }
}

/// A parsed .npy array: shape and values widened to f64.
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Reads little-endian `<f4`, `<f8` or `<i8` C-order .npy files.
pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not a .npy file", path.display());
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).expect("ascii header");
    assert!(header.contains("'fortran_order': False"), "{}: Fortran order", path.display());
    let shape_txt = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("shape");
    let shape: Vec<usize> = shape_txt.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let body = &bytes[start + hlen..];
    let data: Vec<f64> = if header.contains("'<f4'") {
        body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
    } else if header.contains("'<f8'") {
        body.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    } else if header.contains("'<i8'") {
        body.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
    } else {
        panic!("{}: unsupported dtype in {header}", path.display())
    };
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{}: size", path.display());
    Npy { shape, data }
}

/// Path of the built `patchcore` binary for CLI tests.
pub fn patchcore_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patchcore"))
}
