//! The kept versions of a bank, `<bank>.versions/v0001.safetensors` and up: every update keeps
//! the file it replaces bit for bit, so `revert` can bring any of them back. Every write is atomic,
//! and the bank path is replaced only after its new version is safely kept.
use super::{BankError, BankFile, BankMeta, HistoryEntry};
use std::path::{Path, PathBuf};

/// Default cap on the versions folder (`update --versions-limit-mb`), about 50 bottle banks.
pub const DEFAULT_VERSIONS_LIMIT_MB: u64 = 4096;

/// The versions folder of one bank.
pub struct Versions {
    bank: PathBuf,
    dir: PathBuf,
}

impl Versions {
    pub fn of(bank: &Path) -> Versions {
        let mut name = bank.as_os_str().to_os_string();
        name.push(".versions");
        Versions {
            bank: bank.to_path_buf(),
            dir: PathBuf::from(name),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, version: u32) -> PathBuf {
        self.dir.join(format!("v{version:04}.safetensors"))
    }

    fn err(&self, path: &Path, reason: String) -> BankError {
        BankError::Versions {
            path: path.to_path_buf(),
            reason,
        }
    }

    /// An I/O failure on `path`, saying what was being done (reading or writing a version, the
    /// folder, the bank).
    fn io<'a>(path: &'a Path, doing: &'a str) -> impl Fn(std::io::Error) -> BankError + 'a {
        move |e| BankError::Versions {
            path: path.to_path_buf(),
            reason: format!("cannot {doing}: {e}"),
        }
    }

    /// The kept versions, ascending, with their sizes in bytes (none yet: empty).
    pub fn list(&self) -> Result<Vec<(u32, u64)>, BankError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir, "list the versions folder")(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io(&self.dir, "list the versions folder"))?;
            let name = entry.file_name();
            let number = name
                .to_str()
                .and_then(|n| n.strip_prefix('v'))
                .and_then(|n| n.strip_suffix(".safetensors"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(v) = number {
                let len = entry
                    .metadata()
                    .map_err(Self::io(&entry.path(), "read a version's size"))?
                    .len();
                out.push((v, len));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Makes sure the bank file as it is now is kept as `version`: copied bit for bit when it is
    /// not yet there; refused when another file already holds that number (e.g. after a refit),
    /// since one of the two would be lost.
    fn keep_current(&self, version: u32) -> Result<(), BankError> {
        let kept = self.path(version);
        let now = std::fs::read(&self.bank).map_err(Self::io(&self.bank, "read the bank"))?;
        match std::fs::read(&kept) {
            Ok(old) if old == now => Ok(()),
            Ok(_) => Err(self.err(
                &kept,
                format!(
                    "already holds a different version {version} than {} (was the bank refitted?): \
                     move the versions folder away, then retry",
                    self.bank.display()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::report::write_atomic(&kept, &now)
                    .map_err(Self::io(&kept, "keep the current version"))
            }
            Err(e) => Err(Self::io(&kept, "read a kept version")(e)),
        }
    }

    /// The number a new version of the bank (now at `current`) gets: past every kept one, so a
    /// version made after a revert never overwrites the ones the revert skipped.
    pub fn next_number(&self, current: u32) -> Result<u32, BankError> {
        let last = self.list()?.last().map_or(0, |v| v.0);
        Ok(last.max(current) + 1)
    }

    /// Replaces the bank with `file` (whose `meta.version` must be `next_number`): keeps the current
    /// bank, saves the new version, checks the folder against `limit_bytes`, then writes the bank.
    /// On any failure the bank file is untouched and the new version is not left behind.
    pub fn commit(&self, file: &BankFile, current: u32, limit_bytes: u64) -> Result<(), BankError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(Self::io(&self.dir, "create the versions folder"))?;
        self.keep_current(current)?;
        let version = file.meta.version;
        let path = self.path(version);
        if path.exists() {
            return Err(self.err(&path, format!("version {version} already exists")));
        }
        file.save(&path)?;
        let undo = |e: BankError| {
            let _ = std::fs::remove_file(&path);
            e
        };
        let total: u64 = self.list().map_err(undo)?.iter().map(|v| v.1).sum();
        if total > limit_bytes {
            return Err(undo(self.err(
                &self.dir,
                format!(
                    "keeping version {version} would make the versions folder {} MB, over the limit of {} MB: \
                     delete versions you no longer need to revert to (the oldest first), or raise \
                     --versions-limit-mb; the bank was not changed",
                    total.div_ceil(1 << 20),
                    limit_bytes >> 20
                ),
            )));
        }
        let bytes =
            std::fs::read(&path).map_err(|e| undo(Self::io(&path, "read the new version")(e)))?;
        crate::report::write_atomic(&self.bank, &bytes)
            .map_err(|e| undo(Self::io(&self.bank, "write the bank")(e)))
    }

    /// Puts version `to` back at the bank path, bit for bit, after keeping the current bank.
    pub fn revert(&self, current: u32, to: u32) -> Result<BankMeta, BankError> {
        let source = self.path(to);
        if !source.is_file() {
            let have: Vec<String> = self.list()?.iter().map(|v| v.0.to_string()).collect();
            return Err(self.err(
                &source,
                format!(
                    "no version {to} kept; versions kept: {}",
                    if have.is_empty() {
                        "none (the bank was never updated)".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            ));
        }
        let meta = super::read_meta(&source)?;
        if self.bank.exists() {
            self.keep_current(current)?;
        }
        let bytes = std::fs::read(&source).map_err(Self::io(&source, "read the version"))?;
        crate::report::write_atomic(&self.bank, &bytes)
            .map_err(Self::io(&self.bank, "write the bank"))?;
        Ok(meta)
    }
}

/// Saves `file` (an ROI or rules change of the bank at `bank`) as the bank's next version with a
/// history entry naming `action`, so such changes are audited and undone (`revert`) like updates,
/// and a later update finds the kept versions consistent with the bank.
pub fn save_change(
    bank: &Path,
    file: &mut BankFile,
    action: String,
    threshold_before: f32,
) -> Result<(), BankError> {
    let versions = Versions::of(bank);
    let current = file.meta.version;
    let version = versions.next_number(current)?;
    file.meta.history.push(HistoryEntry {
        version,
        parent: current,
        time: crate::report::now_rfc3339(),
        operator: crate::report::Operator::current(),
        images: Vec::new(),
        rows_added: 0,
        threshold_before,
        threshold_after: file.meta.calibration.threshold,
        forced: false,
        action,
    });
    file.meta.version = version;
    versions.commit(file, current, DEFAULT_VERSIONS_LIMIT_MB << 20)
}
