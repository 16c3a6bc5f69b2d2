//! The whole part at the camera's resolution: tiled features stitch into the untiled grid, and
//! the whole-image geometry sees the far ends of an elongated part that the paper's crop cuts off.
mod common;

use common::{real_weights, small_fit_options};
use image::{imageops, RgbImage};
use patchcore::backbone::{self, Backbone};
use patchcore::bank::ImageScore;
use patchcore::data::{self, synthetic::SyntheticSpec, CropMode};
use patchcore::engine::extractor::{tile_margin, Tiling};
use patchcore::engine::{Extractor, Method, NoProgress, PatchCore, Precision};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Largest difference between two patch grids, relative to the largest feature magnitude.
fn relative_gap(a: &Tensor, b: &Tensor) -> f64 {
    let gap = (a - b).abs().max().double_value(&[]);
    gap / b.abs().max().double_value(&[])
}

#[test]
fn tiles_stitch_into_the_untiled_feature_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        size: 2048,
        n_train: 1,
        n_test_good: 0,
        n_test_defect_per_type: 0,
        ..Default::default()
    };
    let ds = data::generate(tmp.path(), "parts", &spec).unwrap();
    let img = data::load_rgb8(&ds.train[0]).unwrap();
    // A non-square input, so rows and columns of tiles both get tested, large enough that tiles
    // with the full margin still see only part of it.
    let img = imageops::crop_imm(&img, 0, 384, 2048, 1280).to_image();
    let bb = backbone::find("efficientnet_lite2").unwrap();
    // The whole-image default, with its stride-32 context stage: the deepest reach to stitch.
    let method =
        Method::defaults_for(bb).in_geometry(bb, CropMode::whole_for(&[(2048, 1280)], 2048));
    assert_eq!(method.stages.last().map(String::as_str), bb.context_stage);
    let (input, _) = data::preprocess(&img, method.crop);
    let extractor = |tiling: Option<Tiling>| {
        let b = Backbone::load(bb.name, &real_weights(bb.weights_file), Device::Cpu).unwrap();
        let e = Extractor::new(b, method.clone(), Precision::F32).unwrap();
        match tiling {
            Some(t) => e.with_tiling(t, 0),
            None => e,
        }
    };
    let (whole, grid) = extractor(None).embed(&[&input]).unwrap();
    assert_eq!(grid, (160, 256));
    let stages: Vec<_> = method
        .stages
        .iter()
        .map(|s| *bb.stage(s).unwrap())
        .collect();
    assert_eq!(
        method.pyramid, 2,
        "the whole default embeds two pyramid levels"
    );
    let margin = tile_margin(&stages, method.embed.patch_size, method.pyramid);
    let mut gaps = Vec::new();
    for margin in [margin / 2, margin] {
        let tiled = extractor(Some(Tiling { side: 512, margin }));
        let (t, g) = tiled.embed(&[&input]).unwrap();
        assert_eq!(g, grid);
        assert_eq!(t.size(), whole.size());
        gaps.push(relative_gap(
            &t.to_kind(Kind::Double),
            &whole.to_kind(Kind::Double),
        ));
    }
    eprintln!(
        "tiled vs whole, largest relative gap at margins {} / {margin} px: {gaps:?}",
        margin / 2
    );
    assert!(
        gaps[0] > 1e-3,
        "half the margin must show its seam: {gaps:?}"
    );
    assert!(
        gaps[1] < 1e-6,
        "the receptive-field margin stitches exactly: {gaps:?}"
    );
}

/// Three good parts side by side make one long part; a defect goes in the chosen third.
fn strip(parts: [&Path; 3], out: &Path) -> PathBuf {
    let imgs: Vec<RgbImage> = parts.iter().map(|p| data::load_rgb8(p).unwrap()).collect();
    let (w, h) = imgs[0].dimensions();
    let mut s = RgbImage::new(3 * w, h);
    for (i, img) in imgs.iter().enumerate() {
        imageops::replace(&mut s, img, (i as u32 * w) as i64, 0);
    }
    s.save(out).unwrap();
    out.to_path_buf()
}

#[test]
fn the_whole_geometry_finds_a_defect_at_the_far_end_that_the_crop_never_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        size: 192,
        n_train: 24,
        n_test_good: 6,
        n_test_defect_per_type: 2,
        ..Default::default()
    };
    let ds = data::generate(&tmp.path().join("src"), "parts", &spec).unwrap();
    let dir = tmp.path().join("long");
    std::fs::create_dir_all(&dir).unwrap();
    let train: Vec<PathBuf> = ds
        .train
        .chunks_exact(3)
        .enumerate()
        .map(|(i, c)| strip([&c[0], &c[1], &c[2]], &dir.join(format!("train{i}.png"))))
        .collect();
    let good: Vec<&Path> = ds
        .test
        .iter()
        .filter(|s| !s.is_anomalous())
        .map(|s| s.path.as_path())
        .collect();
    let bad: Vec<&Path> = ds
        .test
        .iter()
        .filter(|s| s.is_anomalous())
        .map(|s| s.path.as_path())
        .collect();
    let test_good: Vec<PathBuf> = (0..3)
        .map(|i| {
            strip(
                [good[i], good[i + 1], good[i + 2]],
                &dir.join(format!("good{i}.png")),
            )
        })
        .collect();
    // Defective parts at the right-hand end of the strip, good parts elsewhere.
    let test_bad: Vec<PathBuf> = bad
        .iter()
        .enumerate()
        .map(|(i, b)| {
            strip(
                [good[i % 6], good[(i + 1) % 6], b],
                &dir.join(format!("bad{i}.png")),
            )
        })
        .collect();
    let fit = |crop: CropMode| {
        let mut opts = small_fit_options("efficientnet_lite2", &tmp.path().join("src/parts"));
        opts.method.crop = crop;
        if let CropMode::Whole { .. } = crop {
            opts.method.image_score = ImageScore::MapPeak;
        }
        PatchCore::fit(&train, &opts, &NoProgress).unwrap().0
    };
    let scores = |model: &PatchCore, paths: &[PathBuf]| -> Vec<f32> {
        let mut out = Vec::new();
        model.inspect_paths(paths, 4, |_, r| {
            let i = r.unwrap();
            let (w, h) = model.meta().crop.input_dims();
            assert_eq!((i.map.width, i.map.height), (w, h));
            // The top patch's box lies in the original image.
            let [x, y, bw, bh] = i.top_patch.box_original;
            assert!(
                x + bw <= 576 && y + bh <= 192,
                "{:?}",
                i.top_patch.box_original
            );
            // The score is the map's peak (whole) or the top patch's (the paper's, crop); a
            // map-peak's top patch is the cell under the peak.
            let (at, peak) = i
                .map
                .values
                .iter()
                .enumerate()
                .fold((0, 0.0f32), |b, (j, &v)| if v > b.1 { (j, v) } else { b });
            match model.meta().image_score {
                ImageScore::MapPeak => {
                    let [rows, cols] = model.meta().grid;
                    let (y, x) = (at as u32 / w, at as u32 % w);
                    assert_eq!(i.score, peak);
                    assert_eq!(
                        (i.top_patch.row, i.top_patch.col),
                        (y * rows / h, x * cols / w)
                    );
                }
                ImageScore::TopPatch => {
                    assert_eq!(i.score, i.top_patch.score);
                    // Upsampling and blur average patch scores: the map never passes the top one.
                    assert!(i.score >= peak, "{} < {peak}", i.score);
                }
            }
            out.push(i.score);
            true
        });
        out
    };
    let auroc = |model: &PatchCore| {
        let g = scores(model, &test_good);
        let b = scores(model, &test_bad);
        let all: Vec<f32> = g.iter().chain(&b).copied().collect();
        let labels: Vec<bool> = g
            .iter()
            .map(|_| false)
            .chain(b.iter().map(|_| true))
            .collect();
        patchcore::metrics::auroc(&all, &labels).unwrap()
    };
    let whole = fit(CropMode::whole_for(&[(576, 192)], 576));
    assert_eq!(whole.meta().crop.input_dims(), (576, 192));
    // Calibrated on the same peaks: the image threshold is the highest good map's peak, which is
    // also the pixel threshold (no ROI, no padding here).
    let m = whole.meta();
    assert_eq!(m.image_score, ImageScore::MapPeak);
    assert_eq!(m.calibration.threshold, m.rules().pixel_threshold);
    let crop = fit(CropMode::Center {
        resize: 192,
        crop: 168,
    });
    // A shorter part keeps the bank's scale, centred with padding that is never scored.
    let short = dir.join("short.png");
    let two = data::load_rgb8(&test_good[0]).unwrap();
    imageops::crop_imm(&two, 0, 0, 384, 192)
        .to_image()
        .save(&short)
        .unwrap();
    whole.inspect_paths(&[short], 1, |_, r| {
        let i = r.unwrap();
        assert_eq!((i.geometry.scale_x, i.geometry.off_x), (1.0, -96.0));
        let content = i.geometry.content_mask();
        let padding: Vec<f32> = i
            .map
            .values
            .iter()
            .zip(&content)
            .filter(|(_, &c)| !c)
            .map(|(v, _)| *v)
            .collect();
        assert_eq!(padding.len(), 2 * 96 * 192);
        assert!(padding.iter().all(|&v| v == 0.0), "padding is not scored");
        assert!(i.score > 0.0);
        let [x, _, bw, _] = i.top_patch.box_original;
        assert!(x + bw <= 384, "{:?}", i.top_patch.box_original);
        true
    });
    // An image too small to fill a patch cell at the bank's scale is an error, not a silent pass
    // with score 0; the images beside it in the batch are scored.
    let tiny = dir.join("tiny.png");
    RgbImage::from_pixel(3, 3, image::Rgb([200, 200, 200]))
        .save(&tiny)
        .unwrap();
    let mut outcomes = Vec::new();
    whole.inspect_paths(&[tiny, test_good[0].clone()], 2, |_, r| {
        outcomes.push(r.map(|i| i.score).map_err(|e| e.to_string()));
        true
    });
    match &outcomes[..] {
        [Err(e), Ok(score)] => {
            assert!(
                e.contains("tiny.png")
                    && e.contains("3 x 3 px")
                    && e.contains("nothing would be inspected"),
                "{e}"
            );
            assert!(*score > 0.0);
        }
        other => panic!("{other:?}"),
    }
    let (whole, crop) = (auroc(&whole), auroc(&crop));
    eprintln!("image AUROC of defects at the far end: whole {whole:.3}, centre crop {crop:.3}");
    assert!(
        whole >= 0.95,
        "the whole image must find the far-end defects: {whole}"
    );
    assert!(
        crop < whole - 0.2,
        "the centre crop cannot see the far end: {crop}"
    );
}

/// Parts of two lengths share one input, the shorter padded: its map leaves the padding out, so
/// the part's border keeps its level; and a bank fitted before that (format 3) with padded
/// calibration images gets thresholds made again from its calibration grids when loaded.
#[test]
fn padded_parts_keep_their_border_and_older_padded_banks_are_recalibrated_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        size: 128,
        n_train: 16,
        n_test_good: 2,
        n_test_defect_per_type: 1,
        ..Default::default()
    };
    let ds = data::generate(&tmp.path().join("src"), "parts", &spec).unwrap();
    let dir = tmp.path().join("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    let narrow = |src: &Path, name: &str| -> PathBuf {
        let img = data::load_rgb8(src).unwrap();
        let out = dir.join(name);
        imageops::crop_imm(&img, 20, 0, 88, 128)
            .to_image()
            .save(&out)
            .unwrap();
        out
    };
    // Every other training part is 88 px wide, placed in the 128 x 128 input on the 8-px grid
    // nearest the centre: 16 px of padding on the left, 24 on the right.
    let train: Vec<PathBuf> = ds
        .train
        .iter()
        .enumerate()
        .map(|(i, p)| match i % 2 {
            0 => p.clone(),
            _ => narrow(p, &format!("train{i}.png")),
        })
        .collect();
    let mut opts = small_fit_options("efficientnet_lite2", &tmp.path().join("src/parts"));
    opts.method.crop = CropMode::whole_for(&[(128, 128), (88, 128)], 128);
    let (model, file, _) = PatchCore::fit(&train, &opts, &NoProgress).unwrap();
    assert!(file
        .meta
        .calibration_geometry
        .iter()
        .any(|g| !g.is_filled()));
    let good = ds.test.iter().find(|s| !s.is_anomalous()).unwrap();
    let short = narrow(&good.path, "short.png");
    model.inspect_paths(&[short], 1, |_, r| {
        let i = r.unwrap();
        assert_eq!(i.geometry.off_x, -16.0);
        let col = |x: usize| -> f32 {
            let w = i.map.width as usize;
            let v: Vec<f32> = i.map.values.iter().skip(x).step_by(w).copied().collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        let inner: f32 = (40..88).map(col).sum::<f32>() / 48.0;
        // The paper's map, padding blurred in as zeros, sags at the border (here to 0.49 of the
        // inside; padding left out: 0.89 and 0.90).
        for x in [16, 103] {
            assert!(
                col(x) > 0.85 * inner,
                "column {x}: {} against {inner}",
                col(x)
            );
        }
        true
    });
    // The same bank as format 3 would have been stored, its thresholds made by the old maps
    // (here: anything else), is recalibrated on load; one without padding is left as stored.
    let bank = tmp.path().join("old.safetensors");
    let mut old = file.clone();
    old.meta.calibration.threshold *= 2.0;
    save_as_format_3(&old, &bank);
    let loaded =
        PatchCore::load_with_weights(&bank, &opts.weights, Device::Cpu, Precision::F32).unwrap();
    let m = loaded.meta();
    assert_eq!(m.calibration.threshold, file.meta.calibration.threshold);
    assert_eq!(m.rules(), file.meta.rules());
    assert!(
        m.calibration.source.contains("recalibrated on load"),
        "{}",
        m.calibration.source
    );
    let mut filled = old.clone();
    let full = *old
        .meta
        .calibration_geometry
        .iter()
        .find(|g| g.is_filled())
        .expect("a 128 x 128 calibration image");
    filled.meta.calibration_geometry.fill(full);
    save_as_format_3(&filled, &bank);
    let loaded =
        PatchCore::load_with_weights(&bank, &opts.weights, Device::Cpu, Precision::F32).unwrap();
    assert_eq!(
        loaded.meta().calibration.threshold,
        old.meta.calibration.threshold
    );
}

/// Saves `file` at `path` as a format-3 writer would have labelled it (`save` writes the current
/// format): the one digit changes in place, so every offset stays.
fn save_as_format_3(file: &patchcore::bank::BankFile, path: &Path) {
    file.save(path).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let key = format!("\\\"format_version\\\":{}", patchcore::bank::FORMAT_VERSION);
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .expect("the format version in the header");
    bytes[at + key.len() - 1] = b'3';
    std::fs::write(path, bytes).unwrap();
    let meta = patchcore::bank::read_meta(path).unwrap();
    assert_eq!(meta.format_version, 3);
}
