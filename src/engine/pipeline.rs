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

/// Input pixels one forward pass holds at most on the CPU: the default's largest (8 images of
/// the 4 MP working-resolution cap). A pass's activations and patch features grow with its
/// pixels (about a quarter of a GB per megapixel), so a larger `--resolution` takes fewer images
/// per pass instead of exhausting memory (8 upscaled 8.7 MP images took over 15 GB).
pub const CPU_BATCH_PIXELS: u64 = 32 << 20;

/// Images per forward pass for `asked` at `crop`'s input size on `device`: on a GPU what was
/// asked (its memory is the user's to size), on the CPU at most `CPU_BATCH_PIXELS`, at least one.
pub fn images_per_batch(asked: usize, crop: CropMode, device: tch::Device) -> usize {
    let asked = asked.max(1);
    if device.is_cuda() {
        return asked;
    }
    let (w, h) = crop.input_dims();
    let fits = CPU_BATCH_PIXELS / (u64::from(w) * u64::from(h)).max(1);
    asked.min(fits.max(1) as usize)
}

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

#[cfg(test)]
mod tests {
    use super::images_per_batch;
    use crate::bank::CropMode;
    use tch::Device;

    #[test]
    fn a_cpu_pass_holds_at_most_32_megapixels_and_a_gpu_pass_what_was_asked() {
        let square = |size| CropMode::Full { size };
        assert_eq!(images_per_batch(8, square(1024), Device::Cpu), 8);
        assert_eq!(images_per_batch(8, square(2048), Device::Cpu), 8);
        assert_eq!(images_per_batch(8, square(3328), Device::Cpu), 3);
        assert_eq!(images_per_batch(8, square(8192), Device::Cpu), 1);
        assert_eq!(images_per_batch(0, square(224), Device::Cpu), 1);
        assert_eq!(images_per_batch(64, square(1024), Device::Cuda(0)), 64);
    }
}
