//! Inspectors with scored items, for the state tests.
use super::Inspector;
use crate::engine::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
use std::path::{Path, PathBuf};

/// A result with `score` everywhere.
pub(super) fn inspection(path: &Path, score: f32) -> Inspection {
    Inspection {
        path: path.to_path_buf(),
        score,
        normalized: score,
        map: AnomalyMap {
            width: 1,
            height: 1,
            values: vec![score],
        },
        regions: Vec::new(),
        geometry: crate::data::Geometry {
            orig_width: 10,
            orig_height: 10,
            scale_x: 1.0,
            scale_y: 1.0,
            off_x: 0.0,
            off_y: 0.0,
            width: 10,
            height: 10,
        },
        top_patch: TopPatch {
            row: 0,
            col: 0,
            score,
            box_original: [0, 0, 1, 1],
        },
        times: PhaseTimes::default(),
    }
}

/// Items under `/data` with these scores (`None`: failed), job finished, threshold 1.
pub(super) fn scored(scores: &[(&str, Option<f32>)]) -> Inspector {
    let mut s = Inspector::default();
    s.set_threshold(1.0);
    s.source = Some(PathBuf::from("/data"));
    let paths: Vec<PathBuf> = scores
        .iter()
        .map(|(n, _)| Path::new("/data").join(n))
        .collect();
    s.add_job(7, paths.clone(), false);
    for (i, (_, score)) in scores.iter().enumerate() {
        match score {
            Some(v) => {
                s.set_result(7, i, inspection(&paths[i], *v), "t");
            }
            None => {
                s.set_failed(7, i, "bad".into(), "t");
            }
        }
    }
    s.finish_job(7, None);
    s
}
