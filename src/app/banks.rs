//! The bank catalogue of the models folder as the category picker shows it: the bank files
//! found by the last scan, the bank being loaded, and why a scan or a load failed. The scan
//! itself runs as a job ([`super::catalog::scan_models`]); this is what it left behind.
use super::catalog::CatalogEntry;
use std::path::{Path, PathBuf};

pub(crate) struct BankCatalog {
    pub(crate) models_dir: PathBuf,
    pub(crate) entries: Vec<CatalogEntry>,
    /// The models folder could not be read.
    pub(crate) error: Option<String>,
    pub(crate) scanning: bool,
    /// The bank file name to reopen once the first scan finds it (the last session's).
    restore: Option<String>,
    /// The bank the worker is loading.
    pub(crate) loading: Option<PathBuf>,
    /// Why the last chosen bank did not load.
    pub(crate) load_error: Option<String>,
}

impl BankCatalog {
    pub(crate) fn new(models_dir: PathBuf, restore: Option<String>) -> BankCatalog {
        BankCatalog {
            models_dir,
            entries: Vec::new(),
            error: None,
            scanning: false,
            restore,
            loading: None,
            load_error: None,
        }
    }

    /// Marks a scan as running; returns the folder to scan.
    pub(crate) fn begin_scan(&mut self) -> PathBuf {
        self.scanning = true;
        self.models_dir.clone()
    }

    /// Takes in a scan's result; returns the bank to open by itself, if any: the last
    /// session's, or the only usable one when nothing is loaded or loading (`has_bank`).
    pub(crate) fn scanned(
        &mut self,
        result: Result<Vec<CatalogEntry>, String>,
        has_bank: bool,
    ) -> Option<PathBuf> {
        self.scanning = false;
        match result {
            Ok(list) => {
                self.entries = list;
                self.error = None;
            }
            Err(e) => {
                self.entries.clear();
                self.error = Some(e);
            }
        }
        let mut usable = self.entries.iter().filter(|c| c.meta.is_ok());
        if let Some(name) = self.restore.take() {
            let found = usable.clone().find(|c| c.file_name == name);
            if let Some(c) = found {
                return Some(c.path.clone());
            }
        }
        // A models folder with a single usable bank: open it, there is nothing to pick.
        match (usable.next(), usable.next()) {
            (Some(only), None) if self.loading.is_none() && !has_bank => Some(only.path.clone()),
            _ => None,
        }
    }

    /// Marks `bank` as loading; false if it already is.
    pub(crate) fn choose(&mut self, bank: &Path) -> bool {
        if self.loading.as_deref() == Some(bank) {
            return false;
        }
        self.load_error = None;
        self.loading = Some(bank.to_path_buf());
        true
    }

    /// Whether `bank` is the one awaited (not superseded by another choice); it stops loading.
    pub(crate) fn loaded(&mut self, bank: &Path) -> bool {
        if self.loading.as_deref() != Some(bank) {
            return false;
        }
        self.loading = None;
        true
    }

    pub(crate) fn failed(&mut self, bank: &Path, error: String) {
        if self.loaded(bank) {
            self.load_error = Some(error);
        }
    }

    /// The worker died: a load in flight failed with it. Not retried automatically: a bank
    /// that crashes the backend would loop; the operator can pick it again.
    pub(crate) fn worker_died(&mut self, error: &str) {
        if self.loading.take().is_some() {
            self.load_error = Some(error.to_string());
        }
    }

    /// The category name of a bank file, for the picker while it loads.
    pub(crate) fn category_of(&self, bank: &Path) -> Option<&str> {
        self.entries
            .iter()
            .find(|c| c.path == bank)
            .map(|c| c.category())
    }
}
