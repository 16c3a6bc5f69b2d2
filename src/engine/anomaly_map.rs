//! Patch-score grid to anomaly map (paper Sec. 3.3): bilinear upsampling to the input resolution,
//! then a Gaussian blur (sigma 4) that matches `scipy.ndimage.gaussian_filter` (truncate 4.0,
//! mode "reflect", i.e. half-sample symmetric borders) as the official code uses it.
use super::EngineError;
use crate::bank::{check_blur_sigma, ImageScore, MAX_BLUR_SIGMA};
use tch::{Device, Kind, Tensor};

/// scipy's kernel radius rule: `int(truncate * sigma + 0.5)`, with sigma capped at
/// `MAX_BLUR_SIGMA` so no caller can ask for an unbounded kernel allocation.
fn radius(sigma: f64) -> i64 {
    (4.0 * sigma.min(MAX_BLUR_SIGMA) + 0.5) as i64
}

/// Normalised 1-D Gaussian taps, computed in f64 as scipy does.
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let r = radius(sigma);
    let taps: Vec<f64> = (-r..=r)
        .map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// Half-sample symmetric source index of position `j` in `0..n` (`d c b a | a b c d | d c b a`);
/// repeated folding keeps it valid even when the kernel radius exceeds the size.
fn mirror(mut j: i64, n: i64) -> i64 {
    loop {
        if j < 0 {
            j = -j - 1;
        } else if j >= n {
            j = 2 * n - j - 1;
        } else {
            return j;
        }
    }
}

/// Source index of every padded position.
fn reflect_indices(n: i64, r: i64, device: Device) -> Result<Tensor, EngineError> {
    let idx: Vec<i64> = (-r..n + r).map(|j| mirror(j, n)).collect();
    Ok(Tensor::f_from_slice(&idx)?.f_to_device(device)?)
}

/// Separable Gaussian blur of `(B, H, W)` f32 maps; `sigma == 0` returns the input, a sigma
/// outside `0..=MAX_BLUR_SIGMA` (or NaN) is an error.
pub fn gaussian_blur(maps: &Tensor, sigma: f64) -> Result<Tensor, EngineError> {
    check_blur_sigma(sigma)?;
    if sigma == 0.0 {
        return Ok(maps.shallow_clone());
    }
    let (b, h, w) = maps.size3()?;
    let device = maps.device();
    let r = radius(sigma);
    let k: Vec<f32> = gaussian_kernel(sigma).iter().map(|&v| v as f32).collect();
    let kernel = Tensor::f_from_slice(&k)?.f_to_device(device)?;
    let x = maps.f_view([b, 1, h, w])?;
    let x = x
        .f_index_select(3, &reflect_indices(w, r, device)?)?
        .f_conv2d(
            &kernel.f_view([1, 1, 1, 2 * r + 1])?,
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )?;
    let x = x
        .f_index_select(2, &reflect_indices(h, r, device)?)?
        .f_conv2d(
            &kernel.f_view([1, 1, 2 * r + 1, 1])?,
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )?;
    Ok(x.f_view([b, h, w])?)
}

/// `(B, h, w)` grids to `(B, height, width)`: bilinear upsampling, then the blur.
fn smooth(grid: &Tensor, (width, height): (u32, u32), sigma: f64) -> Result<Tensor, EngineError> {
    let (b, h, w) = grid.size3()?;
    let (width, height) = (width as i64, height as i64);
    let up = grid
        .f_to_kind(Kind::Float)?
        .f_view([b, 1, h, w])?
        .f_upsample_bilinear2d([height, width], false, None, None)?
        .f_view([b, height, width])?;
    gaussian_blur(&up, sigma)
}

/// `(B, h, w)` patch scores to `(B, height, width)` anomaly maps. `scored` (`(B, h, w)`, 1 for
/// a cell of the image, 0 for padding) makes each pixel a weighted mean of scored cells only
/// (normalised convolution): padding holds no score, and blurred in as one it would pull down a
/// padded part's border, where edge defects lie. `None` is the paper's map (nothing padded).
pub fn anomaly_maps(
    patch_scores: &Tensor,
    dims: (u32, u32),
    sigma: f64,
    scored: Option<&Tensor>,
) -> Result<Tensor, EngineError> {
    let Some(scored) = scored else {
        return smooth(patch_scores, dims, sigma);
    };
    let scored = scored.f_to_kind(Kind::Float)?;
    let sum = smooth(
        &patch_scores.f_to_kind(Kind::Float)?.f_mul(&scored)?,
        dims,
        sigma,
    )?;
    let weight = smooth(&scored, dims, sigma)?;
    // Far from any scored cell both are 0 (padding, zeroed by the caller's mask anyway).
    Ok(sum.f_div(&weight.f_clamp_min(WEIGHT_FLOOR)?)?)
}

/// Least weight a map pixel is divided by: pixels with less lie in padding, far from any cell.
const WEIGHT_FLOOR: f64 = 1e-6;

/// `(B, h, w)` 0/1 tensor of each image's scored cells on `device`, or `None` when every cell
/// of every image is (no padding: the paper's map, bit for bit).
pub fn scored_cells(
    cells: &[Vec<bool>],
    (h, w): (i64, i64),
    device: Device,
) -> Result<Option<Tensor>, EngineError> {
    if cells.iter().all(|c| c.iter().all(|&v| v)) {
        return Ok(None);
    }
    let flat: Vec<f32> = cells.iter().flatten().map(|&v| f32::from(v)).collect();
    Ok(Some(
        Tensor::f_from_slice(&flat)?
            .f_view([cells.len() as i64, h, w])?
            .f_to_device(device)?,
    ))
}

/// Images per block when whole maps are made only for their peaks (bounded memory).
const PEAK_BLOCK: usize = 16;

/// Each image's anomaly-map peak over its inspected pixels, from `(B, h, w)` patch-score
/// `grids`: the map made as inspection makes it (`cells[i]`, image `i`'s own cells: padding takes
/// no part), the peak over `masks[i]` (every pixel when `None`; 0 when nothing is inspected).
/// Calibration and `update` score good images by it, so their thresholds are inspection's.
pub fn map_peaks(
    grids: &Tensor,
    dims: (u32, u32),
    sigma: f64,
    cells: &[Vec<bool>],
    masks: &[Option<Vec<bool>>],
) -> Result<Vec<f32>, EngineError> {
    let (_, h, w) = grids.size3()?;
    let px = (dims.0 * dims.1) as usize;
    let mut peaks = Vec::with_capacity(cells.len());
    let blocks = grids.f_split(PEAK_BLOCK as i64, 0)?;
    for ((block, cells), masks) in blocks
        .iter()
        .zip(cells.chunks(PEAK_BLOCK))
        .zip(masks.chunks(PEAK_BLOCK))
    {
        let scored = scored_cells(cells, (h, w), block.device())?;
        let maps = super::host::to_host_f32(&anomaly_maps(block, dims, sigma, scored.as_ref())?)?;
        for (map, mask) in maps.chunks_exact(px).zip(masks) {
            peaks.push(peak(map, mask.as_deref()).1);
        }
    }
    Ok(peaks)
}

/// Image scores of `(B, h, w)` patch-score grids by `rule` (`update`'s images: no ROI), with
/// `cells` and `masks` as in `map_peaks`. A top patch needs no mask: padding cells are not
/// searched and score 0. Inspection takes its peaks from the maps it shows.
pub fn image_scores(
    patch_scores: &Tensor,
    rule: ImageScore,
    dims: (u32, u32),
    sigma: f64,
    cells: &[Vec<bool>],
    masks: &[Option<Vec<bool>>],
) -> Result<Vec<f32>, EngineError> {
    match rule {
        ImageScore::TopPatch => Ok(super::host::to_host_f32(
            &patch_scores.f_amax([1, 2], false)?,
        )?),
        ImageScore::MapPeak => map_peaks(patch_scores, dims, sigma, cells, masks),
    }
}

/// Index and value of the highest of `values` where `inspect` is true (all when `None`); the
/// first on ties. `(0, 0.0)` when nothing is inspected: scores are distances, 0 the best.
pub fn peak(values: &[f32], inspect: Option<&[bool]>) -> (usize, f32) {
    values
        .iter()
        .enumerate()
        .filter(|(i, _)| inspect.is_none_or(|m| m.get(*i) == Some(&true)))
        .fold(
            (0, 0.0f32),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 2-D convolution with explicit mirrored lookups, in f64.
    fn reference_blur(img: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
        let k = gaussian_kernel(sigma);
        let r = (k.len() / 2) as i64;
        let at =
            |y: i64, x: i64| img[mirror(y, h as i64) as usize * w + mirror(x, w as i64) as usize];
        let mut out = vec![0.0; h * w];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let mut acc = 0.0;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let v = at(y + dy, x + dx);
                        acc += v * k[(dy + r) as usize] * k[(dx + r) as usize];
                    }
                }
                out[y as usize * w + x as usize] = acc;
            }
        }
        out
    }

    #[test]
    fn out_of_range_sigma_is_an_error_not_an_abort() {
        let maps = Tensor::zeros([1, 8, 8], (Kind::Float, Device::Cpu));
        for sigma in [1e9, f64::NAN, f64::INFINITY, -1.0] {
            let e = gaussian_blur(&maps, sigma).unwrap_err().to_string();
            assert!(e.contains("blur_sigma"), "{sigma}: {e}");
        }
        // The kernel alone is bounded too: 1e9 gets the largest accepted sigma's taps.
        assert_eq!(
            gaussian_kernel(1e9).len(),
            gaussian_kernel(MAX_BLUR_SIGMA).len()
        );
    }

    #[test]
    fn padding_takes_no_part_in_a_padded_map() {
        // A 4 x 8 grid whose middle four columns show the part (every cell 5), padding around.
        let (mut grid, mut cells) = (vec![0.0f32; 32], vec![false; 32]);
        for i in (0..32).filter(|i| (2..6).contains(&(i % 8))) {
            (grid[i], cells[i]) = (5.0, true);
        }
        let t = Tensor::from_slice(&grid).view([1, 4, 8]);
        let scored = scored_cells(&[cells], (4, 8), Device::Cpu).unwrap();
        let padded = anomaly_maps(&t, (64, 32), 4.0, scored.as_ref()).unwrap();
        let paper = anomaly_maps(&t, (64, 32), 4.0, None).unwrap();
        // The part spans pixels 16..48: flat at 5 to its border, where the paper's map sags.
        for x in 16..48 {
            let v = padded.double_value(&[0, 16, x]);
            assert!((v - 5.0).abs() < 1e-4, "{x}: {v}");
        }
        assert!(paper.double_value(&[0, 16, 16]) < 4.0);
        // Nothing padded: no weights, the paper's map exactly.
        assert!(scored_cells(&[vec![true; 32]], (4, 8), Device::Cpu)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_peak_is_the_first_highest_inspected_value() {
        let v = [1.0, 5.0, 2.0, 5.0, 9.0];
        assert_eq!(peak(&v, None), (4, 9.0));
        let mask = [true, true, true, true, false];
        assert_eq!(peak(&v, Some(&mask)), (1, 5.0));
        assert_eq!(peak(&v, Some(&[false; 5])), (0, 0.0));
        assert_eq!(peak(&[f32::NAN, 3.0], None), (1, 3.0));
    }

    #[test]
    fn a_map_peak_lies_below_the_top_patch_and_follows_the_blur() {
        // One hot cell: the upsampled, blurred map spreads it, so its peak is lower.
        let mut grid = vec![1.0f32; 64];
        grid[27] = 10.0;
        let t = Tensor::from_slice(&grid).view([1, 8, 8]);
        let score = |rule, sigma| score_placed(&t, rule, sigma, 64);
        let (top, peak4, peak0) = (
            score(ImageScore::TopPatch, 4.0),
            score(ImageScore::MapPeak, 4.0),
            score(ImageScore::MapPeak, 0.0),
        );
        assert_eq!(top, 10.0);
        assert!(
            peak4 < peak0 && peak0 <= top && peak4 > 1.0,
            "{peak4} {peak0}"
        );
    }

    /// The score by `rule` of an 8 x 8 grid over a `width` x 64 image at the left of a 64 x 64
    /// input (filled when `width` is 64), its cells and pixels as `update` derives them.
    fn score_placed(grid: &Tensor, rule: ImageScore, sigma: f64, width: u32) -> f32 {
        let g = crate::data::Geometry {
            orig_width: width,
            orig_height: 64,
            scale_x: 1.0,
            scale_y: 1.0,
            off_x: 0.0,
            off_y: 0.0,
            width: 64,
            height: 64,
        };
        let cells = [crate::decide::content_cells(&g, 8, 8)];
        let masks = [crate::decide::inspected(None, &g)];
        image_scores(grid, rule, (64, 64), sigma, &cells, &masks).unwrap()[0]
    }

    #[test]
    fn a_padded_image_peaks_on_its_own_cells_without_the_padding_pulling_it_down() {
        // The image fills the grid's left half (cells scored 1), its hot cell at its border;
        // padding cells are not searched (0).
        let mut grid = vec![0.0f32; 64];
        for r in 0..8 {
            grid[r * 8..r * 8 + 4].fill(1.0);
        }
        grid[3 * 8 + 3] = 10.0;
        let t = Tensor::from_slice(&grid).view([1, 8, 8]);
        let aware = score_placed(&t, ImageScore::MapPeak, 4.0, 32);
        let paper = score_placed(&t, ImageScore::MapPeak, 4.0, 64);
        assert!(aware > paper && aware < 10.0, "{aware} {paper}");
        // Padding alone scores nothing: a hot padding cell is not a peak.
        let mut grid = vec![1.0f32; 64];
        for r in 0..8 {
            grid[r * 8 + 4..r * 8 + 8].fill(0.0);
        }
        grid[3 * 8 + 6] = 10.0;
        let t = Tensor::from_slice(&grid).view([1, 8, 8]);
        let peak = score_placed(&t, ImageScore::MapPeak, 4.0, 32);
        assert!((peak - 1.0).abs() < 1e-4, "{peak}");
    }

    #[test]
    fn kernel_matches_scipy_rule() {
        let k = gaussian_kernel(4.0);
        assert_eq!(k.len(), 33);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // scipy.ndimage._gaussian_kernel1d(4, 0, 16)[16] = 0.09973... (exp(0)/sum)
        let expected_centre = 1.0
            / (-16i64..=16)
                .map(|x| (-(x * x) as f64 / 32.0).exp())
                .sum::<f64>();
        assert!((k[16] - expected_centre).abs() < 1e-15);
    }

    #[test]
    fn blur_matches_direct_convolution_with_reflected_borders() {
        let (h, w) = (20usize, 23usize);
        // A spike near a corner and a ramp: borders matter.
        let img: Vec<f64> = (0..h * w)
            .map(|i| ((i % w) as f64) * 0.1 + if i == w + 1 { 10.0 } else { 0.0 })
            .collect();
        let t = Tensor::from_slice(&img.iter().map(|&v| v as f32).collect::<Vec<_>>())
            .view([1, h as i64, w as i64]);
        let got: Vec<f32> = gaussian_blur(&t, 2.5)
            .unwrap()
            .view([-1])
            .try_into()
            .unwrap();
        let want = reference_blur(&img, h, w, 2.5);
        for (g, e) in got.iter().zip(&want) {
            assert!((*g as f64 - e).abs() < 1e-5, "{g} vs {e}");
        }
        // The blur preserves the mean of the image up to border effects only through reflection:
        // a constant image stays constant.
        let c = Tensor::full([1, 8, 8], 3.0, (Kind::Float, Device::Cpu));
        let cb = gaussian_blur(&c, 4.0).unwrap();
        assert!((cb - 3.0).abs().max().double_value(&[]) < 1e-5);
    }
}
