//! Decoding any PNG/JPEG/TIFF/BMP file to 8-bit RGB or grayscale, with errors that name the file.
use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::Path;

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

fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
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
    // The reader's default limits (512 MiB per allocation) refuse absurd header sizes up front.
    let reader = ImageReader::with_format(Cursor::new(&bytes[..]), format);
    // Decoders are third-party code fed untrusted bytes: a panic there must become an error.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| bad(format!("the {format:?} decoder crashed on this file")))?;
    let img = decoded.map_err(|e| bad(format!("{format:?}: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad(format!(
            "empty image ({}x{})",
            img.width(),
            img.height()
        )));
    }
    Ok(img)
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
