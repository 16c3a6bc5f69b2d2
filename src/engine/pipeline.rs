//! Images in: parallel decoding and preprocessing, overlapped with the forward pass, and the
//! progress reports of long phases.
use crate::bank::CropMode;
use crate::data::{self, DataError, Geometry};
use image::RgbImage;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

/// Progress of long phases; the CLI draws bars, the GUI forwards messages, tests ignore it.
pub trait Progress: Sync {
    fn start(&self, _phase: &'static str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// An image decoded and preprocessed, ready for the backbone.
pub struct Decoded {
    pub path: PathBuf,
    pub crop: RgbImage,
    pub geometry: Geometry,
}

/// Decodes and preprocesses images in parallel; each failure names its file.
pub fn decode_all(paths: &[PathBuf], crop: CropMode) -> Vec<Result<Decoded, DataError>> {
    paths
        .par_iter()
        .map(|p| {
            let img = data::load_rgb8(p)?;
            let (crop, geometry) = data::preprocess(&img, crop);
            Ok(Decoded {
                path: p.clone(),
                crop,
                geometry,
            })
        })
        .collect()
}

/// Decodes `paths` in chunks of `batch`, one chunk ahead of `consume` and on another thread, so
/// decoding overlaps the forward pass. `consume` gets each chunk's offset, its results and the
/// decode time per image, and returns false to stop.
pub fn for_each_decoded<'p>(
    paths: &'p [PathBuf],
    batch: usize,
    crop: CropMode,
    mut consume: impl FnMut(usize, Vec<Result<Decoded, DataError>>, f32) -> bool,
) {
    let chunks: Vec<&[PathBuf]> = paths.chunks(batch.max(1)).collect();
    let decode = move |chunk: &[PathBuf]| {
        let t = Instant::now();
        let decoded = decode_all(chunk, crop);
        (
            decoded,
            t.elapsed().as_secs_f32() * 1000.0 / chunk.len() as f32,
        )
    };
    std::thread::scope(|s| {
        // Named, so the decode share shows in a per-thread CPU split; a chunk whose thread
        // cannot start is decoded in line instead.
        let ahead = |c: &'p [PathBuf]| {
            std::thread::Builder::new()
                .name("pc-prefetch".into())
                .spawn_scoped(s, move || decode(c))
                .map_err(|_| c)
        };
        let mut next = chunks.first().map(|&c| ahead(c));
        let mut offset = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let Some(pending) = next.take() else { break };
            let (decoded, ms) = match pending {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(c) => decode(c),
            };
            next = chunks.get(i + 1).map(|&c| ahead(c));
            if !consume(offset, decoded, ms) {
                break;
            }
            offset += chunk.len();
        }
    });
}
