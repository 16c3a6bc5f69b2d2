//! Image decoding for display, off the GUI thread: a couple of threads turn files into
//! downscaled RGBA images that the GUI uploads as textures.
//!
//! The queue is bounded and the GUI submits with `try_submit`: when the operator scrolls fast,
//! requests for rows already gone are never queued in the first place (the GUI asks again next
//! frame for what is still visible), so decoding always works on what is on screen.
use super::worker::Repaint;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use egui::ColorImage;
use std::path::PathBuf;

/// Which rendition of an image: small for the gallery, large for the detail view, and the
/// image's own pixels for zooming into it (asked for only while zoomed in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    Thumb,
    Full,
    Native,
}

impl Size {
    /// Longest side in pixels (the aspect ratio is always kept). Thumbnails leave room for
    /// HiDPI screens; full images stay within every GPU's texture limit; native ones are used
    /// only where the GPU reports at least this side.
    pub fn max_side(self) -> u32 {
        match self {
            Size::Thumb => 256,
            Size::Full => 2048,
            Size::Native => 8192,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DecodeJob {
    pub path: PathBuf,
    pub size: Size,
}

/// A decoded image (or why it could not be decoded).
pub struct Decoded {
    pub path: PathBuf,
    pub size: Size,
    pub result: Result<ColorImage, String>,
}

pub struct DecodePool {
    tx: Sender<DecodeJob>,
    rx: Receiver<Decoded>,
}

impl DecodePool {
    pub fn new(threads: usize, queue: usize, repaint: Repaint) -> DecodePool {
        let (tx, job_rx) = crossbeam_channel::bounded::<DecodeJob>(queue.max(1));
        let (out_tx, rx) = crossbeam_channel::unbounded();
        for n in 0..threads.max(1) {
            let job_rx = job_rx.clone();
            let out_tx: Sender<Decoded> = out_tx.clone();
            let repaint = repaint.clone();
            // Threads end when the pool (the only sender of jobs) is dropped.
            let _ = std::thread::Builder::new()
                .name(format!("pc-thumbs-{n}"))
                .spawn(move || {
                    for job in job_rx {
                        let result = decode(&job);
                        if out_tx
                            .send(Decoded {
                                path: job.path,
                                size: job.size,
                                result,
                            })
                            .is_err()
                        {
                            break;
                        }
                        repaint();
                    }
                });
        }
        DecodePool { tx, rx }
    }

    /// Queues a job unless the queue is full; returns whether it was queued.
    pub fn try_submit(&self, job: DecodeJob) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    pub fn try_recv(&self) -> Option<Decoded> {
        self.rx.try_recv().ok()
    }
}

/// Decodes and downsizes one file. Never panics: `load_rgb8` turns decoder panics into errors.
fn decode(job: &DecodeJob) -> Result<ColorImage, String> {
    let img = crate::data::load_rgb8(&job.path).map_err(|e| e.to_string())?;
    let max = job.size.max_side();
    let (w, h) = img.dimensions();
    let img = if w > max || h > max {
        let s = max as f64 / w.max(h) as f64;
        let (nw, nh) = (
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        );
        image::imageops::thumbnail(&img, nw, nh)
    } else {
        img
    };
    let size = [img.width() as usize, img.height() as usize];
    Ok(ColorImage::from_rgb(size, img.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::{Pos2, Rect, Vec2};

    /// A 1:4 image: its thumbnail keeps 1:4 with the longer side at the thumbnail size, and a
    /// square gallery tile shows it letterboxed (full width, a quarter of the height, centred).
    #[test]
    fn long_image_thumbnail_keeps_its_aspect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.png");
        image::RgbImage::from_fn(4000, 1000, |x, _| image::Rgb([(x % 256) as u8, 90, 30]))
            .save(&path)
            .unwrap();
        let thumb = decode(&DecodeJob {
            path: path.clone(),
            size: Size::Thumb,
        })
        .unwrap();
        assert_eq!(thumb.size, [256, 64]);
        let tile = Rect::from_min_size(Pos2::new(3.0, 3.0), Vec2::splat(144.0));
        let shown = super::super::paint::fit(tile, Vec2::new(256.0, 64.0));
        assert!((shown.width() - 144.0).abs() < 1e-3 && (shown.height() - 36.0).abs() < 1e-3);
        assert!((shown.center() - tile.center()).length() < 1e-3);
        // The detail view's full rendition keeps the aspect too.
        let full = decode(&DecodeJob {
            path,
            size: Size::Full,
        })
        .unwrap();
        assert_eq!(full.size, [2048, 512]);
    }
}
