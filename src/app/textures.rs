//! GPU textures for images and heatmaps, created for what is on screen (or close to it) and
//! freed as soon as it scrolls far away, so memory stays flat with thousands of images.
//!
//! Each frame, views `touch` what they show or keep nearby; `end_frame` drops everything not
//! touched. Decoding runs in the cache's [`DecodePool`]; results for images no longer wanted
//! are dropped.
use super::colormap::{colorize, ColorScale};
use super::decode::{DecodeJob, DecodePool, Size};
use crate::engine::Inspection;
use egui::{Context, TextureHandle, TextureOptions};
use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a view can draw for an image right now.
pub enum ImageState<'a> {
    Ready(&'a TextureHandle),
    Loading,
    Failed(&'a str),
}

enum Entry {
    Ready(TextureHandle),
    Failed(String),
}

struct Slot<T> {
    value: T,
    touched: u64,
}

struct Heat {
    texture: TextureHandle,
    /// The result and scale it was made from: a rescore or another bank invalidates it.
    source: Arc<Inspection>,
    scale: ColorScale,
}

pub struct TextureCache {
    pool: DecodePool,
    frame: u64,
    images: HashMap<(PathBuf, Size), Slot<Entry>>,
    /// Decodes in flight, with the frame they were last wanted in.
    inflight: HashMap<(PathBuf, Size), u64>,
    heat: HashMap<PathBuf, Slot<Heat>>,
}

impl TextureCache {
    /// A cache that decodes on `pool`.
    pub fn new(pool: DecodePool) -> TextureCache {
        TextureCache {
            pool,
            frame: 1,
            images: HashMap::new(),
            inflight: HashMap::new(),
            heat: HashMap::new(),
        }
    }

    /// Uploads finished decodes, within a time budget so a burst never stalls a frame.
    /// Returns true when more are waiting.
    pub fn receive(&mut self, ctx: &Context, budget: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < budget {
            let Some(done) = self.pool.try_recv() else {
                return false;
            };
            let key = (done.path, done.size);
            let wanted = self.inflight.remove(&key);
            // Still wanted this frame or the one before; otherwise the operator moved on.
            if wanted.is_none_or(|f| f + 2 < self.frame) {
                continue;
            }
            let value = match done.result {
                Ok(img) => {
                    let name = format!("{}#{:?}", key.0.display(), key.1);
                    Entry::Ready(ctx.load_texture(name, img, TextureOptions::LINEAR))
                }
                Err(e) => Entry::Failed(e),
            };
            self.images.insert(
                key,
                Slot {
                    value,
                    touched: self.frame,
                },
            );
        }
        true
    }

    /// The image texture, asking the pool for it when missing. Marks it as in use.
    pub fn image(&mut self, path: &Path, size: Size) -> ImageState<'_> {
        let key = (path.to_path_buf(), size);
        let frame = self.frame;
        if !self.images.contains_key(&key) {
            match self.inflight.get_mut(&key) {
                Some(f) => *f = frame,
                None => {
                    if self.pool.try_submit(DecodeJob {
                        path: key.0.clone(),
                        size,
                    }) {
                        self.inflight.insert(key.clone(), frame);
                    }
                }
            }
            return ImageState::Loading;
        }
        match self.images.get_mut(&key) {
            Some(slot) => {
                slot.touched = frame;
                match &slot.value {
                    Entry::Ready(t) => ImageState::Ready(t),
                    Entry::Failed(e) => ImageState::Failed(e),
                }
            }
            None => ImageState::Loading,
        }
    }

    /// A texture already present (no decode request): used to show the thumbnail while the
    /// full image loads.
    pub fn existing(&mut self, path: &Path, size: Size) -> Option<&TextureHandle> {
        let slot = self.images.get_mut(&(path.to_path_buf(), size))?;
        slot.touched = self.frame;
        match &slot.value {
            Entry::Ready(t) => Some(t),
            Entry::Failed(_) => None,
        }
    }

    /// Keeps an image (and its heatmap) alive without asking for it: rows just off screen.
    pub fn touch(&mut self, path: &Path, size: Size) {
        let frame = self.frame;
        if let Some(slot) = self.images.get_mut(&(path.to_path_buf(), size)) {
            slot.touched = frame;
        }
        if let Some(slot) = self.heat.get_mut(path) {
            slot.touched = frame;
        }
    }

    /// The heatmap texture of a result on the category's fixed scale. Cheap to build (maps are
    /// at most 128x128), so it is made on demand on the GUI thread.
    pub fn heat(
        &mut self,
        ctx: &Context,
        path: &Path,
        inspection: &Arc<Inspection>,
        scale: &ColorScale,
    ) -> &TextureHandle {
        let frame = self.frame;
        let make = || Slot {
            value: Heat {
                texture: ctx.load_texture(
                    format!("heat:{}", path.display()),
                    colorize(&inspection.map, scale),
                    TextureOptions::LINEAR,
                ),
                source: inspection.clone(),
                scale: *scale,
            },
            touched: frame,
        };
        let slot = match self.heat.entry(path.to_path_buf()) {
            MapEntry::Occupied(o) => {
                let slot = o.into_mut();
                if !Arc::ptr_eq(&slot.value.source, inspection) || slot.value.scale != *scale {
                    *slot = make();
                }
                slot
            }
            MapEntry::Vacant(v) => v.insert(make()),
        };
        slot.touched = frame;
        &slot.value.texture
    }

    /// Frees every texture not touched during this frame (dropping the handle frees the GPU
    /// memory) and starts the next frame.
    pub fn end_frame(&mut self) {
        let frame = self.frame;
        self.images.retain(|_, s| s.touched == frame);
        self.heat.retain(|_, s| s.touched == frame);
        self.inflight.retain(|_, f| *f + 2 >= frame);
        self.frame += 1;
    }

    /// Forgets everything (a new folder or bank).
    pub fn clear(&mut self) {
        self.images.clear();
        self.heat.clear();
        self.inflight.clear();
    }

    /// Live textures (images and heatmaps).
    pub fn count(&self) -> usize {
        self.images.len() + self.heat.len()
    }
}
