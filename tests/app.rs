//! The operator workstation driven headless through its accessibility tree (egui_kittest),
//! with the synthetic backend standing in for libtorch: real worker thread, real decode pool,
//! real bank headers and image files, fake scores.
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use patchcore::app::{
    Backend, GuiOptions, NoDialogs, ScriptedDialogs, Services, Settings, StandInBackend,
    Workstation,
};
use patchcore::bank::{BankDtype, BankFile, BankMeta, Calibration, CropMode, FORMAT_VERSION};
use patchcore::engine::Inspection;
use patchcore::report::CSV_COLUMNS;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------ fixtures

fn meta(category: &str, test_dir: &Path, threshold: f32) -> BankMeta {
    let scores = vec![threshold * 0.5, threshold * 0.75, threshold];
    BankMeta {
        format_version: FORMAT_VERSION,
        category: category.into(),
        backbone: "efficientnet_lite0".into(),
        weights_sha256: "0".repeat(64),
        stages: vec!["s2".into(), "s3".into()],
        grid_stage: 0,
        mean: [0.5; 3],
        std: [0.25; 3],
        crop: CropMode::Center {
            resize: 64,
            crop: 56,
        },
        patch_size: 3,
        pretrain_dim: 8,
        embed_dim: 4,
        pyramid: 1,
        grid: [7, 7],
        k: 1,
        reweight: false,
        squared: false,
        blur_sigma: 4.0,
        image_score: Default::default(),
        coreset_ratio: 0.1,
        coreset_size: 2,
        coreset_projection: 4,
        seed: 0,
        n_train_images: 12,
        n_patches: 588,
        train_dir: test_dir.to_path_buf(),
        test_dir: Some(test_dir.to_path_buf()),
        created: "2024-05-01T10:00:00Z".into(),
        bank_dtype: BankDtype::F32,
        calibration: Calibration::from_scores("test".into(), scores),
        selection: Vec::new(),
        rules: None,
        roi: None,
        calibration_geometry: Vec::new(),
        growth: None,
        version: 1,
        history: Vec::new(),
    }
}

fn write_bank(models: &Path, file: &str, meta: BankMeta) -> PathBuf {
    std::fs::create_dir_all(models).expect("models dir");
    let path = models.join(file);
    BankFile {
        rows: vec![0.0; (meta.coreset_size * meta.embed_dim) as usize],
        source_image: vec![0; meta.coreset_size as usize],
        roi: None,
        calibration_maps: Vec::new(),
        meta,
        calibration_patches: None,
    }
    .save(&path)
    .expect("save bank");
    path
}

/// A small non-square PNG (so the crop geometry matters).
fn write_png(path: &Path, shade: u8) {
    let img = image::RgbImage::from_fn(80, 64, |x, y| {
        image::Rgb([shade, (x * 3) as u8, (y * 3) as u8])
    });
    img.save(path).expect("png");
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    models: PathBuf,
    images: PathBuf,
    settings: PathBuf,
    bank: PathBuf,
}

/// Bank "widget" (calibrated threshold 1.0) and five images: two good, two bad, one broken.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let models = root.join("models");
    let images = root.join("widget").join("test");
    std::fs::create_dir_all(images.join("good")).expect("dirs");
    std::fs::create_dir_all(images.join("crack")).expect("dirs");
    write_png(&images.join("good").join("good_a.png"), 10);
    write_png(&images.join("good").join("good_b.png"), 20);
    write_png(&images.join("crack").join("bad_c.png"), 200);
    write_png(&images.join("crack").join("bad_d.png"), 250);
    std::fs::write(images.join("crack").join("broken.png"), b"not a png at all").expect("w");
    let bank = write_bank(&models, "widget.safetensors", meta("widget", &images, 1.0));
    // Backbone weights live in the same folder and must not show up as categories.
    let weights =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8, 0, 0, 0])
            .expect("view");
    let bytes = safetensors::serialize([("w", weights)], None).expect("serialize");
    std::fs::write(models.join("efficientnet_lite0.safetensors"), bytes).expect("w");
    Fixture {
        settings: root.join("config").join("gui.json"),
        _tmp: tmp,
        root,
        models,
        images,
        bank,
    }
}

fn scores() -> HashMap<String, f32> {
    HashMap::from([
        ("good_a.png".to_string(), 0.6),
        ("good_b.png".to_string(), 0.8),
        ("bad_c.png".to_string(), 1.6),
        ("bad_d.png".to_string(), 2.4),
        ("panic.png".to_string(), 0.7),
        ("arrival.png".to_string(), 0.9),
        ("x.png".to_string(), 0.5),
    ])
}

fn synthetic() -> StandInBackend {
    StandInBackend {
        scores: scores(),
        delay: Duration::ZERO,
        map_side: 28,
    }
}

fn options(f: &Fixture) -> GuiOptions {
    GuiOptions {
        models_dir: Some(f.models.clone()),
        settings_path: Some(f.settings.clone()),
        inbox_poll: Duration::from_millis(50),
        ..GuiOptions::default()
    }
}

fn harness(opts: GuiOptions, services: Services) -> Harness<'static, Workstation> {
    Harness::builder()
        .with_size([1500.0, 950.0])
        .build_ui_state(
            |ui, ws: &mut Workstation| ws.ui(ui),
            Workstation::new(opts, services),
        )
}

/// Steps frames until `cond` holds (the worker and decoders run on real threads).
fn wait_for(
    h: &mut Harness<'static, Workstation>,
    what: &str,
    mut cond: impl FnMut(&mut Harness<'static, Workstation>) -> bool,
) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h) {
            // One more frame so the tree reflects the state that satisfied `cond`.
            h.step();
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two frames: one where the view sees the input and queues the action, one that shows the
/// result.
fn settle(h: &mut Harness<'static, Workstation>) {
    h.step();
    h.step();
}

fn has_label(h: &Harness<'static, Workstation>, label: &str) -> bool {
    h.query_by_label(label).is_some()
}

fn has_label_containing(h: &Harness<'static, Workstation>, label: &str) -> bool {
    h.query_by_label_contains(label).is_some()
}

/// Opens the category list and picks the entry of `category`.
fn choose_category(h: &mut Harness<'static, Workstation>, category: &str) {
    wait_for(h, "the bank list", |h| h.state().catalog_len() > 0);
    h.get_by_label("Category").click();
    settle(h);
    h.get_by_label_contains(&format!("{category} — ")).click();
    settle(h);
}

/// The workstation on the fixture's category, all scored, with no file dialogs on the system.
fn scored_without_dialogs(f: &Fixture) -> Harness<'static, Workstation> {
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(NoDialogs),
    };
    let mut h = harness(options(f), services);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);
    h
}

fn wait_scored(h: &mut Harness<'static, Workstation>) {
    wait_for(h, "all images scored", |h| {
        has_label(h, "Images: 5") && !has_label_containing(h, "Pending:")
    });
}

// ------------------------------------------------------------------------------ tests

#[test]
fn operator_flow_category_threshold_filter_detail_export() {
    let f = fixture();
    let out = f.root.join("reports").join("rejects.csv");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("dir");
    std::fs::write(&out, "old contents\n").expect("old");
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(ScriptedDialogs {
            folder: None,
            save: Some(out.clone()),
        }),
    };
    let mut h = harness(options(&f), services);

    // The backbone weights file is not a category; the bank is, with its facts.
    wait_for(&mut h, "the bank list", |h| h.state().catalog_len() > 0);
    assert_eq!(h.state().catalog_len(), 1);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);

    // Calibrated threshold 1.0: two accepted, two rejected, one unreadable.
    assert!(has_label(&h, "Accepted: 2"));
    assert!(has_label(&h, "Rejected: 2"));
    assert!(has_label(&h, "Errors: 1"));
    assert!(has_label(&h, "Rejects (2)"));
    assert!(has_label_containing(&h, "bad_d.png: REJECT 2.400"));
    assert!(has_label_containing(&h, "good_a.png: OK 0.600"));
    assert!(has_label_containing(&h, "broken.png: error"));
    assert_eq!(h.state().threshold(), 1.0);
    // Worst first.
    let order = h.state_mut().gallery_paths();
    assert!(order[0].ends_with("bad_d.png"), "{order:?}");

    // Raise the threshold: decisions change at once, nothing is rescored.
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "Threshold")
        .set_value_accesskit(2.0);
    settle(&mut h);
    assert_eq!(h.state().threshold(), 2.0);
    assert!(has_label(&h, "Accepted: 3"));
    assert!(has_label(&h, "Rejected: 1"));
    assert!(has_label(&h, "Rejects (1)"));
    assert!(has_label_containing(&h, "bad_c.png: OK 1.600"));

    // Filter to the rejects: only bad_d is left in the gallery.
    h.get_by_label("Rejected").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "showing 1 of 5 images"));
    assert!(!has_label_containing(&h, "good_a.png:"));
    assert!(has_label_containing(&h, "bad_d.png: REJECT"));

    // Open it: detail view with decision and position.
    h.get_by_label_contains("bad_d.png: REJECT").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "Back to gallery"));
    assert!(has_label_containing(&h, "REJECTED"));
    assert!(has_label(&h, "1 / 1"));
    assert!(h
        .query_by_role_and_label(egui::accesskit::Role::Slider, "Overlay opacity")
        .is_some());
    assert_eq!(
        h.state().selected_path().and_then(|p| p.file_name()),
        Some(std::ffi::OsStr::new("bad_d.png"))
    );

    // Back to all images; arrow keys walk the gallery order from the detail view.
    h.get_by_label_contains("Back to gallery").click();
    settle(&mut h);
    h.get_by_label("All").click();
    settle(&mut h);
    h.get_by_label_contains("bad_d.png: REJECT").click();
    settle(&mut h);
    h.key_press(egui::Key::ArrowRight);
    settle(&mut h);
    let sel = h.state().selected_path().map(Path::to_path_buf);
    assert!(
        sel.is_some_and(|p| p.ends_with("bad_c.png")),
        "second worst is next"
    );
    h.key_press(egui::Key::ArrowLeft);
    settle(&mut h);
    let sel = h.state().selected_path().map(Path::to_path_buf);
    assert!(sel.is_some_and(|p| p.ends_with("bad_d.png")));

    // Clicking a name in the reject table opens it too.
    h.get_by_label_contains("Back to gallery").click();
    settle(&mut h);
    h.get_by_label("crack/bad_d.png").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "Back to gallery"));

    // Export the reject list: replaces the old file whole.
    h.get_by_label("Export rejects...").click();
    wait_for(&mut h, "the export", |h| {
        has_label_containing(h, "Exported 1 rejects")
    });
    let csv = std::fs::read_to_string(&out).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    // The reject, then the image that could not be inspected, with its reason.
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[2].contains("broken.png") && lines[2].contains(",error,"),
        "{csv}"
    );
    let broken: Vec<&str> = lines[2].split(',').collect();
    assert!(
        broken[11].ends_with('Z'),
        "a failure has its time too: {csv}"
    );
    assert_eq!(lines[0], CSV_COLUMNS.join(","));
    let cols: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cols.len(), CSV_COLUMNS.len(), "{}", lines[1]);
    assert!(cols[0].ends_with("bad_d.png"));
    assert_eq!(cols[1], "2.4");
    assert_eq!(cols[3], "2");
    assert_eq!(cols[4], "reject");
    assert!(cols[5..9].iter().all(|v| v.parse::<u32>().is_ok()));
    assert_eq!(cols[9], "widget");
    assert_eq!(cols[10], f.bank.display().to_string());
    assert!(cols[11].ends_with('Z'));
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("parent"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name() != "rejects.csv")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    h.check_accessibility();
    drop(h);

    // Settings: category and the manual threshold come back on the next start.
    let (saved, err) = Settings::load(&f.settings);
    assert!(err.is_none());
    assert_eq!(saved.last_bank.as_deref(), Some("widget.safetensors"));
    assert_eq!(
        saved.threshold_for("widget.safetensors", "2024-05-01T10:00:00Z"),
        Some(2.0)
    );
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(ScriptedDialogs::default()),
    };
    let mut h = harness(options(&f), services);
    wait_scored(&mut h);
    assert_eq!(h.state().threshold(), 2.0);
    assert!(has_label(&h, "Rejected: 1"));
}

#[test]
fn open_folder_scores_another_folder() {
    let f = fixture();
    let other = f.root.join("line2");
    std::fs::create_dir_all(&other).expect("dir");
    write_png(&other.join("bad_c.png"), 1);
    write_png(&other.join("x.png"), 2);
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(ScriptedDialogs {
            folder: Some(other.clone()),
            save: None,
        }),
    };
    let mut h = harness(options(&f), services);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);
    h.get_by_label("Open folder...").click();
    wait_for(&mut h, "the other folder", |h| {
        has_label(h, "Images: 2") && !has_label_containing(h, "Pending:")
    });
    assert!(has_label_containing(&h, "bad_c.png: REJECT"));
    assert!(!has_label_containing(&h, "good_a.png"));
}

/// The review band: a second threshold splits the flagged images into review and reject, the
/// Review filter shows the band, and the operator's reject of a review image takes effect at once
/// and is recorded in the bank's verdicts file.
#[test]
fn review_band_and_decisions_by_hand_are_recorded() {
    let f = fixture();
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(ScriptedDialogs {
            folder: None,
            save: None,
        }),
    };
    let mut h = harness(options(&f), services);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);
    // Review above 1.0 (calibrated), reject above 2.0: bad_c (1.6) goes to review.
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "Reject above")
        .set_value_accesskit(2.0);
    settle(&mut h);
    assert!(has_label(&h, "Review: 1"));
    assert!(has_label(&h, "Rejected: 1"));
    assert!(has_label_containing(&h, "bad_c.png: REVIEW 1.600"));
    h.get_by_label("Review").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "showing 1 of 5 images"));
    h.get_by_label_contains("bad_c.png: REVIEW").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "TO REVIEW"));
    h.get_by_label("Reject (defect)").click();
    settle(&mut h);
    assert!(has_label(&h, "Rejected: 2"));
    assert!(has_label(&h, "Review: 0"));
    let sidecar = patchcore::bank::Verdicts::sidecar_path(&f.bank);
    wait_for(&mut h, "the verdicts file", |_| sidecar.exists());
    let text = std::fs::read_to_string(&sidecar).expect("verdicts");
    assert!(
        text.contains("bad_c.png") && text.contains("\"defect\""),
        "{text}"
    );
    assert!(text.contains("\"score\": 1.6"), "{text}");

    // The thresholds set here go into the bank as a new version, the fitted one kept.
    h.get_by_label("Save rules to bank").click();
    let saved = |_: &mut Harness<'static, Workstation>| {
        patchcore::bank::read_meta(&f.bank)
            .ok()
            .and_then(|m| m.rules)
            .is_some_and(|r| r.reject_from == 2.0)
    };
    wait_for(&mut h, "the rules in the bank", saved);
    let meta = patchcore::bank::read_meta(&f.bank).expect("meta");
    assert_eq!(meta.version, 2);
    assert!(
        meta.history[0].action.starts_with("rules"),
        "{:?}",
        meta.history
    );
    assert!(patchcore::bank::Versions::of(&f.bank).path(1).exists());
    // The reloaded bank rescores the folder; the hand reject is remembered from the verdicts.
    wait_for(&mut h, "the rescored folder with the hand decision", |h| {
        has_label(h, "Rejected: 2") && has_label(h, "Review: 0")
    });
    h.check_accessibility();
}

/// The teach buttons: "Mark as good" on an image far above the threshold asks first, naming it
/// with its normalised score; a scorer that cannot teach says so instead of changing anything;
/// "Confirm defect" on ticked reject rows goes to the verdicts file, and three confirmed defects
/// bring up the F1-best threshold beside the calibrated one. (The update itself, through the
/// real worker and backend, is in tests/app_worker.rs.)
#[test]
fn mark_as_good_asks_for_far_images_and_confirmed_defects_give_an_f1_threshold() {
    let f = fixture();
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(NoDialogs),
    };
    let mut h = harness(options(&f), services);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);
    // Calibration 0.5..1.0: "far" is above 1.5, so both rejects (1.6, 2.4) are far.
    h.get_by_label_contains("bad_c.png: REJECT").click();
    settle(&mut h);
    h.get_by_label("Mark as good").click();
    // A new window is laid out invisibly on its first frame.
    wait_for(&mut h, "the confirmation", |h| {
        has_label_containing(h, "crack/bad_c.png: normalised score 2.20")
    });
    h.get_by_label("Cancel").click();
    settle(&mut h);
    assert!(!has_label_containing(&h, "normalised score 2.20"));
    h.get_by_label("Mark as good").click();
    wait_for(&mut h, "the confirmation", |h| {
        has_label(h, "They are good: add them")
    });
    h.get_by_label("They are good: add them").click();
    wait_for(&mut h, "the refusal", |h| {
        has_label_containing(h, "Not taught: ")
    });
    assert!(has_label_containing(&h, "has no model to teach the bank"));
    assert_eq!(
        patchcore::bank::read_meta(&f.bank).expect("meta").version,
        1
    );

    // Tick both rejects, confirm them as defects.
    h.get_by_label("Tick crack/bad_c.png").click();
    settle(&mut h);
    // The ticked row's buttons beside the detail view's.
    assert_eq!(h.query_all_by_label("Mark as good").count(), 2);
    h.get_by_label("Tick crack/bad_d.png").click();
    settle(&mut h);
    h.get_by_label("Confirm 2 defects").click();
    let sidecar = patchcore::bank::Verdicts::sidecar_path(&f.bank);
    wait_for(&mut h, "the verdicts file", |_| {
        patchcore::bank::Verdicts::load(&f.bank).is_ok_and(|v| v.entries().len() == 2)
    });
    let text = std::fs::read_to_string(&sidecar).expect("verdicts");
    assert_eq!(text.matches("\"defect\"").count(), 2, "{text}");
    assert!(
        !has_label_containing(&h, "F1-best threshold"),
        "two defects are not enough"
    );
    // A third: good_b (0.8) goes to review under a lower threshold, confirmed from the detail view.
    h.get_by_label_contains("Back to gallery").click();
    settle(&mut h);
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "Threshold")
        .set_value_accesskit(0.7);
    settle(&mut h);
    h.get_by_label_contains("good_b.png: REVIEW").click();
    settle(&mut h);
    h.get_by_label("Confirm defect").click();
    settle(&mut h);
    // Good 0.5, 0.75, 1.0 (calibration) against defects 0.8, 1.6, 2.4: flagging from 0.8 up
    // (F1 6/7) beats from 1.6 up (F1 4/5); the cut is halfway between 0.75 and 0.8.
    assert!(has_label(&h, "F1-best threshold 0.7750"));
    h.get_by_label("Use").click();
    settle(&mut h);
    assert_eq!(h.state().threshold(), 0.775);
    h.check_accessibility();
}

/// Panics on the first image named `panic.png`, then behaves.
struct Flaky {
    inner: StandInBackend,
    fired: Arc<AtomicBool>,
}

impl Backend for Flaky {
    fn load(&mut self, bank: &Path) -> Result<BankMeta, String> {
        self.inner.load(bank)
    }
    fn inspect(
        &mut self,
        bank: &Path,
        paths: &[PathBuf],
        on_each: &mut dyn FnMut(usize, Result<Inspection, String>) -> bool,
    ) -> Result<(), String> {
        if paths.iter().any(|p| p.ends_with("panic.png"))
            && !self.fired.swap(true, Ordering::SeqCst)
        {
            panic!("simulated CUDA failure");
        }
        self.inner.inspect(bank, paths, on_each)
    }
    fn device_name(&self) -> String {
        "flaky".into()
    }
}

#[test]
fn worker_panic_is_shown_and_worker_restarts() {
    let f = fixture();
    write_png(&f.images.join("panic.png"), 9);
    let fired = Arc::new(AtomicBool::new(false));
    let fired2 = fired.clone();
    let backend: patchcore::app::BackendFactory = Arc::new(move || {
        Ok(Box::new(Flaky {
            inner: synthetic(),
            fired: fired2.clone(),
        }) as Box<dyn Backend>)
    });
    let services = Services {
        backend,
        dialogs: Box::new(ScriptedDialogs {
            folder: Some(f.images.clone()),
            save: None,
        }),
    };
    let mut h = harness(options(&f), services);
    // No click: the models folder holds one bank, which opens and starts scoring by itself.
    wait_for(&mut h, "the crash report", |h| {
        has_label_containing(h, "simulated CUDA failure")
    });
    assert!(fired.load(Ordering::SeqCst));
    // Images of the crashed job say why they have no result; the app keeps working.
    assert!(has_label_containing(&h, "Worker: worker crashed"));
    assert!(has_label(&h, "Errors: 6"));
    h.get_by_label("Open folder...").click();
    wait_for(&mut h, "rescoring after the restart", |h| {
        has_label(h, "Rejected: 2")
            && has_label(h, "Images: 6")
            && !has_label_containing(h, "Pending:")
    });
    assert!(has_label(&h, "Errors: 1"), "only the broken file fails now");
    h.get_by_label("Dismiss").click();
    settle(&mut h);
    assert!(!has_label_containing(&h, "simulated CUDA failure"));
}

#[test]
fn inbox_images_are_scored_on_arrival_and_listed_first() {
    let f = fixture();
    let inbox = f.root.join("inbox");
    std::fs::create_dir_all(&inbox).expect("dir");
    write_png(&inbox.join("old.png"), 3); // present before watching: not rescored
    let mut opts = options(&f);
    opts.inbox = Some(inbox.clone());
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(ScriptedDialogs::default()),
    };
    let mut h = harness(opts, services);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);
    // Written elsewhere, then moved in (as a camera PC would).
    let tmp = f.root.join("arrival.png");
    write_png(&tmp, 77);
    std::fs::rename(&tmp, inbox.join("arrival.png")).expect("move");
    wait_for(&mut h, "the inbox image", |h| {
        has_label(h, "Images: 6") && !has_label_containing(h, "Pending:")
    });
    let order = h.state_mut().gallery_paths();
    assert!(order[0].ends_with("arrival.png"), "{order:?}");
    assert!(!order.iter().any(|p| p.ends_with("old.png")));
    // Unchecking stops the watch.
    h.get_by_label("Watch inbox").click();
    settle(&mut h);
    assert!(!h.state().inbox_on());
}

/// The value of `key=` in a job log line.
fn log_field(line: &str, key: &str) -> usize {
    line.split(' ')
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn each_job_is_a_log_line_and_scoring_repaints_on_a_budget() {
    let f = fixture();
    let inbox = f.root.join("inbox");
    std::fs::create_dir_all(&inbox).expect("dir");
    let mut opts = options(&f);
    opts.inbox = Some(inbox.clone());
    let slow = StandInBackend {
        delay: Duration::from_millis(80),
        ..synthetic()
    };
    let services = Services {
        backend: slow.factory(),
        dialogs: Box::new(ScriptedDialogs::default()),
    };
    let mut h = harness(opts, services);
    choose_category(&mut h, "widget");
    // While the folder scores, a frame in which nothing changed (no reply this frame or the
    // one before) asks for no immediate repaint: results and progress wait for the budgeted
    // one, and nothing animates every frame (a spinner would). egui itself asks for one more
    // frame when a widget first appears (theme/), which follows a change and is not counted.
    let start = Instant::now();
    let mut busy_frames = 0;
    let mut seen = [(0, 0); 2];
    while !has_label(&h, "Images: 5") || has_label_containing(&h, "Pending:") {
        h.step();
        let progress = h.state().overall_progress();
        let quiet = seen.iter().all(|p| *p == progress);
        seen = [seen[1], progress];
        if h.state().is_busy() && quiet && start.elapsed() > Duration::from_millis(150) {
            busy_frames += 1;
            let causes = h.ctx.repaint_causes();
            let ours: Vec<_> = causes
                .iter()
                .filter(|c| !c.file.contains("/src/theme/"))
                .collect();
            assert!(
                !h.ctx.requested_repaint_last_pass() || ours.is_empty(),
                "immediate repaint while scoring: {ours:?}"
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "scoring timed out"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        busy_frames > 5,
        "the check saw scoring frames: {busy_frames}"
    );

    let log = f.settings.with_file_name("jobs.log");
    let lines = |kind: &str| -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!(" kind={kind} ")))
            .map(str::to_string)
            .collect()
    };
    wait_for(&mut h, "the folder's log line", |_| {
        !lines("folder").is_empty()
    });
    let folder = lines("folder");
    assert_eq!(folder.len(), 1, "{folder:?}");
    let line = &folder[0];
    assert!(line.contains(" patchcore-job "), "{line}");
    assert!(
        line.ends_with(" end=done bank=widget.safetensors"),
        "{line}"
    );
    // good_a, good_b accepted; bad_c, bad_d rejected; broken.png failed.
    let counts = ["images", "rejected", "failed"].map(|k| log_field(line, k));
    assert_eq!(counts, [5, 2, 1], "{line}");
    assert!(h
        .query_by_label_contains("last folder job: 5 images")
        .is_some());

    // An inbox burst: one good arrival and one broken file.
    let tmp = f.root.join("staging");
    std::fs::create_dir_all(&tmp).expect("dir");
    write_png(&tmp.join("arrival.png"), 77);
    std::fs::write(tmp.join("late.png"), b"truncated").expect("w");
    for n in ["arrival.png", "late.png"] {
        std::fs::rename(tmp.join(n), inbox.join(n)).expect("move");
    }
    wait_for(&mut h, "the inbox log line", |_| {
        lines("inbox")
            .iter()
            .map(|l| log_field(l, "images"))
            .sum::<usize>()
            == 2
    });
    let inbox_lines = lines("inbox");
    let sum = |k: &str| inbox_lines.iter().map(|l| log_field(l, k)).sum::<usize>();
    assert_eq!((sum("rejected"), sum("failed")), (0, 1), "{inbox_lines:?}");
    assert_eq!(lines("folder").len(), 1, "the folder job is logged once");
}

/// A bank whose model cannot be loaded (e.g. weights mismatch) shows the reason next to the
/// picker; a damaged bank file is listed as unusable; the app stays usable.
struct Refuses;

impl Backend for Refuses {
    fn load(&mut self, _bank: &Path) -> Result<BankMeta, String> {
        Err("fitted with other efficientnet_lite0 weights".into())
    }
    fn inspect(
        &mut self,
        _bank: &Path,
        _paths: &[PathBuf],
        _on_each: &mut dyn FnMut(usize, Result<Inspection, String>) -> bool,
    ) -> Result<(), String> {
        Err("no model".into())
    }
    fn device_name(&self) -> String {
        "none".into()
    }
}

#[test]
fn bank_errors_are_shown_next_to_the_picker() {
    let f = fixture();
    // Claims to be a bank (has our key) but the metadata is garbage.
    let header = br#"{"__metadata__":{"patchcore":"{not json"}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    std::fs::write(f.models.join("damaged.safetensors"), bytes).expect("w");
    let services = Services {
        backend: Arc::new(|| Ok(Box::new(Refuses) as Box<dyn Backend>)),
        dialogs: Box::new(ScriptedDialogs::default()),
    };
    let mut h = harness(options(&f), services);
    wait_for(&mut h, "the bank list", |h| h.state().catalog_len() == 2);
    h.get_by_label("Category").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "damaged.safetensors — unusable"));
    h.get_by_label_contains("widget — ").click();
    wait_for(&mut h, "the load error", |h| {
        has_label_containing(h, "other efficientnet_lite0 weights")
    });
    assert!(h.query_by_label("Open folder...").is_some());
}

/// The catalog skips safetensors files that are not banks (weights) and lists every other
/// unreadable one with its reason: damaged metadata, a truncated header.
#[test]
fn catalog_skips_weights_and_lists_damaged_banks() {
    let f = fixture();
    let weights = f.models.join("efficientnet_lite0.safetensors");
    assert!(matches!(
        patchcore::bank::read_meta(&weights),
        Err(patchcore::bank::BankError::NotABank { .. })
    ));
    let bytes = std::fs::read(&f.bank).expect("read bank");
    std::fs::write(
        f.models.join("cut.safetensors"),
        &bytes[..bytes.len().min(200)],
    )
    .expect("w");
    let header = br#"{"__metadata__":{"patchcore":"{not json"}}"#;
    let mut damaged = (header.len() as u64).to_le_bytes().to_vec();
    damaged.extend_from_slice(header);
    std::fs::write(f.models.join("damaged.safetensors"), damaged).expect("w");

    let list = patchcore::app::catalog::scan_models(&f.models).expect("scan");
    let names: Vec<&str> = list.iter().map(|e| e.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cut.safetensors",
            "damaged.safetensors",
            "widget.safetensors"
        ]
    );
    let cut = list[0].summary();
    assert!(
        cut.contains("unusable") && cut.contains("truncated"),
        "{cut}"
    );
    let damaged = list[1].summary();
    assert!(damaged.contains("unusable"), "{damaged}");
    assert!(list[2].meta.is_ok());
}

/// Without any file dialog on the system (no portal, no zenity), the buttons that need a
/// path ask for it in a text field instead of silently doing nothing.
#[test]
fn without_file_dialogs_paths_are_typed_in() {
    let f = fixture();
    let out = f.root.join("typed-rejects.csv");
    let mut h = scored_without_dialogs(&f);
    h.get_by_label("Export rejects...").click();
    wait_for(&mut h, "the path field", |h| {
        has_label(h, "Save the rejects as CSV to:")
    });
    h.get_by_role_and_label(
        egui::accesskit::Role::TextInput,
        "Save the rejects as CSV to:",
    )
    .set_text_value_accesskit(&out.display().to_string());
    settle(&mut h);
    h.get_by_label("Save").click();
    wait_for(&mut h, "the export", |h| {
        has_label_containing(
            h,
            "Exported 2 rejects and 1 images that could not be inspected",
        )
    });
    let csv = std::fs::read_to_string(&out).expect("csv");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(!has_label(&h, "Save the rejects as CSV to:"));

    // Known to be missing now: the next request opens the field at once; Cancel closes it.
    h.get_by_label("Open folder...").click();
    settle(&mut h);
    assert!(has_label(&h, "Folder of images to inspect:"));
    h.get_by_label("Cancel").click();
    settle(&mut h);
    assert!(!has_label(&h, "Folder of images to inspect:"));
    assert!(has_label(&h, "Images: 5"));
}

#[test]
fn thousands_of_images_keep_few_textures() {
    let f = fixture();
    let many = f.root.join("many");
    std::fs::create_dir_all(&many).expect("dir");
    let tiny = {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(8, 8, image::Rgb([90, 90, 90]))
            .write_to(&mut buf, image::ImageFormat::Png)
            .expect("png");
        buf.into_inner()
    };
    for i in 0..1500 {
        std::fs::write(many.join(format!("part_{i:04}.png")), &tiny).expect("w");
    }
    let services = Services {
        backend: synthetic().factory(),
        dialogs: Box::new(ScriptedDialogs {
            folder: Some(many),
            save: None,
        }),
    };
    let mut h = harness(options(&f), services);
    choose_category(&mut h, "widget");
    wait_scored(&mut h);
    h.get_by_label("Open folder...").click();
    wait_for(&mut h, "1500 images", |h| {
        has_label(h, "Images: 1500") && !has_label_containing(h, "Pending:")
    });
    // Let the visible thumbnails decode.
    for _ in 0..30 {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let n = h.state().texture_count();
    assert!(n > 0, "visible thumbnails get textures");
    assert!(
        n < 400,
        "{n} textures for 1500 images: far rows must not hold textures"
    );
    // Open the first image, jump to the last with End, go back: the gallery scrolls there,
    // the far rows' textures go.
    let first = h.state_mut().gallery_paths()[0].clone();
    let last = h.state_mut().gallery_paths()[1499].clone();
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    h.get_by_label_contains(&format!("{}: ", name(&first)))
        .click();
    settle(&mut h);
    h.key_press(egui::Key::End);
    settle(&mut h);
    assert_eq!(h.state().selected_path(), Some(last.as_path()));
    h.get_by_label_contains("Back to gallery").click();
    for _ in 0..30 {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(has_label_containing(&h, &format!("{}: ", name(&last))));
    assert!(!has_label_containing(&h, &format!("{}: ", name(&first))));
    let n = h.state().texture_count();
    assert!(n < 400, "{n} textures after scrolling");
}

// ------------------------------------------------------------------------------ real worker

/// The detail view zooms with `+`/`-`, fits with `0` or the Fit button, shows the zoom, and
/// starts over on the next image (zoom is UI state, not the worker's).
#[test]
fn detail_view_zooms_with_keys_and_starts_over_on_the_next_image() {
    let f = fixture();
    let mut h = scored_without_dialogs(&f);
    h.get_by_label_contains("bad_d.png: REJECT").click();
    wait_for(&mut h, "the image in the detail view", |h| {
        has_label_containing(h, "whole image")
    });
    use egui::Key;
    for (key, shown) in [
        (Key::Plus, "zoom ×1.5"),
        (Key::Plus, "zoom ×2.2"),
        (Key::Minus, "zoom ×1.5"),
        (Key::Num0, "whole image"),
        (Key::Plus, "zoom ×1.5"),
    ] {
        h.key_press(key);
        settle(&mut h);
        assert!(has_label_containing(&h, shown), "after {key:?}: {shown}");
    }
    h.get_by_label("Fit").click();
    settle(&mut h);
    assert!(has_label_containing(&h, "whole image"));

    h.key_press(Key::Plus);
    settle(&mut h);
    h.key_press(Key::ArrowRight);
    wait_for(&mut h, "the next image, whole", |h| {
        h.state()
            .selected_path()
            .is_some_and(|p| p.ends_with("bad_c.png"))
            && has_label_containing(h, "whole image")
    });
}

/// End to end with libtorch on the CPU: fit a small bank on synthetic parts, then let the
/// workstation's real worker (TorchBackend) score the test parts. Skipped when the backbone
/// weights are not installed (`bash scripts/setup.sh`).
#[test]
fn real_worker_scores_a_fitted_bank() {
    use patchcore::data::synthetic::{generate, SyntheticSpec};
    use patchcore::engine::NoProgress;
    use patchcore::engine::{FitOptions, Method, PatchCore, Precision};

    let weights_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let spec = patchcore::backbone::find("efficientnet_lite0").expect("registry");
    let weights = weights_dir.join(spec.weights_file);
    if !weights.exists() {
        eprintln!("skipped: {} is missing", weights.display());
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let ds = generate(
        &tmp.path().join("data"),
        "parts",
        &SyntheticSpec {
            size: 96,
            n_train: 6,
            n_test_good: 2,
            n_test_defect_per_type: 1,
            seed: 3,
        },
    )
    .expect("synthetic data");
    let opts = FitOptions {
        method: Method::defaults_for(spec),
        weights,
        device: tch::Device::Cpu,
        precision: Precision::F32,
        batch_size: 4,
        coreset_ratio: 0.25,
        coreset_size: None,
        projection_dim: 32,
        seed: 0,
        bank_dtype: BankDtype::F32,
        calibration_images: Some(0),
        max_patches: 0,
        category: "parts".into(),
        train_dir: ds.root.join("train"),
        test_dir: Some(ds.root.clone()),
    };
    let (_model, file, _) = PatchCore::fit(&ds.train, &opts, &NoProgress).expect("fit");
    let banks = tmp.path().join("banks");
    std::fs::create_dir_all(&banks).expect("dir");
    file.save(&banks.join("parts.safetensors")).expect("save");

    let out = tmp.path().join("rejects.csv");
    let services = Services {
        backend: patchcore::app::TorchBackend::factory(weights_dir, "cpu".into(), 4, 0),
        dialogs: Box::new(ScriptedDialogs {
            folder: None,
            save: Some(out.clone()),
        }),
    };
    let gui = GuiOptions {
        models_dir: Some(banks),
        settings_path: Some(tmp.path().join("gui.json")),
        ..GuiOptions::default()
    };
    let mut h = harness(gui, services);
    choose_category(&mut h, "parts");
    let n = ds.test.len();
    assert!(n >= 3);
    wait_for(&mut h, "the real worker's results", |h| {
        has_label(h, &format!("Images: {n}")) && !has_label_containing(h, "Pending:")
    });
    assert!(has_label(&h, "Errors: 0"), "every test part scores");
    assert!(has_label_containing(&h, "on cpu"), "device shown");
    // The worst part is listed first and is a defect (the bank saw only good parts).
    let worst = h.state_mut().gallery_paths()[0].clone();
    let sample = ds.test.iter().find(|t| t.path == worst).expect("listed");
    assert!(sample.is_anomalous(), "worst is {worst:?}");
    h.get_by_label("Export rejects...").click();
    wait_for(&mut h, "the export", |h| {
        has_label_containing(h, "Exported ")
    });
    let csv = std::fs::read_to_string(&out).expect("csv");
    assert!(csv.starts_with(&CSV_COLUMNS.join(",")));
}
