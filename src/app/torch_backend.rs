//! The real scorer: `PatchCore` on a libtorch device, living on the worker thread only.
//!
//! Loaded models are kept in a small least-recently-used cache so switching back and forth
//! between two categories does not reload backbone weights each time, while a workstation
//! with many categories does not fill the GPU.
use super::protocol::{Backend, BackendFactory};
use crate::bank::BankMeta;
use crate::engine::{Inspection, PatchCore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// How many categories stay loaded at once.
pub const CACHE_SIZE: usize = 2;

struct Cached {
    bank: PathBuf,
    /// Modification time at load: a refitted bank file is loaded again.
    modified: Option<SystemTime>,
    model: PatchCore,
}

pub struct TorchBackend {
    models_dir: PathBuf,
    device: tch::Device,
    batch_size: usize,
    /// Most recently used last.
    cache: Vec<Cached>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl TorchBackend {
    /// A factory for the worker. `weights_dir` holds the backbone weights files; `device` is
    /// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". Both are resolved on the worker
    /// thread, so the GUI thread never initialises libtorch. `threads` is libtorch's intra-op
    /// thread count (0 keeps libtorch's own choice, one per core).
    pub fn factory(
        weights_dir: PathBuf,
        device: String,
        batch_size: usize,
        threads: usize,
    ) -> BackendFactory {
        Arc::new(move || {
            if threads > 0 {
                tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
            }
            Ok(Box::new(TorchBackend {
                models_dir: weights_dir.clone(),
                device: crate::engine::device::parse_device(&device)?,
                batch_size: batch_size.max(1),
                cache: Vec::new(),
            }) as Box<dyn Backend>)
        })
    }

    /// The model for `bank`, loading it (and evicting the oldest) when needed.
    fn model(&mut self, bank: &Path) -> Result<&PatchCore, String> {
        let stamp = modified(bank);
        let hit = self
            .cache
            .iter()
            .position(|c| c.bank == bank && c.modified == stamp);
        let entry = match hit {
            Some(i) => self.cache.remove(i),
            None => {
                self.cache.retain(|c| c.bank != bank);
                if self.cache.len() >= CACHE_SIZE {
                    self.cache.remove(0);
                }
                let model = PatchCore::load(bank, &self.models_dir, self.device)
                    .map_err(|e| e.to_string())?;
                Cached {
                    bank: bank.to_path_buf(),
                    modified: stamp,
                    model,
                }
            }
        };
        self.cache.push(entry);
        self.cache
            .last()
            .map(|c| &c.model)
            .ok_or_else(|| "model cache is empty".to_string())
    }
}

/// The app's default intra-op thread count: one per core, as `predict` uses. Drawing and
/// decoding need little CPU once repaints are budgeted (under 6 % of a core while scoring), and
/// leaving a core to them made a 2-core machine score 1.6x slower than `predict` (README).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Backend for TorchBackend {
    fn load(&mut self, bank: &Path) -> Result<BankMeta, String> {
        self.model(bank).map(|m| m.meta().clone())
    }

    fn inspect(
        &mut self,
        bank: &Path,
        paths: &[PathBuf],
        on_each: &mut dyn FnMut(usize, Result<Inspection, String>) -> bool,
    ) -> Result<(), String> {
        let batch = self.batch_size;
        let model = self.model(bank)?;
        model.inspect_paths(paths, batch, |i, r| {
            on_each(i, r.map_err(|e| e.to_string()))
        });
        Ok(())
    }

    fn update(
        &mut self,
        bank: &Path,
        version: u32,
        paths: &[PathBuf],
        force: bool,
    ) -> Result<crate::bank::HistoryEntry, String> {
        use crate::engine::{precision, update_and_commit, PrecisionChoice, UpdateOptions};
        let file = crate::bank::BankFile::load(bank).map_err(|e| e.to_string())?;
        if file.meta.version != version {
            let e = crate::engine::calibrate::changed_on_disk(bank, version, file.meta.version);
            return Err(e.to_string());
        }
        let spec = crate::backbone::find(&file.meta.backbone).map_err(|e| e.to_string())?;
        let opts = UpdateOptions {
            weights: spec.weights_in(&self.models_dir),
            device: self.device,
            precision: precision::resolve(PrecisionChoice::Auto, self.device, spec).0,
            batch_size: self.batch_size,
            force,
            version,
            time: crate::report::now_rfc3339(),
            operator: crate::report::Operator::current(),
        };
        let limit = crate::bank::DEFAULT_VERSIONS_LIMIT_MB << 20;
        let (up, _) =
            update_and_commit(bank, file, paths, opts, limit).map_err(|e| e.to_string())?;
        // The cached model is the old version (a coarse modification time could hide it).
        self.cache.retain(|c| c.bank != bank);
        Ok(up.entry)
    }

    fn device_name(&self) -> String {
        match self.device {
            tch::Device::Cpu => "cpu".into(),
            tch::Device::Cuda(i) => format!("cuda:{i}"),
            other => format!("{other:?}").to_lowercase(),
        }
    }
}
