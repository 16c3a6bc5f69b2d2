//! Locally aware patch features (paper Sec. 3.1, Eq. 2-3), with the official code's numbers:
//! each stage map is unfolded into 3x3 neighbourhoods (zero padding), coarser grids are bilinearly
//! upsampled onto the finest one, each stage's flattened neighbourhood is adaptive-average-pooled to
//! `pretrain_dim`, and the stacked stages are pooled again to `embed_dim`.
//!
//! Pooling across taps and bilinear resampling are linear maps on different axes, so they commute:
//! each stage is resampled at whichever side has fewer channels. When `pretrain_dim` is a multiple
//! of the channel count every pooling window lies inside one channel's neighbourhood, and the
//! unfold + pool collapses into a depthwise convolution with fixed averaging weights, which never
//! materialises the `C * 9` taps (for WideResNet's layer3, 9216 of them per position).
use tch::{Kind, TchError, Tensor};

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

/// Stage maps `(B, C_i, h_i, w_i)` to patch rows `(B, H*W, embed_dim)` (f32) on the grid of
/// `maps[p.grid_stage]`. Rows are in row-major grid order.
pub fn embed(maps: &[Tensor], p: EmbedParams) -> Result<Tensor, TchError> {
    let grid = maps
        .get(p.grid_stage)
        .ok_or_else(|| TchError::Shape(format!("no stage map {} to grid on", p.grid_stage)))?;
    let (b, _, h, w) = grid.size4()?;
    let pooled = maps
        .iter()
        .map(|m| {
            let m = m.f_to_kind(Kind::Float)?;
            let (_, c, mh, mw) = m.size4()?;
            let resample = |t: Tensor| {
                if (mh, mw) == (h, w) {
                    Ok(t)
                } else {
                    t.f_upsample_bilinear2d([h, w], false, None, None)
                }
            };
            let taps = c * p.patch_size * p.patch_size;
            let stage = if taps > p.pretrain_dim {
                resample(pool_neighbourhoods(&m, p)?)?
            } else {
                pool_neighbourhoods(&resample(m)?, p)?
            };
            stage
                .f_permute([0, 2, 3, 1])?
                .f_reshape([b * h * w, 1, p.pretrain_dim])
        })
        .collect::<Result<Vec<_>, TchError>>()?;
    Tensor::f_cat(&pooled, 2)?
        .f_adaptive_avg_pool1d(p.embed_dim)?
        .f_view([b, h * w, p.embed_dim])
}

/// `(B, C, h, w)` to `(B, pretrain_dim, h, w)`: every position's `C * k * k` neighbourhood taps
/// (channel-major, then ky, kx, as torch.nn.Unfold orders them) adaptive-average-pooled.
fn pool_neighbourhoods(m: &Tensor, p: EmbedParams) -> Result<Tensor, TchError> {
    let (b, c, h, w) = m.size4()?;
    let (k, d) = (p.patch_size, p.pretrain_dim);
    let (taps, pad) = (c * k * k, k / 2);
    if d % c == 0 {
        // Output j = c * per + r averages taps [floor(r*k*k/per), ceil((r+1)*k*k/per)) of channel c.
        let per = d / c;
        let kk = k * k;
        let mut weights = vec![0f32; (per * kk) as usize];
        for r in 0..per {
            let (s, e) = ((r * kk) / per, ((r + 1) * kk + per - 1) / per);
            for t in s..e {
                weights[(r * kk + t) as usize] = 1.0 / (e - s) as f32;
            }
        }
        let weight = Tensor::f_from_slice(&weights)?
            .f_view([per, 1, k, k])?
            .f_repeat([c, 1, 1, 1])?
            .f_to_device(m.device())?;
        return m.f_conv2d(&weight, None::<Tensor>, [1, 1], [pad, pad], [1, 1], c);
    }
    m.f_im2col([k, k], [1, 1], [pad, pad], [1, 1])?
        .f_view([b, taps, h * w])?
        .f_transpose(1, 2)?
        .f_reshape([b * h * w, 1, taps])?
        .f_adaptive_avg_pool1d(d)?
        .f_view([b, h, w, d])?
        .f_permute([0, 3, 1, 2])
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
        // Pooling dims that exercise both paths on every stage: the depthwise form (16 = 4 * 4,
        // 8 = 8 * 1), the unfold form (16 vs 6 and 8 channels), upsampling first and pooling first.
        for (pretrain_dim, embed_dim, grid_stage) in
            [(16, 12, 0), (8, 8, 1), (24, 16, 0), (5, 7, 1)]
        {
            let p = EmbedParams {
                patch_size: 3,
                pretrain_dim,
                embed_dim,
                grid_stage,
            };
            let fast = embed(&maps, p).unwrap();
            let slow = reference(&maps, p);
            let (_, _, h, w) = maps[grid_stage].size4().unwrap();
            assert_eq!(fast.size(), vec![2, h * w, embed_dim]);
            let err = (&fast - &slow).abs().max().double_value(&[]);
            assert!(err < 1e-6, "{p:?}: max abs difference {err}");
        }
    }
}
