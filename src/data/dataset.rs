//! Dataset layouts: MVTec AD categories, plain folders of good images, and JSON split files.
//! Every listing is sorted (or in the split file's order), so runs are reproducible.
use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::DataError;

/// Extensions (lower case) that count as images when listing folders.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// The label MVTec AD and the split files use for defect-free images.
pub const GOOD: &str = "good";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSample {
    pub path: PathBuf,
    /// `"good"` or the defect type (the MVTec folder name or the split's label).
    pub label: String,
    /// Ground-truth mask; `None` for good images and for datasets without pixel annotations.
    pub mask: Option<PathBuf>,
}

impl TestSample {
    pub fn is_anomalous(&self) -> bool {
        self.label != GOOD
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub name: String,
    /// The category folder, the plain image folder, or the folder holding the split file.
    pub root: PathBuf,
    pub train: Vec<PathBuf>,
    pub test: Vec<TestSample>,
}

/// Opens a dataset, recognising the layout from what is on disk:
/// - a `.json` split file, or a folder holding `split.json`
///   (`{"name", "train": [path], "test": [{"image", "mask" | null, "label"}]}`, paths relative to it);
/// - an MVTec AD category folder (`train/good`, `test/<type>`, `ground_truth/<type>/<stem>_mask.png`),
///   or its parent folder together with `category`;
/// - a plain folder of good images, sub-folders included (training only, no test set).
pub fn open(path: &Path, category: Option<&str>) -> Result<Dataset, DataError> {
    let err = |p: &Path, reason: String| DataError::Dataset {
        path: p.to_path_buf(),
        reason,
    };
    if let Some(cat) = category {
        let root = path.join(cat);
        if !root.is_dir() {
            return Err(err(
                &root,
                format!("category folder not found in {}", path.display()),
            ));
        }
        return open(&root, None);
    }
    if path.is_file() {
        return open_split(path);
    }
    if !path.is_dir() {
        return Err(err(path, "no such file or folder".into()));
    }
    let split = path.join("split.json");
    if split.is_file() {
        return open_split(&split);
    }
    if path.join("train").join(GOOD).is_dir() {
        return open_mvtec(path);
    }
    // A parent of MVTec categories: say which categories there are (listing it as a plain
    // folder would train on their test defects).
    let categories: Vec<String> = sorted_subdirs(path)?
        .iter()
        .filter(|d| d.join("train").join(GOOD).is_dir())
        .map(|d| folder_name(d))
        .collect();
    if !categories.is_empty() {
        return Err(err(
            path,
            format!(
                "holds several MVTec categories, choose one: {}",
                categories.join(", ")
            ),
        ));
    }
    let train = list_images(path)?;
    if train.is_empty() {
        return Err(err(
            path,
            "no images, no split.json and no MVTec layout (train/good) found".into(),
        ));
    }
    Ok(Dataset {
        name: folder_name(path),
        root: path.to_path_buf(),
        train,
        test: Vec::new(),
    })
}

/// Whether `path` names an image file by its extension (case-insensitive; hidden files are not):
/// the content is checked when decoding.
pub fn is_image_path(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let image = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    !hidden && image
}

/// Sub-folders deeper than this are not listed (guards against symlink loops).
const MAX_DEPTH: usize = 8;

/// The one image lister of `predict`, `eval`, `fit` and the app: image files under `dir`,
/// sub-folders included (MVTec's `test/<defect>/`), sorted by path. Hidden entries and mask
/// folders (`ground_truth`) are skipped: they are not parts to inspect. A folder that cannot be
/// read is an error naming it, so no image is silently left out.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        for p in read_dir(&d)? {
            if p.is_dir() {
                let skip = p
                    .file_name()
                    .is_none_or(|n| n == "ground_truth" || n.to_string_lossy().starts_with('.'));
                if depth < MAX_DEPTH && !skip {
                    stack.push((p, depth + 1));
                }
            } else if is_image_path(&p) && p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read_err = |source| DataError::Read {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()).map_err(read_err))
        .collect()
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut dirs: Vec<PathBuf> = read_dir(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    dirs.sort();
    Ok(dirs)
}

fn folder_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// MVTec AD: test types in folder-name order, files sorted within each. Masks are required for
/// every defect image once `ground_truth/` exists; without it the dataset has no pixel labels.
fn open_mvtec(root: &Path) -> Result<Dataset, DataError> {
    let train_dir = root.join("train").join(GOOD);
    let train = list_images(&train_dir)?;
    if train.is_empty() {
        return Err(DataError::Dataset {
            path: train_dir,
            reason: "no training images".into(),
        });
    }
    let mut test = Vec::new();
    let test_dir = root.join("test");
    let gt_dir = root.join("ground_truth");
    if test_dir.is_dir() {
        for dir in sorted_subdirs(&test_dir)? {
            let label = folder_name(&dir);
            for path in list_images(&dir)? {
                let mask = if label == GOOD || !gt_dir.is_dir() {
                    None
                } else {
                    Some(find_mask(&gt_dir.join(&label), &path)?)
                };
                test.push(TestSample {
                    path,
                    label: label.clone(),
                    mask,
                });
            }
        }
    }
    Ok(Dataset {
        name: folder_name(root),
        root: root.to_path_buf(),
        train,
        test,
    })
}

/// `<gt>/<stem>_mask.png`, or the same stem with another image extension.
fn find_mask(gt: &Path, image: &Path) -> Result<PathBuf, DataError> {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    IMAGE_EXTENSIONS
        .iter()
        .map(|ext| gt.join(format!("{stem}_mask.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::Dataset {
            path: gt.join(format!("{stem}_mask.png")),
            reason: format!("ground-truth mask missing for {}", image.display()),
        })
}

#[derive(Deserialize)]
struct SplitFile {
    #[serde(default)]
    name: Option<String>,
    train: Vec<String>,
    test: Vec<SplitTest>,
}

#[derive(Deserialize)]
struct SplitTest {
    image: String,
    mask: Option<String>,
    label: String,
}

/// A split file: entries keep the file's order; every listed file must exist.
fn open_split(path: &Path) -> Result<Dataset, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let split: SplitFile = serde_json::from_str(&text).map_err(|e| DataError::Dataset {
        path: path.to_path_buf(),
        reason: format!("not a valid split file: {e}"),
    })?;
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let resolve = |rel: &str, what: &str| -> Result<PathBuf, DataError> {
        let p = root.join(rel);
        if p.is_file() {
            Ok(p)
        } else {
            Err(DataError::Dataset {
                path: path.to_path_buf(),
                reason: format!("{what} \"{rel}\" not found at {}", p.display()),
            })
        }
    };
    let train = split
        .train
        .iter()
        .map(|rel| resolve(rel, "train image"))
        .collect::<Result<Vec<_>, _>>()?;
    if train.is_empty() {
        return Err(DataError::Dataset {
            path: path.to_path_buf(),
            reason: "the split has no training images".into(),
        });
    }
    let test = split
        .test
        .iter()
        .map(|t| {
            Ok(TestSample {
                path: resolve(&t.image, "test image")?,
                label: t.label.clone(),
                mask: t.mask.as_deref().map(|m| resolve(m, "mask")).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    Ok(Dataset {
        name: split.name.unwrap_or_else(|| folder_name(&root)),
        root,
        train,
        test,
    })
}
