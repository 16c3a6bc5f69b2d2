//! Data layer: decoding, Pillow-exact resizing, torchvision preprocessing, dataset layouts and
//! the synthetic generator. Checks that need the shared data or the project's Python venv (for
//! live Pillow/torchvision references) skip with a message when those are missing.
mod common;

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use patchcore::data::{
    self, load_luma8, load_mask, load_rgb8, preprocess, resize_bilinear_pil,
    resize_bilinear_pil_gray, to_chw_f32, CropMode, DataError, SyntheticSpec,
};
use std::path::Path;
use std::process::Command;

use common::{all_files, read_npy, shared_data, venv_python_or_skip};

fn run_python(py: &Path, script: &str, arg: &Path) {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 97x61 test card: smooth gradients, hard edges and LCG noise, so every filter tap matters.
fn test_card() -> RgbImage {
    let mut state = 12345u64;
    RgbImage::from_fn(97, 61, |x, y| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = (state >> 59) as u8;
        let edge = if (x / 7 + y / 5) % 2 == 0 { 200 } else { 20 };
        Rgb([(x * 255 / 96) as u8, edge + noise, ((x * y) % 256) as u8])
    })
}

#[test]
fn resize_matches_pillow_bit_for_bit() {
    let Some(py) = venv_python_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let card = test_card();
    card.save(dir.path().join("src.png")).unwrap();
    let gray = GrayImage::from_fn(53, 77, |x, y| Luma([((x * 37 + y * y * 3) % 256) as u8]));
    gray.save(dir.path().join("src_l.png")).unwrap();
    // Both pass orders: (200, 30) and (90, 20) shrink the height by more than twice what the
    // width shrinks, so Pillow runs their vertical pass first.
    let rgb_sizes = [
        (40, 25),
        (256, 200),
        (97, 61),
        (200, 30),
        (90, 20),
        (13, 140),
        (1, 1),
        (97, 20),
        (30, 61),
    ];
    let gray_sizes = [(20, 33), (128, 128), (53, 10)];
    let script = format!(
        r#"
import sys
from PIL import Image
d = sys.argv[1]
im = Image.open(d + "/src.png").convert("RGB")
for w, h in {rgb_sizes:?}:
    im.resize((w, h), Image.BILINEAR).save(f"{{d}}/rgb_{{w}}x{{h}}.png")
g = Image.open(d + "/src_l.png")
assert g.mode == "L"
for w, h in {gray_sizes:?}:
    g.resize((w, h), Image.BILINEAR).save(f"{{d}}/l_{{w}}x{{h}}.png")
"#
    );
    run_python(&py, &script, dir.path());
    for (w, h) in rgb_sizes {
        let expected = load_rgb8(&dir.path().join(format!("rgb_{w}x{h}.png"))).unwrap();
        assert!(
            resize_bilinear_pil(&card, w, h) == expected,
            "RGB {w}x{h} differs from Pillow"
        );
    }
    for (w, h) in gray_sizes {
        let expected = load_luma8(&dir.path().join(format!("l_{w}x{h}.png"))).unwrap();
        assert!(
            resize_bilinear_pil_gray(&gray, w, h) == expected,
            "L {w}x{h} differs from Pillow"
        );
    }
}

/// FNV-1a 64 of a byte slice: compact reference digests for outputs made in Python.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// torchvision `Resize(r)` + `CenterCrop(c)` on a PIL image: the long-side truncation, the
/// half-to-even crop offsets and the zero padding of a crop larger than the image. The digests
/// were made once with torchvision 0.28 / Pillow 13.0 (`T.Compose([T.Resize(r),
/// T.CenterCrop(c)])(Image.fromarray(card))`, FNV-1a 64 of the HWC bytes), since importing
/// torch takes too long for a unit test.
#[test]
fn preprocess_matches_torchvision() {
    let card = test_card();
    assert_eq!(
        fnv1a(card.as_raw()),
        0xb573307573b2ff78,
        "test card changed"
    );
    for (resize, crop, digest) in [
        (61, 50, 0x893a79d44bb4ce9e),
        (61, 48, 0x11d4f568baa0dce8),
        (40, 32, 0x63a0936b092ee66d),
        (100, 90, 0xe9982f95491ba0cb),
        (30, 40, 0x2d76f1dd9f49422d),
        (64, 64, 0xaedd530e56d820d5),
    ] {
        let (got, geometry) = preprocess(&card, CropMode::Center { resize, crop });
        assert_eq!(got.dimensions(), (crop, crop));
        assert_eq!(
            fnv1a(got.as_raw()),
            digest,
            "Resize({resize}) + CenterCrop({crop})"
        );
        assert_eq!((geometry.width, geometry.height), (crop, crop));
    }
}

#[test]
fn whole_geometry_keeps_the_aspect_and_pads_only_another_shape() {
    // A 500 x 1263 part at its native size: fills a 504 x 1264 input, stretched under one cell.
    let mode = CropMode::whole_for(&[(500, 1263)], 1263);
    let img = RgbImage::from_pixel(500, 1263, Rgb([200, 100, 50]));
    let (out, g) = preprocess(&img, mode);
    assert_eq!(out.dimensions(), (504, 1264));
    assert!(g.is_filled());
    assert!(
        (g.scale_x - 504.0 / 500.0).abs() < 1e-12 && (g.scale_y - 1264.0 / 1263.0).abs() < 1e-12
    );
    assert!(out.pixels().all(|p| p.0 == [200, 100, 50]));
    // The same input given a landscape image: aspect kept (to within a cell: 252 rows become
    // 256, whole cells), on the grid near the centre, black padding above and below.
    let (out, g) = preprocess(&RgbImage::from_pixel(800, 400, Rgb([9, 9, 9])), mode);
    assert_eq!(out.dimensions(), (504, 1264));
    assert_eq!((g.scale_x, g.scale_y), (504.0 / 800.0, 256.0 / 400.0));
    let content = g.content_mask();
    let rows_with_image: Vec<u32> = (0..1264).filter(|&y| content[(y * 504) as usize]).collect();
    assert_eq!(rows_with_image.len(), 256);
    assert_eq!(rows_with_image[0], 504);
    assert_eq!(out.get_pixel(250, 10).0, [0, 0, 0]);
    assert_eq!(out.get_pixel(250, 632).0, [9, 9, 9]);
    // The top patch's box of the last cell ends at the image's corner, in original pixels.
    let g = preprocess(&img, mode).1;
    assert_eq!(g.cell_to_original(157, 62, 158, 63), [492, 1255, 8, 8]);
    // Banks before width/height stored one `crop` side; both forms read back.
    let old = r#"{"orig_width":9,"orig_height":9,"scale_x":1.0,"scale_y":1.0,"off_x":0.0,"off_y":0.0,"crop":224}"#;
    let old: patchcore::data::Geometry = serde_json::from_str(old).unwrap();
    assert_eq!((old.width, old.height), (224, 224));
    let again: patchcore::data::Geometry =
        serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
    assert_eq!(again, g);
}

#[test]
fn padded_parts_sit_on_the_grid_and_older_banks_centre_them() {
    // (resized width, height, offset x, y) of a part in a 128 x 128 input at scale 1.
    let place = |w: u32, h: u32, snap: u32| {
        let mode = CropMode::Whole {
            width: 128,
            height: 128,
            long: 128,
            native: 128,
            snap,
        };
        let g = preprocess(&RgbImage::new(w, h), mode).1;
        let size = |n: u32, s: f64| (n as f64 * s).round() as u32;
        (size(w, g.scale_x), size(h, g.scale_y), g.off_x, g.off_y)
    };
    // Whole cells, the offset a multiple of 8: every outline on a cell border.
    assert_eq!(place(88, 128, 8), (88, 128, -16.0, 0.0));
    assert_eq!(place(85, 128, 8), (88, 128, -16.0, 0.0));
    assert_eq!(place(100, 37, 8), (104, 40, -8.0, -40.0));
    // Under half a cell a part is not stretched to one (it stays too small to inspect).
    assert_eq!(place(3, 3, 8), (3, 3, -56.0, -56.0));
    // A bank fitted before (no `snap`) centres the part as it comes.
    assert_eq!(place(100, 37, 0), (100, 37, -14.0, -45.0));
    let old = r#"{"whole":{"width":128,"height":128,"long":128,"native":128}}"#;
    let old: CropMode = serde_json::from_str(old).unwrap();
    assert!(matches!(old, CropMode::Whole { snap: 0, .. }));
    // `fit` and eval say which placement a bank uses.
    assert!(!old.describe().contains("grid"), "{}", old.describe());
    let new = CropMode::whole_for(&[(100, 37)], 100);
    assert!(
        new.describe().ends_with("padded parts on the 8-px grid)"),
        "{}",
        new.describe()
    );
}

#[test]
fn geometry_follows_torchvision_rules() {
    let img = RgbImage::new(300, 200);
    let (out, g) = preprocess(
        &img,
        CropMode::Center {
            resize: 256,
            crop: 224,
        },
    );
    assert_eq!(out.dimensions(), (224, 224));
    // 300x200 -> int(256 * 300 / 200) = 384 x 256; offsets (384-224)/2 = 80 and 16.
    assert_eq!(
        (g.scale_x, g.scale_y, g.off_x, g.off_y),
        (1.28, 1.28, 80.0, 16.0)
    );
    assert_eq!(
        (g.orig_width, g.orig_height, g.width, g.height),
        (300, 200, 224, 224)
    );
    // int(256 * 333 / 250) = int(340.992) = 340 wide; offset 58.
    let (_, g) = preprocess(
        &RgbImage::new(333, 250),
        CropMode::Center {
            resize: 256,
            crop: 224,
        },
    );
    assert_eq!((g.scale_x * 333.0, g.off_x), (340.0, 58.0));
    // Offsets round half to even: 117 / 2 = 58.5 -> 58, 119 / 2 = 59.5 -> 60.
    let (_, g) = preprocess(
        &RgbImage::new(341, 256),
        CropMode::Center {
            resize: 256,
            crop: 224,
        },
    );
    assert_eq!(g.off_x, 58.0);
    let (_, g) = preprocess(
        &RgbImage::new(343, 256),
        CropMode::Center {
            resize: 256,
            crop: 224,
        },
    );
    assert_eq!(g.off_x, 60.0);
    // Full: the whole image squashed to a square.
    let (out, g) = preprocess(&RgbImage::new(120, 300), CropMode::Full { size: 64 });
    assert_eq!(out.dimensions(), (64, 64));
    assert_eq!(
        (g.scale_x, g.scale_y, g.off_x, g.off_y),
        (64.0 / 120.0, 64.0 / 300.0, 0.0, 0.0)
    );
    assert_eq!(CropMode::Full { size: 64 }.input_dims(), (64, 64));
    assert_eq!(
        CropMode::Center {
            resize: 256,
            crop: 224
        }
        .input_dims(),
        (224, 224)
    );
    // The serde form the bank stores.
    let json = serde_json::to_string(&CropMode::Center {
        resize: 256,
        crop: 224,
    })
    .unwrap();
    assert_eq!(json, r#"{"center":{"resize":256,"crop":224}}"#);
}

/// The official preprocessed tensor of bottle train/good/000.png (900x900 -> 256 -> crop 224).
#[test]
fn full_preprocessing_matches_official_tensor() {
    let (Some(bottle), Some(reference)) =
        (shared_data("mvtec_ad/bottle"), shared_data("reference"))
    else {
        return;
    };
    let img = load_rgb8(&bottle.join("train/good/000.png")).unwrap();
    let (crop, g) = preprocess(
        &img,
        CropMode::Center {
            resize: 256,
            crop: 224,
        },
    );
    assert_eq!((g.off_x, g.off_y, g.scale_x), (16.0, 16.0, 256.0 / 900.0));
    let ours = to_chw_f32(&crop, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let official = read_npy(&reference.join("input_train000.npy")).data;
    assert_eq!(ours.len(), official.len());
    let max_diff = ours
        .iter()
        .zip(&official)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0f64, f64::max);
    println!("max |ours - input_train000.npy| = {max_diff:e}");
    assert_eq!(max_diff, 0.0);
}

#[test]
fn masks_follow_the_image_and_binarise_at_128() {
    let dir = tempfile::tempdir().unwrap();
    // Left half: a ramp 0..=255; right half: exactly 127 and 128.
    let mask = GrayImage::from_fn(64, 64, |x, y| {
        Luma([match x {
            0..32 => (x * 8 + y / 8) as u8,
            32..48 => 127,
            _ => 128,
        }])
    });
    let path = dir.path().join("m.png");
    mask.save(&path).unwrap();
    let m = load_mask(
        &path,
        CropMode::Center {
            resize: 64,
            crop: 64,
        },
    )
    .unwrap();
    let expected: Vec<u8> = mask.pixels().map(|p| u8::from(p.0[0] >= 128)).collect();
    assert_eq!(m, expected);
    // Resized masks line up with the image: same result as the RGB path on a grey image.
    for mode in [
        CropMode::Center {
            resize: 40,
            crop: 30,
        },
        CropMode::Full { size: 50 },
        CropMode::Whole {
            width: 48,
            height: 24,
            long: 48,
            native: 64,
            snap: 8,
        },
    ] {
        let m = load_mask(&path, mode).unwrap();
        let (rgb, _) = preprocess(&load_rgb8(&path).unwrap(), mode);
        let via_rgb: Vec<u8> = rgb.pixels().map(|p| u8::from(p.0[0] >= 128)).collect();
        assert_eq!(m, via_rgb, "{mode:?}");
        let (w, h) = mode.input_dims();
        assert_eq!(m.len(), (w * h) as usize);
    }
}

#[test]
fn to_chw_is_channel_major() {
    let img = RgbImage::from_fn(2, 1, |x, _| Rgb([x as u8 * 255, 51, 0]));
    let t = to_chw_f32(&img, [0.5, 0.0, 0.0], [0.5, 1.0, 2.0]);
    assert_eq!(t, vec![-1.0, 1.0, 0.2, 0.2, 0.0, 0.0]);
}

#[test]
fn loads_any_supported_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let card = test_card();
    // Lossless formats round-trip exactly.
    for ext in ["png", "bmp", "tiff"] {
        card.save(p(&format!("card.{ext}"))).unwrap();
        assert!(
            load_rgb8(&p(&format!("card.{ext}"))).unwrap() == card,
            "{ext}"
        );
    }
    card.save(p("card.jpg")).unwrap();
    assert_eq!(load_rgb8(&p("card.jpg")).unwrap().dimensions(), (97, 61));
    // Content decides, not the extension.
    std::fs::copy(p("card.png"), p("really_png.jpg")).unwrap();
    assert!(load_rgb8(&p("really_png.jpg")).unwrap() == card);
    // Grayscale is replicated, alpha dropped, 16 bit rounded to 8.
    GrayImage::from_pixel(3, 2, Luma([77]))
        .save(p("g.png"))
        .unwrap();
    assert!(load_rgb8(&p("g.png"))
        .unwrap()
        .pixels()
        .all(|px| px.0 == [77; 3]));
    RgbaImage::from_pixel(3, 2, Rgba([10, 20, 30, 0]))
        .save(p("a.png"))
        .unwrap();
    assert!(load_rgb8(&p("a.png"))
        .unwrap()
        .pixels()
        .all(|px| px.0 == [10, 20, 30]));
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(3, 2, Luma([0x1234]))
        .save(p("g16.png"))
        .unwrap();
    // (0x1234 + 128) / 257 = 18.
    assert!(load_rgb8(&p("g16.png"))
        .unwrap()
        .pixels()
        .all(|px| px.0 == [18; 3]));
    ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(3, 2, Rgb([0, 32896, 65535]))
        .save(p("c16.tiff"))
        .unwrap();
    assert!(load_rgb8(&p("c16.tiff"))
        .unwrap()
        .pixels()
        .all(|px| px.0 == [0, 128, 255]));
    assert!(load_luma8(&p("g.png"))
        .unwrap()
        .pixels()
        .all(|px| px.0 == [77]));
}

fn expect_image_error(path: &Path, needle: &str) {
    let e = load_rgb8(path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(needle), "{msg} (expected {needle:?})");
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let e = load_rgb8(&p("missing.png")).unwrap_err();
    assert!(matches!(e, DataError::Read { .. }), "{e}");
    expect_image_error(&p("missing.png"), "cannot read");

    std::fs::write(p("text.png"), "hello, not an image").unwrap();
    expect_image_error(&p("text.png"), "unrecognised content");
    std::fs::write(p("empty.png"), "").unwrap();
    expect_image_error(&p("empty.png"), "empty");

    let card = test_card();
    for ext in ["png", "jpg", "bmp", "tiff"] {
        let full = p(&format!("card.{ext}"));
        card.save(&full).unwrap();
        let bytes = std::fs::read(&full).unwrap();
        let cut = p(&format!("cut.{ext}"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = load_rgb8(&cut).unwrap_err();
        assert!(matches!(e, DataError::Image { .. }), "{ext}: {e}");
        assert!(e.to_string().contains("cut."), "{e}");
    }
    // A GIF is an image, just not one we take.
    std::fs::write(p("x.gif"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    expect_image_error(&p("x.gif"), "not supported");
}

#[test]
fn mvtec_layout() {
    let Some(mvtec) = shared_data("mvtec_ad") else {
        return;
    };
    let root = mvtec.join("bottle");
    let ds = data::open(&root, None).unwrap();
    assert_eq!(
        (ds.name.as_str(), ds.train.len(), ds.test.len()),
        ("bottle", 209, 83)
    );
    assert_eq!(ds.train[0], root.join("train/good/000.png"));
    assert!(ds.train.windows(2).all(|w| w[0] < w[1]));
    // Types in folder order, files sorted within.
    assert_eq!(ds.test[0].path, root.join("test/broken_large/000.png"));
    assert_eq!(
        ds.test[0].mask.as_deref(),
        Some(
            root.join("ground_truth/broken_large/000_mask.png")
                .as_path()
        )
    );
    let good: Vec<_> = ds.test.iter().filter(|t| !t.is_anomalous()).collect();
    assert_eq!(good.len(), 20);
    assert!(good.iter().all(|t| t.mask.is_none() && t.label == "good"));
    assert!(ds
        .test
        .iter()
        .filter(|t| t.is_anomalous())
        .all(|t| t.mask.as_ref().is_some_and(|m| m.is_file())));
    // Parent folder + category gives the same; without a category, the error lists them.
    assert_eq!(data::open(&mvtec, Some("bottle")).unwrap(), ds);
    let e = data::open(&mvtec, None).unwrap_err();
    assert!(e.to_string().contains("bottle"), "{e}");
    let e = data::open(&mvtec, Some("nope")).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn split_file_layout() {
    let Some(root) = shared_data("magnetic_tile") else {
        return;
    };
    let ds = data::open(&root.join("split.json"), None).unwrap();
    assert_eq!(
        (ds.name.as_str(), ds.train.len(), ds.test.len()),
        ("magnetic_tile", 400, 583)
    );
    assert_eq!(ds.train[0], root.join("MT_Free/Imgs/exp6_num_38098.jpg"));
    let anomalous = ds.test.iter().filter(|t| t.is_anomalous()).count();
    assert_eq!(anomalous, 392);
    assert!(ds.test.iter().all(|t| t.mask.is_some() == t.is_anomalous()));
    assert_eq!(data::open(&root, None).unwrap(), ds);
    // Grayscale JPEG decodes to RGB.
    let img = load_rgb8(&ds.test[0].path).unwrap();
    assert!(img.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
}

#[test]
fn plain_folders_and_layout_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = RgbImage::new(4, 4);
    for name in ["b.png", "a.JPG", "c.bmp", ".hidden.png"] {
        img.save_with_format(d.join(name), image::ImageFormat::Png)
            .unwrap();
    }
    std::fs::write(d.join("notes.txt"), "x").unwrap();
    std::fs::create_dir(d.join("sub.png")).unwrap();
    let ds = data::open(d, None).unwrap();
    let names: Vec<_> = ds
        .train
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, ["a.JPG", "b.png", "c.bmp"]);
    assert!(ds.test.is_empty());

    let missing = d.join("nowhere");
    let e = data::open(&missing, None).unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
    let e = data::list_images(&missing).unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(data::list_images(&empty).unwrap().is_empty());
    let e = data::open(&empty, None).unwrap_err();
    assert!(e.to_string().contains("no images"), "{e}");

    // Split entries must exist; the error names the entry.
    let split = d.join("s.json");
    std::fs::write(
        &split,
        r#"{"name": "x", "train": ["b.png"], "test": [{"image": "gone.png", "mask": null, "label": "good"}]}"#,
    )
    .unwrap();
    let e = data::open(&split, None).unwrap_err();
    assert!(e.to_string().contains("gone.png"), "{e}");
    std::fs::write(&split, "{").unwrap();
    let e = data::open(&split, None).unwrap_err();
    assert!(e.to_string().contains("not a valid split file"), "{e}");

    // MVTec layout with a missing ground-truth mask.
    let cat = d.join("cat");
    for sub in ["train/good", "test/good", "test/hole", "ground_truth/hole"] {
        std::fs::create_dir_all(cat.join(sub)).unwrap();
    }
    img.save(cat.join("train/good/000.png")).unwrap();
    img.save(cat.join("test/hole/000.png")).unwrap();
    let e = data::open(&cat, None).unwrap_err();
    assert!(e.to_string().contains("000_mask.png"), "{e}");
    img.save(cat.join("ground_truth/hole/000_mask.png"))
        .unwrap();
    let ds = data::open(&cat, None).unwrap();
    assert_eq!(ds.test.len(), 1);
    assert!(ds.test[0].is_anomalous());
}

/// Mean absolute difference between the pixels inside a mask and the mean of a ring around it.
fn defect_contrast(img: &RgbImage, mask: &GrayImage) -> f64 {
    let (w, h) = img.dimensions();
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < w as i64
            && y < h as i64
            && mask.get_pixel(x as u32, y as u32).0[0] > 0
    };
    let mut ring = ([0f64; 3], 0f64);
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let near = (-4..=4).any(|dy| (-4..=4).any(|dx| inside(x + dx, y + dy)));
            if near && !inside(x, y) {
                let p = img.get_pixel(x as u32, y as u32).0;
                for (sum, v) in ring.0.iter_mut().zip(p) {
                    *sum += v as f64;
                }
                ring.1 += 1.0;
            }
        }
    }
    let mean = ring.0.map(|s| s / ring.1);
    let (mut sum, mut n) = (0.0, 0.0);
    for (p, m) in img.pixels().zip(mask.pixels()) {
        if m.0[0] > 0 {
            sum += (0..3).map(|c| (p.0[c] as f64 - mean[c]).abs()).sum::<f64>() / 3.0;
            n += 1.0;
        }
    }
    sum / n
}

#[test]
fn synthetic_category() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec {
        size: 128,
        n_train: 4,
        n_test_good: 2,
        n_test_defect_per_type: 3,
        seed: 7,
    };
    let t = std::time::Instant::now();
    let ds = data::generate(dir.path(), "flange", &spec).unwrap();
    println!(
        "generated {} images in {:?}",
        ds.train.len() + ds.test.len(),
        t.elapsed()
    );
    assert_eq!(
        (ds.name.as_str(), ds.train.len(), ds.test.len()),
        ("flange", 4, 14)
    );
    let labels: Vec<&str> = ds.test.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels.iter().filter(|l| **l == "good").count(), 2);
    for kind in data::synthetic::DEFECT_TYPES {
        assert_eq!(labels.iter().filter(|l| **l == kind).count(), 3);
    }
    for t in ds.test.iter().filter(|t| t.is_anomalous()) {
        let mask_path = t.mask.as_ref().unwrap();
        let mask = load_luma8(mask_path).unwrap();
        assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
        let area = mask.pixels().filter(|p| p.0[0] == 255).count();
        assert!(area >= 12, "{}: mask area {area}", mask_path.display());
        let contrast = defect_contrast(&load_rgb8(&t.path).unwrap(), &mask);
        assert!(
            contrast >= 15.0,
            "{}: contrast {contrast:.1}",
            t.path.display()
        );
    }
    // Good parts differ from each other (pose, light), so the task is not trivial.
    assert!(load_rgb8(&ds.train[0]).unwrap() != load_rgb8(&ds.train[1]).unwrap());

    // Same spec, same bytes: in another folder, and again in place.
    let other = tempfile::tempdir().unwrap();
    data::generate(other.path(), "flange", &spec).unwrap();
    let first = all_files(&dir.path().join("flange"));
    assert_eq!(first, all_files(&other.path().join("flange")));
    data::generate(dir.path(), "flange", &spec).unwrap();
    assert_eq!(first, all_files(&dir.path().join("flange")));

    // A smaller re-run leaves no stale samples; a different seed changes the images.
    let smaller = SyntheticSpec {
        n_train: 2,
        n_test_defect_per_type: 0,
        seed: 8,
        ..spec.clone()
    };
    let ds = data::generate(dir.path(), "flange", &smaller).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (2, 2));
    assert!(!dir.path().join("flange/ground_truth/dent").exists());
    assert_ne!(first, all_files(&dir.path().join("flange")));

    // It will not write into a folder it did not make.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "x").unwrap();
    let e = data::generate(dir.path(), "foreign", &spec).unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert!(data::generate(dir.path(), "../x", &spec).is_err());
}

#[test]
fn synthetic_default_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SyntheticSpec::default();
    let t = std::time::Instant::now();
    let ds = data::generate(dir.path(), "synthetic", &spec).unwrap();
    println!(
        "default spec: {} images in {:?}",
        ds.train.len() + ds.test.len(),
        t.elapsed()
    );
    assert_eq!((ds.train.len(), ds.test.len()), (40, 30));
}
