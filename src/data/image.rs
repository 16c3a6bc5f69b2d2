//! Decoding any PNG/JPEG/TIFF/BMP file to 8-bit RGB or grayscale, with errors that name the file.
//! Sizes are checked against [`DecodeLimits`] from the header, before any pixel is allocated, so a
//! 138-byte PNG declaring 1 x 60,000 pixels is refused at once instead of costing gigabytes.
use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;
use std::sync::RwLock;

use super::DataError;

/// Loads an image as 8-bit RGB, like PIL's `Image.open(p).convert("RGB")`: grayscale is
/// replicated, alpha is dropped (not composited), 16-bit samples are rounded to 8 bits.
/// The format is detected from the content, not the extension.
pub fn load_rgb8(path: &Path) -> Result<RgbImage, DataError> {
    Ok(decode(path)?.into_rgb8())
}

/// Loads an image as 8-bit grayscale (for masks): colour is converted with the Rec. 709 luma
/// weights, alpha is dropped, 16-bit samples are rounded to 8 bits.
pub fn load_luma8(path: &Path) -> Result<GrayImage, DataError> {
    Ok(decode(path)?.into_luma8())
}

/// An image's `(width, height)` from its header alone (no pixel is decoded): what `fit` reads
/// of every training image to choose the working resolution.
pub fn image_size(path: &Path) -> Result<(u32, u32), DataError> {
    let bad = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let reader = ImageReader::open(path)
        .map_err(|source| DataError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .with_guessed_format()
        .map_err(|e| bad(format!("unreadable header: {e}")))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| bad(format!("unreadable header: {e}")))?;
    decode_limits().check(w, h).map_err(bad)?;
    Ok((w, h))
}

/// What an image may be before it is decoded. Process-wide, like a ulimit: every decode (engine
/// batches, the app's thumbnails, masks) obeys the same policy, which the CLI's `--max-pixels`
/// and `--max-aspect` set once at start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeLimits {
    /// Width x height at most: 64 MP holds an 8000 x 8000 sensor; decoded as 16-bit RGBA it
    /// takes 512 MB, so any accepted image stays under 1 GB while it is converted.
    pub max_pixels: u64,
    /// Longer side / shorter side at most: line-scan strips of 32:1 pass, 1 x 60,000 does not.
    pub max_aspect: f64,
}

impl DecodeLimits {
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_pixels: 64_000_000,
        max_aspect: 32.0,
    };

    /// Largest file worth reading: 8 bytes per allowed pixel (uncompressed 16-bit RGBA) plus
    /// room for metadata; anything larger cannot be an image within the limits.
    fn max_file_bytes(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(64 << 20)
    }

    fn check(&self, w: u32, h: u32) -> Result<(), String> {
        if w == 0 || h == 0 {
            return Err(format!("empty image ({w}x{h})"));
        }
        let pixels = w as u64 * h as u64;
        if pixels > self.max_pixels {
            return Err(format!(
                "{w} x {h} = {pixels} pixels is over the decode limit of {} pixels (raise it with --max-pixels)",
                self.max_pixels
            ));
        }
        let aspect = w.max(h) as f64 / w.min(h) as f64;
        if aspect > self.max_aspect {
            return Err(format!(
                "{w} x {h} has an aspect ratio of {aspect:.1}:1, over the limit of {}:1 (raise it with --max-aspect)",
                self.max_aspect
            ));
        }
        Ok(())
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::DEFAULT
    }
}

static LIMITS: RwLock<DecodeLimits> = RwLock::new(DecodeLimits::DEFAULT);

/// Sets the limits every later decode in this process checks.
pub fn set_decode_limits(limits: DecodeLimits) {
    if let Ok(mut l) = LIMITS.write() {
        *l = limits;
    }
}

/// The limits in force.
pub fn decode_limits() -> DecodeLimits {
    LIMITS.read().map(|l| *l).unwrap_or_default()
}

fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let limits = decode_limits();
    let read_err = |source| DataError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bad = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > limits.max_file_bytes() {
        return Err(bad(format!(
            "the file is {len} bytes, more than any image within the decode limits ({} pixels) can take",
            limits.max_pixels
        )));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let format = image::guess_format(&bytes)
        .map_err(|_| bad("unrecognised content (expected a PNG, JPEG, TIFF or BMP file)".into()))?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::Bmp
    ) {
        return Err(bad(format!(
            "{format:?} files are not supported (expected PNG, JPEG, TIFF or BMP)"
        )));
    }
    if format == ImageFormat::Jpeg && jpeg_is_truncated(&bytes) {
        return Err(bad(
            "truncated JPEG (no end-of-image marker after the last scan)".into(),
        ));
    }
    let reader = || ImageReader::with_format(Cursor::new(&bytes[..]), format);
    // The header alone gives the size: check it before any pixel buffer exists.
    let (w, h) = guarded(path, format, || reader().into_dimensions())?;
    limits.check(w, h).map_err(bad)?;
    let img = guarded(path, format, || {
        let mut r = reader();
        let mut l = image::Limits::default();
        l.max_image_width = Some(w);
        l.max_image_height = Some(h);
        l.max_alloc = Some(limits.max_file_bytes());
        r.limits(l);
        r.decode()
    })?;
    // A decoder must not hand back another size than its header promised.
    if (img.width(), img.height()) != (w, h) {
        return Err(bad(format!(
            "the header says {w}x{h} but {}x{} pixels were decoded",
            img.width(),
            img.height()
        )));
    }
    Ok(img)
}

/// Runs decoder code on untrusted bytes: its errors and its panics become errors naming the file.
fn guarded<T>(
    path: &Path,
    format: ImageFormat,
    f: impl FnOnce() -> image::ImageResult<T>,
) -> Result<T, DataError> {
    let bad = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| bad(format!("the {format:?} decoder crashed on this file")))?
        .map_err(|e| bad(format!("{format:?}: {e}")))
}

/// The JPEG decoder returns an image for a file cut off inside its scan data, without an error
/// (PIL raises "image file is truncated"), so check that an end-of-image marker follows the last
/// start-of-scan. Entropy-coded
/// data cannot contain either marker (0xFF bytes are stuffed as `FF 00`).
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi < sos,
        (_, None) => true,
        (None, Some(_)) => false,
    }
}
