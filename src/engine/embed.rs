//! Locally aware patch features (paper Sec. 3.1, Eq. 2-3), with the official code's numbers:
//! each stage map is unfolded into 3x3 neighbourhoods (zero padding), coarser grids are bilinearly
//! upsampled onto the finest one, each stage's flattened neighbourhood is adaptive-average-pooled to
//! `pretrain_dim`, and the stacked stages are pooled again to `embed_dim`.
//!
//! Unfolding and both poolings are fixed linear maps of each stage's `C * k * k` taps, so their
//! product is one `(embed_dim, C, k, k)` weight per stage: the whole embedding is one convolution
//! per stage, grouped where outputs read separate channel blocks (plus the resampling, which
//! commutes with it), never materialising the taps (9,216 per position for WideResNet's layer3)
//! nor the `2 * pretrain_dim` stacked vector.
use tch::{Device, Kind, TchError, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbedParams {
    pub patch_size: i64,
    pub pretrain_dim: i64,
    pub embed_dim: i64,
    /// Which stage's grid the others are resampled onto (0 = the first stage given).
    pub grid_stage: usize,
}

impl Default for EmbedParams {
    fn default() -> Self {
        Self {
            patch_size: 3,
            pretrain_dim: 1024,
            embed_dim: 1024,
            grid_stage: 0,
        }
    }
}

/// Entries of one stage's weight before grouping (8 bytes each while it is built): 1 GB. The
/// paper's settings on WideResNet's layer3 need 4.7 million.
const MAX_WEIGHT_ENTRIES: i64 = 1 << 27;

/// The embedding of stage maps with given channel counts, as one convolution per stage.
pub struct Embedding {
    params: EmbedParams,
    stages: Vec<StageConv>,
}

/// One stage's share of the output: `weight` gives output channels `first..first + len`.
struct StageConv {
    /// `(len, C / groups, k, k)` f32.
    weight: Tensor,
    /// Channel groups of the convolution: where every output reads one equal, consecutive
    /// share of the channels (WideResNet's stages: one or two channels each), a grouped
    /// convolution skips the zero weights a dense one would multiply.
    groups: i64,
    first: i64,
    /// Stages with no more taps than `pretrain_dim` are resampled before the convolution, as
    /// banks fitted with them were (the two orders differ where a coarse grid is resampled).
    resample_first: bool,
}

impl Embedding {
    /// Weights for stages of `channels` on `device`, built once per extractor.
    pub fn new(channels: &[i64], p: EmbedParams, device: Device) -> Result<Self, TchError> {
        let (k, pd, ed) = (p.patch_size, p.pretrain_dim, p.embed_dim);
        if k < 1 || pd < 1 || ed < 1 || channels.is_empty() || channels.iter().any(|&c| c < 1) {
            return Err(TchError::Shape(format!(
                "cannot embed stages of {channels:?} channels with {p:?}"
            )));
        }
        let stacked = channels.len() as i64 * pd;
        let stages = channels
            .iter()
            .enumerate()
            .map(|(s, &c)| {
                let (taps, lo) = (c * k * k, s as i64 * pd);
                // The final windows that reach this stage's `pd` outputs: a contiguous range.
                let reaches = |i: i64| {
                    let (a, b) = window(i, stacked, ed);
                    a < lo + pd && b > lo
                };
                let first = (0..ed).find(|&i| reaches(i)).unwrap_or(0);
                let len = (first..ed).take_while(|&i| reaches(i)).count() as i64;
                if len * taps > MAX_WEIGHT_ENTRIES {
                    // Settings a bank may carry (up to 16,384 dims, 15 x 15 patches) could ask
                    // for tens of GB here: refuse rather than abort on allocation.
                    return Err(TchError::Shape(format!(
                        "embedding {p:?} of a {c}-channel stage needs a {len} x {taps} weight, \
                         over the limit of {MAX_WEIGHT_ENTRIES} entries"
                    )));
                }
                // Final window over stage outputs, each a window over taps: both are averages.
                let mut dense = vec![0f64; (len * taps) as usize];
                for r in 0..len {
                    let (a, b) = window(first + r, stacked, ed);
                    for j in a.max(lo)..b.min(lo + pd) {
                        let (ta, tb) = window(j - lo, taps, pd);
                        let share = 1.0 / ((b - a) * (tb - ta)) as f64;
                        for t in ta..tb {
                            dense[(r * taps + t) as usize] += share;
                        }
                    }
                }
                let groups = channel_groups(&dense, len, c);
                // Output block g reads channel block g only: keep just that block's weights.
                let (rows, per) = (len / groups, c / groups);
                let mut kept = Vec::with_capacity((len * per * k * k) as usize);
                for r in 0..len {
                    let from = (r / rows * per * k * k + r * taps) as usize;
                    kept.extend(
                        dense[from..from + (per * k * k) as usize]
                            .iter()
                            .map(|&v| v as f32),
                    );
                }
                Ok(StageConv {
                    weight: Tensor::f_from_slice(&kept)?
                        .f_view([len, per, k, k])?
                        .f_to_device(device)?,
                    groups,
                    first,
                    resample_first: taps <= pd,
                })
            })
            .collect::<Result<Vec<_>, TchError>>()?;
        Ok(Self { params: p, stages })
    }

    /// Stage maps `(B, C_i, h_i, w_i)` to patch rows `(B, H*W, embed_dim)` (f32) on the grid of
    /// the grid stage's map. Rows are in row-major grid order.
    pub fn apply(&self, maps: &[Tensor]) -> Result<Tensor, TchError> {
        let p = self.params;
        let grid = maps
            .get(p.grid_stage)
            .ok_or_else(|| TchError::Shape(format!("no stage map {} to grid on", p.grid_stage)))?;
        if maps.len() != self.stages.len() {
            return Err(TchError::Shape(format!(
                "{} stage maps for an embedding of {} stages",
                maps.len(),
                self.stages.len()
            )));
        }
        let (b, _, h, w) = grid.size4()?;
        let pad = p.patch_size / 2;
        let parts = maps
            .iter()
            .zip(&self.stages)
            .map(|(m, st)| {
                let m = m.f_to_kind(Kind::Float)?;
                let resample = |t: Tensor| {
                    if t.size()[2..] == [h, w] {
                        Ok(t)
                    } else {
                        t.f_upsample_bilinear2d([h, w], false, None, None)
                    }
                };
                let conv = |t: &Tensor| {
                    t.f_conv2d(
                        &st.weight,
                        None::<Tensor>,
                        [1, 1],
                        [pad, pad],
                        [1, 1],
                        st.groups,
                    )
                };
                if st.resample_first {
                    conv(&resample(m)?)
                } else {
                    resample(conv(&m)?)
                }
            })
            .collect::<Result<Vec<_>, TchError>>()?;
        // Stages usually own consecutive output channels; a pooling window that straddles two
        // stages (odd dimensions) sums their shares instead.
        let out = if self.tiles_output() {
            Tensor::f_cat(&parts, 1)?
        } else {
            let out = Tensor::f_zeros([b, p.embed_dim, h, w], (Kind::Float, grid.device()))?;
            for (y, st) in parts.iter().zip(&self.stages) {
                let _ = out.f_narrow(1, st.first, y.size()[1])?.f_add_(y)?;
            }
            out
        };
        // Rows contiguous per patch: the search and the bank read them as `(N, D)` views.
        out.f_permute([0, 2, 3, 1])?
            .f_contiguous()?
            .f_view([b, h * w, p.embed_dim])
    }
}

impl Embedding {
    /// Whether the stages' output channels follow each other without overlap and fill the output.
    fn tiles_output(&self) -> bool {
        let mut next = 0;
        for st in &self.stages {
            if st.first != next {
                return false;
            }
            next += st.weight.size()[0];
        }
        next == self.params.embed_dim
    }
}

/// The most channel groups a `(len, C, k, k)` weight (row-major in `w`) splits into: output
/// block `g` (of `len / groups` rows) reads only channel block `g` (of `C / groups`). 1 when none.
fn channel_groups(w: &[f64], len: i64, c: i64) -> i64 {
    let per_channel = w.len() / (len * c).max(1) as usize;
    let reads = |r: i64, ch: i64| {
        let at = ((r * c + ch) as usize) * per_channel;
        w[at..at + per_channel].iter().any(|&v| v != 0.0)
    };
    let splits = |groups: i64| {
        let (rows, chans) = (len / groups, c / groups);
        (0..len).all(|r| (0..c).all(|ch| ch / chans == r / rows || !reads(r, ch)))
    };
    (1..=c.min(len))
        .rev()
        .find(|&g| len % g == 0 && c % g == 0 && splits(g))
        .unwrap_or(1)
}

/// `adaptive_avg_pool1d`'s window from `l` inputs to `n` outputs: output `i` averages inputs
/// `[floor(i * l / n), ceil((i + 1) * l / n))`.
fn window(i: i64, l: i64, n: i64) -> (i64, i64) {
    ((i * l) / n, ((i + 1) * l + n - 1) / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Independent, literal version of the official code path (per-map interpolation of every
    /// unfolded channel, pooling written as explicit window means).
    fn reference(maps: &[Tensor], p: EmbedParams) -> Tensor {
        let (b, _, h, w) = maps[p.grid_stage].size4().unwrap();
        let mut per_stage = Vec::new();
        for m in maps {
            let (_, c, mh, mw) = m.size4().unwrap();
            let k = p.patch_size;
            let padded = m.constant_pad_nd([k / 2, k / 2, k / 2, k / 2]);
            let mut taps = Vec::new();
            for ch in 0..c {
                for ky in 0..k {
                    for kx in 0..k {
                        let t = padded.narrow(1, ch, 1).narrow(2, ky, mh).narrow(3, kx, mw);
                        let t = if (mh, mw) == (h, w) {
                            t
                        } else {
                            t.upsample_bilinear2d([h, w], false, None, None)
                        };
                        taps.push(t.reshape([b * h * w]));
                    }
                }
            }
            let flat = Tensor::stack(&taps, 1); // (N, C*k*k)
            per_stage.push(window_means(&flat, p.pretrain_dim));
        }
        window_means(&Tensor::cat(&per_stage, 1), p.embed_dim).view([b, h * w, p.embed_dim])
    }

    /// adaptive_avg_pool1d's windows: [floor(i*L/n), ceil((i+1)*L/n)).
    fn window_means(x: &Tensor, n: i64) -> Tensor {
        let l = x.size()[1];
        let cols: Vec<Tensor> = (0..n)
            .map(|i| {
                let s = (i * l) / n;
                let e = ((i + 1) * l + n - 1) / n;
                x.narrow(1, s, e - s).mean_dim(1, false, Kind::Float)
            })
            .collect();
        Tensor::stack(&cols, 1)
    }

    #[test]
    fn equals_unfold_and_pool_definition() {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let maps = [
            Tensor::rand([2, 6, 8, 8], opts),
            Tensor::rand([2, 4, 4, 4], opts),
            Tensor::rand([2, 8, 2, 2], opts),
        ];
        // Pooling dims that give grouped weights (16 = 4 * 4 taps per channel), dense ones, final
        // windows straddling two stages (5 and 7), and coarser stages resampled after their
        // convolution.
        for (pretrain_dim, embed_dim, grid_stage) in
            [(16, 12, 0), (8, 8, 1), (24, 16, 0), (5, 7, 1)]
        {
            let p = EmbedParams {
                patch_size: 3,
                pretrain_dim,
                embed_dim,
                grid_stage,
            };
            let channels: Vec<i64> = maps.iter().map(|m| m.size()[1]).collect();
            let fast = Embedding::new(&channels, p, Device::Cpu)
                .unwrap()
                .apply(&maps)
                .unwrap();
            let slow = reference(&maps, p);
            let (_, _, h, w) = maps[grid_stage].size4().unwrap();
            assert_eq!(fast.size(), vec![2, h * w, embed_dim]);
            let err = (&fast - &slow).abs().max().double_value(&[]);
            assert!(err < 1e-6, "{p:?}: max abs difference {err}");
        }
    }

    #[test]
    fn oversized_settings_are_an_error_not_an_abort() {
        // A bank's largest allowed settings on a 2,048-channel stage: 16,384 x 460,800 weights.
        let p = EmbedParams {
            patch_size: 15,
            pretrain_dim: 16_384,
            embed_dim: 16_384,
            grid_stage: 0,
        };
        let err = Embedding::new(&[2048], p, Device::Cpu)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("over the limit")),
            "{err:?}"
        );
    }

    #[test]
    fn wide_resnet_stages_become_grouped_convolutions() {
        // layer2: each output averages one channel's taps; layer3: two channels' taps.
        let e = Embedding::new(&[512, 1024], EmbedParams::default(), Device::Cpu).unwrap();
        let shapes: Vec<(i64, Vec<i64>)> = e
            .stages
            .iter()
            .map(|s| (s.groups, s.weight.size()))
            .collect();
        assert_eq!(
            shapes,
            vec![(512, vec![512, 1, 3, 3]), (512, vec![512, 2, 3, 3])]
        );
        // Lite2's outputs straddle channels, but blocks of 27 and 135 taps (3 and 15 channels)
        // map onto blocks of 32 and 64 outputs.
        let e = Embedding::new(&[48, 120], EmbedParams::default(), Device::Cpu).unwrap();
        let groups: Vec<i64> = e.stages.iter().map(|s| s.groups).collect();
        assert_eq!(groups, vec![16, 8]);
    }

    #[test]
    fn coarse_stages_with_few_taps_are_resampled_before_their_neighbourhoods() {
        tch::manual_seed(8);
        let opts = (Kind::Float, Device::Cpu);
        let (fine, coarse) = (
            Tensor::rand([1, 6, 8, 8], opts),
            Tensor::rand([1, 2, 4, 4], opts),
        );
        // 2 * 9 = 18 taps <= 24: banks fitted with such a stage saw it resampled first.
        let p = EmbedParams {
            patch_size: 3,
            pretrain_dim: 24,
            embed_dim: 20,
            grid_stage: 0,
        };
        let got = Embedding::new(&[6, 2], p, Device::Cpu)
            .unwrap()
            .apply(&[fine.shallow_clone(), coarse.shallow_clone()])
            .unwrap();
        let upsampled = coarse.upsample_bilinear2d([8, 8], false, None, None);
        let want = reference(&[fine.shallow_clone(), upsampled], p);
        let err = (&got - &want).abs().max().double_value(&[]);
        assert!(err < 1e-6, "max abs difference {err}");
        // The official order (neighbourhoods on the coarse grid, then resampled) differs.
        let official = reference(&[fine, coarse], p);
        assert!((&got - &official).abs().max().double_value(&[]) > 1e-3);
    }
}
