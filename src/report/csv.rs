//! The inspection CSV that `predict --csv` streams and the app's "Export rejects..." writes:
//! one row per image, images that could not be inspected included (decision `error`).
use super::{write_atomic, Decision, WriteError};
use crate::decide::{RegionSummary, Rules};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Column names, in order (README "CSV columns" says what each holds); the columns from
/// `review_from` on came with the review band and defect regions, after the original ones.
pub const CSV_COLUMNS: [&str; 20] = [
    "path",
    "score",
    "normalized_score",
    "threshold",
    "decision",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "category",
    "bank",
    "timestamp",
    "reason",
    "review_from",
    "reject_from",
    "min_area",
    "regions",
    "largest_region_area",
    "largest_region_box",
    "peak_score",
];

/// What came of one image.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Scored {
        score: f32,
        normalized: f32,
        /// Top patch `[x, y, w, h]` in original-image pixels.
        top_box: [u32; 4],
        decision: Decision,
        /// The regions that count (at least `min_area`).
        regions: RegionSummary,
    },
    /// The image could not be inspected (unreadable, over the decode limits, ...): why.
    Failed(String),
}

/// One CSV line: an image's outcome and the context that produced its decision.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvRecord {
    pub path: PathBuf,
    pub outcome: Outcome,
    /// The rules in force; the `threshold` column is `review_from` (accepted at or below it).
    pub rules: Rules,
    pub category: String,
    pub bank: PathBuf,
    /// When the image was scored (RFC 3339, UTC).
    pub timestamp: String,
}

impl CsvRecord {
    /// `accept`, `review`, `reject`, or `error` for an image that was not inspected.
    pub fn decision(&self) -> &'static str {
        match self.outcome {
            Outcome::Scored { decision, .. } => decision.as_str(),
            Outcome::Failed(_) => "error",
        }
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let text = |s: &str| field(&neutralize_formula(s));
        let path = text(&self.path.to_string_lossy());
        let (category, bank) = (text(&self.category), text(&self.bank.to_string_lossy()));
        let r = &self.rules;
        let (t, decision, stamp) = (r.review_from, self.decision(), text(&self.timestamp));
        let bands = format!("{},{},{}", r.review_from, r.reject_from, r.min_area);
        match &self.outcome {
            Outcome::Scored {
                score,
                normalized,
                top_box: [x, y, w, h],
                regions: s,
                ..
            } => {
                let boxed = s
                    .largest_box
                    .map(|[x, y, w, h]| format!("{x} {y} {w} {h}"))
                    .unwrap_or_default();
                let peak = s.peak.map(|p| p.to_string()).unwrap_or_default();
                writeln!(
                    out,
                    "{path},{score},{normalized},{t},{decision},{x},{y},{w},{h},{category},{bank},{stamp},,{bands},{},{},{boxed},{peak}",
                    s.count, s.largest_area
                )
            }
            Outcome::Failed(reason) => writeln!(
                out,
                "{path},,,{t},{decision},,,,,{category},{bank},{stamp},{},{bands},,,,",
                text(reason)
            ),
        }
    }
}

/// Prefixes `'` to text a spreadsheet would run as a formula (first character `=`, `+`, `-`,
/// `@`, tab or carriage return): a file name like `=HYPERLINK(...).png` must stay text.
pub fn neutralize_formula(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// Quotes a field when it holds a separator, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes the header and `records` to `path` atomically (temp file, fsync, rename).
pub fn write_csv_file(path: &Path, records: &[CsvRecord]) -> Result<(), WriteError> {
    let mut bytes = Vec::with_capacity(128 * (records.len() + 1));
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    writeln!(bytes, "{}", CSV_COLUMNS.join(",")).map_err(err)?;
    for r in records {
        r.write(&mut bytes).map_err(err)?;
    }
    write_atomic(path, &bytes).map_err(err)
}

/// A CSV written row by row as results come: the rows go to `<name>.partial` beside the
/// destination (created up front, so an unwritable destination fails before any scoring), each
/// row flushed, and [`CsvStream::finish`] renames it over the destination. A run that dies at
/// image 900 leaves 899 rows in the `.partial` file and never a half file under the real name.
pub struct CsvStream {
    path: PathBuf,
    partial: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl CsvStream {
    pub fn create(path: &Path) -> Result<CsvStream, WriteError> {
        let err = |source| WriteError {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            return Err(err(std::io::Error::other("it is a folder")));
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file = std::fs::File::create(&partial).map_err(err)?;
        let mut stream = CsvStream {
            path: path.to_path_buf(),
            partial,
            out: std::io::BufWriter::new(file),
        };
        writeln!(stream.out, "{}", CSV_COLUMNS.join(",")).map_err(err)?;
        stream.out.flush().map_err(err)?;
        Ok(stream)
    }

    /// Where the rows are until `finish`.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    pub fn push(&mut self, record: &CsvRecord) -> Result<(), WriteError> {
        let res = record.write(&mut self.out).and_then(|()| self.out.flush());
        res.map_err(|source| WriteError {
            path: self.partial.clone(),
            source,
        })
    }

    /// Syncs the rows to disk and renames the partial file over the destination.
    pub fn finish(mut self) -> Result<(), WriteError> {
        let res = self
            .out
            .flush()
            .and_then(|()| self.out.get_ref().sync_all())
            .and_then(|()| std::fs::rename(&self.partial, &self.path));
        res.map_err(|source| WriteError {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, outcome: Outcome) -> CsvRecord {
        CsvRecord {
            path: PathBuf::from(path),
            outcome,
            rules: Rules {
                review_from: 1.0,
                reject_from: 2.0,
                min_area: 3,
                pixel_threshold: 0.5,
                mm_per_pixel: None,
            },
            category: "bottle".into(),
            bank: PathBuf::from("m/bottle.safetensors"),
            timestamp: "2024-01-01T00:00:00Z".into(),
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).expect("read csv");
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn quotes_awkward_fields_and_neutralises_formulas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("r.csv");
        let scored = Outcome::Scored {
            score: 1.5,
            normalized: -0.25,
            top_box: [1, 2, 3, 4],
            decision: Decision::Review,
            regions: RegionSummary {
                count: 2,
                largest_area: 40,
                largest_box: Some([5, 6, 7, 8]),
                peak: Some(0.75),
            },
        };
        let rows = [
            record("a,b/\"c\".png", scored.clone()),
            record("=HYPERLINK(\"x\").png", scored),
            record("bad.png", Outcome::Failed("@SUM(1): truncated".into())),
        ];
        write_csv_file(&out, &rows).expect("write");
        let l = lines(&out);
        assert_eq!(l[0], CSV_COLUMNS.join(","));
        assert_eq!(
            l[1],
            "\"a,b/\"\"c\"\".png\",1.5,-0.25,1,review,1,2,3,4,bottle,m/bottle.safetensors,2024-01-01T00:00:00Z,,1,2,3,2,40,5 6 7 8,0.75"
        );
        assert!(
            l[2].starts_with("\"'=HYPERLINK(\"\"x\"\").png\",1.5"),
            "{}",
            l[2]
        );
        assert_eq!(
            l[3],
            "bad.png,,,1,error,,,,,bottle,m/bottle.safetensors,2024-01-01T00:00:00Z,'@SUM(1): truncated,1,2,3,,,,"
        );
        // Every row has every column (the quoted fields above hold no separators).
        for line in &l[3..] {
            assert_eq!(line.matches(',').count(), CSV_COLUMNS.len() - 1, "{line}");
        }
    }

    #[test]
    fn stream_keeps_rows_until_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("r.csv");
        let mut s = CsvStream::create(&out).expect("create");
        s.push(&record("a.png", Outcome::Failed("x".into())))
            .expect("push");
        let partial = s.partial_path().to_path_buf();
        assert_eq!(lines(&partial).len(), 2, "rows are on disk as they come");
        assert!(!out.exists(), "no half file under the real name");
        s.finish().expect("finish");
        assert_eq!(lines(&out).len(), 2);
        assert!(!partial.exists());
        let e = CsvStream::create(&dir.path().join("missing/r.csv"))
            .err()
            .expect("unwritable destination");
        assert!(e.to_string().contains("missing/r.csv"), "{e}");
    }
}
