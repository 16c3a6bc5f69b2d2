//! Defect regions: the anomaly map thresholded at the pixel threshold, split into 8-connected
//! components, each measured (area, box, peak) in original-image pixels. One pass over the map
//! plus one visit per region pixel, so the cost is linear in the map's pixels.
use crate::data::Geometry;
use serde::{Deserialize, Serialize};

/// One connected region of map pixels above the pixel threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Pixels of the anomaly map (model input resolution).
    pub map_pixels: u64,
    /// Area in original-image pixels (map pixels scaled by the crop's resize factors).
    pub area: u64,
    /// Area in mm² when the bank records a pixel size.
    pub area_mm2: Option<f32>,
    /// `[x, y, w, h]` in original-image pixels.
    pub box_original: [u32; 4],
    /// Highest map value inside the region.
    pub peak: f32,
}

/// The largest region and the peak over all regions: what the CSV reports for an image.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RegionSummary {
    pub count: usize,
    pub largest_area: u64,
    pub largest_box: Option<[u32; 4]>,
    pub peak: Option<f32>,
}

impl RegionSummary {
    /// Summarises the regions of at least `min_area` original pixels, given sorted largest
    /// first (as [`find_regions`] returns them).
    pub fn of(regions: &[Region], min_area: u64) -> RegionSummary {
        let counted = || regions.iter().filter(|r| r.area >= min_area);
        RegionSummary {
            count: counted().count(),
            largest_area: counted().next().map_or(0, |r| r.area),
            largest_box: counted().next().map(|r| r.box_original),
            peak: counted().map(|r| r.peak).reduce(f32::max),
        }
    }
}

/// Regions of `map` (`width` x `height`, row-major) with values strictly above `threshold`,
/// restricted to pixels where `inspect` is true (all pixels when `None`). Regions smaller than
/// `min_area` original pixels do not count and are dropped. Sorted by area, largest first.
pub fn find_regions(
    map: &[f32],
    (width, height): (u32, u32),
    threshold: f32,
    inspect: Option<&[bool]>,
    geometry: &Geometry,
    min_area: u64,
    mm_per_pixel: Option<f32>,
) -> Vec<Region> {
    let (w, h) = (width as usize, height as usize);
    let n = (w * h).min(map.len());
    let hot = |i: usize| map[i] > threshold && inspect.is_none_or(|m| m.get(i) == Some(&true));
    let mut seen = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    // Original pixels covered by one map pixel.
    let px_area = 1.0 / (geometry.scale_x * geometry.scale_y).max(f64::MIN_POSITIVE);
    for start in 0..n {
        if seen[start] || !hot(start) {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let (mut count, mut peak) = (0u64, f32::NEG_INFINITY);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            count += 1;
            peak = peak.max(map[i]);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if j < n && !seen[j] && hot(j) {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let area = (count as f64 * px_area).round() as u64;
        if area < min_area {
            continue;
        }
        out.push(Region {
            map_pixels: count,
            area,
            area_mm2: mm_per_pixel.map(|mm| area as f32 * mm * mm),
            box_original: geometry.crop_rect_to_original(
                x0 as f64,
                y0 as f64,
                (x1 + 1) as f64,
                (y1 + 1) as f64,
            ),
            peak,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.area));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identity geometry: map pixels are original pixels.
    fn identity(size: u32) -> Geometry {
        Geometry {
            orig_width: size,
            orig_height: size,
            scale_x: 1.0,
            scale_y: 1.0,
            off_x: 0.0,
            off_y: 0.0,
            width: size,
            height: size,
        }
    }

    fn map_with(size: usize, hot: &[(usize, usize)], value: f32) -> Vec<f32> {
        let mut m = vec![0.0; size * size];
        for &(x, y) in hot {
            m[y * size + x] = value;
        }
        m
    }

    #[test]
    fn diagonal_neighbours_join_and_separate_blobs_stay_apart() {
        let mut hot = vec![(1, 1), (2, 2), (3, 3)]; // one diagonal region of 3
        hot.extend([(7, 0), (8, 0), (7, 1), (8, 1)]); // a 2x2 square
        let mut m = map_with(10, &hot, 1.0);
        m[8 * 10 + 8] = 5.0; // a single hot pixel
        let r = find_regions(&m, (10, 10), 0.5, None, &identity(10), 0, Some(0.5));
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].area, 4);
        assert_eq!(r[0].box_original, [7, 0, 2, 2]);
        assert_eq!(r[0].area_mm2, Some(1.0));
        assert_eq!(r[1].area, 3);
        assert_eq!(r[1].box_original, [1, 1, 3, 3]);
        assert_eq!(r[2].peak, 5.0);
        let s = RegionSummary::of(&r, 0);
        assert_eq!((s.count, s.largest_area, s.peak), (3, 4, Some(5.0)));
        let s = RegionSummary::of(&r, 2);
        assert_eq!((s.count, s.largest_area, s.peak), (2, 4, Some(1.0)));
    }

    #[test]
    fn min_area_drops_small_regions_and_the_mask_hides_pixels() {
        let m = map_with(10, &[(1, 1), (5, 5), (5, 6), (6, 5)], 1.0);
        let r = find_regions(&m, (10, 10), 0.5, None, &identity(10), 2, None);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].area, 3);
        let mut inspect = vec![true; 100];
        inspect[5 * 10 + 5] = false;
        inspect[5 * 10 + 6] = false;
        let r = find_regions(&m, (10, 10), 0.5, Some(&inspect), &identity(10), 0, None);
        assert_eq!(r.iter().map(|r| r.area).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn areas_are_in_original_pixels() {
        // A 448-pixel image halved to the 224 map: one map pixel covers 4 original pixels.
        let g = Geometry {
            orig_width: 448,
            orig_height: 448,
            scale_x: 0.5,
            scale_y: 0.5,
            off_x: 0.0,
            off_y: 0.0,
            width: 224,
            height: 224,
        };
        let m = map_with(224, &[(10, 10), (11, 10)], 1.0);
        let r = find_regions(&m, (224, 224), 0.5, None, &g, 0, None);
        assert_eq!((r[0].map_pixels, r[0].area), (2, 8));
        assert_eq!(r[0].box_original, [20, 20, 4, 2]);
    }
}
