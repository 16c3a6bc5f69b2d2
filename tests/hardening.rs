//! What a careless or hostile user hands the data layer: decompression bombs, odd folders, and
//! the crop that must never compute more of a resize than it keeps.
use image::{GrayImage, Luma, Rgb, RgbImage};
use patchcore::data::resize::{resize_bilinear_pil, resize_window, Window};
use patchcore::data::{list_images, load_rgb8, preprocess, CropMode, DataError};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// CRC-32 (IEEE) of PNG chunks, so crafted headers are valid PNG.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header declares `w` x `h` RGB pixels followed by a few bytes of junk data.
fn crafted_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(b"IEND", &[]);
    out
}

fn image_error(path: &Path) -> String {
    match load_rgb8(path) {
        Err(e @ DataError::Image { .. }) => e.to_string(),
        other => panic!("{}: expected an image error, got {other:?}", path.display()),
    }
}

#[test]
fn decode_limits_are_checked_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    // A real, tiny PNG of 1 x 60,000 pixels (the bomb): refused for its aspect ratio.
    let strip = dir.path().join("strip.png");
    GrayImage::from_pixel(1, 60_000, Luma([128]))
        .save(&strip)
        .unwrap();
    let msg = image_error(&strip);
    assert!(
        msg.contains("strip.png") && msg.contains("1 x 60000"),
        "{msg}"
    );
    assert!(
        msg.contains("aspect ratio") && msg.contains("--max-aspect"),
        "{msg}"
    );
    // A header declaring 100,000 x 100,000 pixels: refused by the pixel budget, never allocated.
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, crafted_png(100_000, 100_000)).unwrap();
    let msg = image_error(&huge);
    assert!(
        msg.contains("10000000000 pixels") && msg.contains("--max-pixels"),
        "{msg}"
    );
    // Within the limits but lying about its data: an ordinary decode error.
    let liar = dir.path().join("liar.png");
    std::fs::write(&liar, crafted_png(300, 200)).unwrap();
    assert!(image_error(&liar).contains("liar.png"));
}

#[test]
fn a_crop_computes_only_its_window_of_the_resize() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..60 {
        let (sw, sh) = (rng.random_range(1..90), rng.random_range(1..90));
        let img = RgbImage::from_fn(sw, sh, |x, y| {
            Rgb([(x * 7 + y) as u8, (y * 13) as u8, (x ^ y) as u8])
        });
        let (dw, dh) = (rng.random_range(1..120), rng.random_range(1..120));
        let (x0, y0) = (rng.random_range(0..dw), rng.random_range(0..dh));
        let (x1, y1) = (rng.random_range(x0 + 1..=dw), rng.random_range(y0 + 1..=dh));
        let full = resize_bilinear_pil(&img, dw, dh);
        let want = image::imageops::crop_imm(&full, x0, y0, x1 - x0, y1 - y0).to_image();
        let got = resize_window(&img, dw, dh, Window { x0, y0, x1, y1 });
        assert!(
            got == want,
            "{sw}x{sh} -> {dw}x{dh}, window {x0},{y0}..{x1},{y1}"
        );
    }
    // An elongated image's centre crop: the same pixels as before, from a window of the resize.
    let long = RgbImage::from_fn(40, 3000, |x, y| Rgb([x as u8, (y % 251) as u8, 9]));
    let (crop, g) = preprocess(
        &long,
        CropMode::Center {
            resize: 256,
            crop: 224,
        },
    );
    let full = resize_bilinear_pil(&long, 256, 19_200);
    let want = image::imageops::crop_imm(&full, g.off_x as u32, g.off_y as u32, 224, 224);
    assert!(crop == want.to_image());
}

#[test]
fn one_lister_descends_and_skips_masks_and_hidden_entries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let px = GrayImage::from_pixel(2, 2, Luma([0]));
    for rel in [
        "a/1.png",
        "a/b/2.PNG",
        "c.jpeg",
        "ground_truth/crack/1_mask.png",
        ".cache/3.png",
        ".hidden.png",
    ] {
        std::fs::create_dir_all(d.join(rel).parent().unwrap()).unwrap();
        px.save_with_format(d.join(rel), image::ImageFormat::Png)
            .unwrap();
    }
    std::fs::write(d.join("notes.txt"), "x").unwrap();
    let found: Vec<String> = list_images(d)
        .unwrap()
        .iter()
        .map(|p| p.strip_prefix(d).unwrap().display().to_string())
        .collect();
    assert_eq!(found, ["a/1.png", "a/b/2.PNG", "c.jpeg"]);
    let e = list_images(&d.join("missing")).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}
