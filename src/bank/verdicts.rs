//! What operators said about images scored with a bank ("good", "defect"), remembered in a JSON
//! sidecar beside the bank file. Hand decisions outlive the session: they feed the F1-best
//! threshold, review bands and the audit trail, and a bank copied elsewhere can leave them behind.
use super::BankError;
use crate::report::Operator;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The operator's call on one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A good part (accepted by hand, or marked good to teach the bank).
    Good,
    /// A real defect (confirmed, or rejected by hand).
    Defect,
}

/// One remembered verdict. The sha256 tells a later reader whether the file is still the one
/// the operator looked at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictEntry {
    pub path: PathBuf,
    pub sha256: String,
    pub verdict: Verdict,
    /// The image score when the verdict was given.
    pub score: f32,
    pub time: String,
    pub operator: Operator,
}

/// All verdicts for one bank, one per image path (a later verdict replaces an earlier one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdicts {
    entries: Vec<VerdictEntry>,
}

impl Verdicts {
    /// `<bank file>.verdicts.json`, beside the bank.
    pub fn sidecar_path(bank: &Path) -> PathBuf {
        let mut name = bank.as_os_str().to_os_string();
        name.push(".verdicts.json");
        PathBuf::from(name)
    }

    /// Reads the sidecar of `bank`; none yet is an empty list, a damaged one is an error naming it.
    pub fn load(bank: &Path) -> Result<Verdicts, BankError> {
        let path = Self::sidecar_path(bank);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdicts::default()),
            Err(source) => return Err(BankError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| BankError::Invalid {
            path,
            reason: format!("damaged verdicts file: {e}"),
        })
    }

    /// Writes the sidecar atomically.
    pub fn save(&self, bank: &Path) -> Result<(), BankError> {
        let path = Self::sidecar_path(bank);
        let json = serde_json::to_vec_pretty(self).map_err(|e| BankError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::report::write_atomic(&path, &json).map_err(|source| BankError::Io { path, source })
    }

    /// Adds `entry`, replacing an earlier verdict on the same path.
    pub fn record(&mut self, entry: VerdictEntry) {
        self.entries.retain(|e| e.path != entry.path);
        self.entries.push(entry);
    }

    /// Forgets the verdict on `path` (an undo); true when there was one.
    pub fn forget(&mut self, path: &Path) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.path != path);
        before != self.entries.len()
    }

    pub fn get(&self, path: &Path) -> Option<&VerdictEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// In the order they were given.
    pub fn entries(&self) -> &[VerdictEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, verdict: Verdict) -> VerdictEntry {
        VerdictEntry {
            path: path.into(),
            sha256: "00".into(),
            verdict,
            score: 1.5,
            time: crate::report::now_rfc3339(),
            operator: Operator::current(),
        }
    }

    #[test]
    fn round_trip_replace_and_forget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bank = dir.path().join("parts.safetensors");
        assert_eq!(
            Verdicts::load(&bank).expect("none yet"),
            Verdicts::default()
        );
        let mut v = Verdicts::default();
        v.record(entry("a.png", Verdict::Good));
        v.record(entry("b.png", Verdict::Defect));
        v.record(entry("a.png", Verdict::Defect));
        assert_eq!(v.entries().len(), 2);
        assert_eq!(
            v.get(Path::new("a.png")).map(|e| e.verdict),
            Some(Verdict::Defect)
        );
        v.save(&bank).expect("save");
        assert!(dir.path().join("parts.safetensors.verdicts.json").exists());
        let back = Verdicts::load(&bank).expect("load");
        assert_eq!(back, v);
        v.forget(Path::new("b.png"));
        assert_eq!(v.entries().len(), 1);
        assert!(!v.forget(Path::new("b.png")));
    }

    #[test]
    fn damaged_sidecar_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bank = dir.path().join("parts.safetensors");
        std::fs::write(Verdicts::sidecar_path(&bank), b"{\"entries\": [tru").expect("write");
        let err = Verdicts::load(&bank).expect_err("damaged").to_string();
        assert!(err.contains("parts.safetensors.verdicts.json"), "{err}");
        assert!(err.contains("damaged verdicts file"), "{err}");
    }
}
