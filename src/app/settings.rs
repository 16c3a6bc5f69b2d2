//! What the workstation remembers between runs: models folder, last category, the operator's
//! threshold per bank, display choices and the window layout.
//!
//! Stored as JSON in the platform config folder (`directories::ProjectDirs`), or wherever
//! `GuiOptions::settings_path` points (tests). Written atomically so a crash mid-write never
//! leaves a truncated file; an unreadable file falls back to defaults with a visible note.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings {} are not valid ({source}); using defaults", .path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write settings {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A threshold the operator chose for one bank. Tied to the bank's `created` stamp: after a
/// refit the calibration changes, so an old manual threshold would silently mean something else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedThreshold {
    pub value: f32,
    pub bank_created: String,
}

/// Window position and size in points, plus the side panel widths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowLayout {
    pub width: f32,
    pub height: f32,
    pub x: Option<f32>,
    pub y: Option<f32>,
    pub maximized: bool,
    pub left_panel: f32,
    pub right_panel: f32,
}

impl Default for WindowLayout {
    fn default() -> Self {
        WindowLayout {
            width: 1600.0,
            height: 960.0,
            x: None,
            y: None,
            maximized: false,
            left_panel: 300.0,
            right_panel: 460.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub models_dir: Option<PathBuf>,
    /// Bank file name (e.g. `bottle.safetensors`) chosen last; reopened at start.
    pub last_bank: Option<String>,
    /// Operator thresholds keyed by bank file name (one bank per category and backbone).
    pub thresholds: BTreeMap<String, SavedThreshold>,
    pub overlay_opacity: f32,
    pub show_overlay_in_gallery: bool,
    pub inbox: Option<PathBuf>,
    pub window: WindowLayout,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            models_dir: None,
            last_bank: None,
            thresholds: BTreeMap::new(),
            overlay_opacity: 0.6,
            show_overlay_in_gallery: true,
            inbox: None,
            window: WindowLayout::default(),
        }
    }
}

/// The default settings file: `<config dir>/patchcore/gui.json`, if the platform has one.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "patchcore").map(|d| d.config_dir().join("gui.json"))
}

impl Settings {
    /// Reads `path`; a missing file is the first run (defaults, no error).
    pub fn load(path: &Path) -> (Settings, Option<SettingsError>) {
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => (s, None),
                Err(source) => (
                    Settings::default(),
                    Some(SettingsError::Parse {
                        path: path.to_path_buf(),
                        source,
                    }),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(source) => (
                Settings::default(),
                Some(SettingsError::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            ),
        }
    }

    /// Writes `path` atomically (temp file in the same folder, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let write = |source| SettingsError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| write(std::io::Error::other(e.to_string())))?;
        crate::report::write_atomic(path, &json).map_err(write)
    }

    /// The operator's threshold for `bank_file`, if it was set for this very fit of the bank.
    pub fn threshold_for(&self, bank_file: &str, bank_created: &str) -> Option<f32> {
        self.thresholds
            .get(bank_file)
            .filter(|t| t.bank_created == bank_created && t.value.is_finite())
            .map(|t| t.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("patchcore-settings-{}", std::process::id()));
        let path = dir.join("sub").join("gui.json");
        let (s, err) = Settings::load(&path);
        assert!(err.is_none());
        assert_eq!(s, Settings::default());
        let mut s = Settings {
            last_bank: Some("bottle.safetensors".into()),
            ..Settings::default()
        };
        s.thresholds.insert(
            "bottle.safetensors".into(),
            SavedThreshold {
                value: 3.5,
                bank_created: "t0".into(),
            },
        );
        s.save(&path).expect("save");
        let (back, err) = Settings::load(&path);
        assert!(err.is_none());
        assert_eq!(back, s);
        assert_eq!(back.threshold_for("bottle.safetensors", "t0"), Some(3.5));
        assert_eq!(back.threshold_for("bottle.safetensors", "t1"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
