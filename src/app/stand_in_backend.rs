//! A stand-in scorer without libtorch, for GUI tests and demos: it reads the real bank header,
//! really decodes each image (so unreadable files fail as they would in the engine), and
//! returns made-up but well-formed results — a smooth anomaly map with one hot spot whose peak
//! is the image score, geometry from the bank's crop mode, and the top patch under the peak.
use super::protocol::{Backend, BackendFactory};
use crate::bank::BankMeta;
use crate::data::preprocess::crop_geometry;
use crate::engine::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct StandInBackend {
    /// Score per file name; names not listed get a deterministic score from a hash of the name.
    pub scores: HashMap<String, f32>,
    /// Pause per image, to see progress and cancel in action.
    pub delay: Duration,
    /// Side of the generated maps (the real engine uses the crop size); 0 = crop size.
    pub map_side: u32,
}

/// FNV-1a: a stable hash so the same file always gets the same made-up result.
fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl StandInBackend {
    pub fn factory(self) -> BackendFactory {
        Arc::new(move || Ok(Box::new(self.clone()) as Box<dyn Backend>))
    }

    /// Where the hot spot of `file_name` sits, as fractions of the crop (x, y). Demos draw
    /// their fake defect there so the overlay lands on it.
    pub fn hot_spot(file_name: &str) -> (f32, f32) {
        let h = hash(file_name);
        let fx = 0.2 + 0.6 * ((h & 0xffff) as f32 / 65535.0);
        let fy = 0.2 + 0.6 * (((h >> 16) & 0xffff) as f32 / 65535.0);
        (fx, fy)
    }

    fn score_for(&self, file_name: &str, meta: &BankMeta) -> f32 {
        if let Some(s) = self.scores.get(file_name) {
            return *s;
        }
        let c = &meta.calibration;
        let u = ((hash(file_name) >> 32) & 0xffff) as f32 / 65535.0;
        // About a fifth of the images land above the threshold.
        if u > 0.8 {
            c.threshold * (1.05 + 2.0 * (u - 0.8))
        } else {
            c.min + (c.threshold - c.min) * (u / 0.8) * 0.95
        }
    }

    fn inspect_one(&self, path: &Path, meta: &BankMeta) -> Result<Inspection, String> {
        let img = crate::data::load_rgb8(path).map_err(|e| e.to_string())?;
        let (w, h) = img.dimensions();
        let geometry = crop_geometry(w, h, meta.crop);
        let crop = geometry.width.min(geometry.height);
        let side = if self.map_side == 0 {
            crop
        } else {
            self.map_side.min(crop)
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let score = self.score_for(&name, meta);
        let (fx, fy) = Self::hot_spot(&name);
        let background = meta.calibration.min * 0.55;
        let sigma = side as f32 / 14.0;
        let mut values = Vec::with_capacity((side * side) as usize);
        for y in 0..side {
            for x in 0..side {
                let dx = x as f32 - fx * side as f32;
                let dy = y as f32 - fy * side as f32;
                let g = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
                values.push(background + (score - background) * g);
            }
        }
        let [rows, cols] = meta.grid;
        let (rows, cols) = (rows.max(1), cols.max(1));
        let row = ((fy * rows as f32) as u32).min(rows - 1);
        let col = ((fx * cols as f32) as u32).min(cols - 1);
        let box_original = geometry.cell_to_original(row, col, rows, cols);
        // The map covers the input whatever its resolution.
        let geometry = geometry.at_size(side, side);
        let rules = meta.rules();
        let regions = crate::decide::find_regions(
            &values,
            (side, side),
            rules.pixel_threshold,
            None,
            &geometry,
            0,
            rules.mm_per_pixel,
        );
        Ok(Inspection {
            path: path.to_path_buf(),
            score,
            normalized: meta.normalize(score),
            map: AnomalyMap {
                width: side,
                height: side,
                values,
            },
            geometry,
            regions,
            top_patch: TopPatch {
                row,
                col,
                score,
                box_original,
            },
            times: PhaseTimes::default(),
        })
    }
}

impl Backend for StandInBackend {
    fn load(&mut self, bank: &Path) -> Result<BankMeta, String> {
        crate::bank::read_meta(bank).map_err(|e| e.to_string())
    }

    fn inspect(
        &mut self,
        bank: &Path,
        paths: &[PathBuf],
        on_each: &mut dyn FnMut(usize, Result<Inspection, String>) -> bool,
    ) -> Result<(), String> {
        let meta = self.load(bank)?;
        for (i, p) in paths.iter().enumerate() {
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            if !on_each(i, self.inspect_one(p, &meta)) {
                break;
            }
        }
        Ok(())
    }

    fn device_name(&self) -> String {
        "stand-in (no model)".into()
    }
}
