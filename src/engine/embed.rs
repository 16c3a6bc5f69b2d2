//! Locally aware patch features (paper Sec. 3.1, Eq. 2-3), exactly as the official code computes them:
//! each stage map is unfolded into 3x3 neighbourhoods (zero padding), coarser grids are bilinearly
//! upsampled onto the finest one, each stage's flattened neighbourhood is adaptive-average-pooled to
//! `pretrain_dim`, and the stacked stages are pooled again to `embed_dim`.
use tch::{Kind, Tensor};

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
pub fn embed(maps: &[Tensor], p: EmbedParams) -> Tensor {
    let (b, _, h, w) = maps[p.grid_stage].size4().expect("stage maps are NCHW");
    let pad = p.patch_size / 2;
    let pooled: Vec<Tensor> = maps
        .iter()
        .map(|m| {
            let (_, c, mh, mw) = m.size4().expect("stage maps are NCHW");
            let taps = c * p.patch_size * p.patch_size;
            // (B, C*k*k, mh*mw): channel-major, then ky, kx, as torch.nn.Unfold orders them.
            let unfolded = m
                .to_kind(Kind::Float)
                .im2col([p.patch_size, p.patch_size], [1, 1], [pad, pad], [1, 1])
                .view([b, taps, mh, mw]);
            let aligned = if (mh, mw) == (h, w) {
                unfolded
            } else {
                unfolded.upsample_bilinear2d([h, w], false, None, None)
            };
            aligned
                .permute([0, 2, 3, 1])
                .reshape([b * h * w, 1, taps])
                .adaptive_avg_pool1d(p.pretrain_dim)
        })
        .collect();
    let stacked = Tensor::cat(&pooled, 2);
    stacked
        .adaptive_avg_pool1d(p.embed_dim)
        .view([b, h * w, p.embed_dim])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Independent, literal version of the official code path (per-map interpolation of every
    /// unfolded channel, pooling written as explicit window means).
    fn reference(maps: &[Tensor], p: EmbedParams) -> Tensor {
        let (b, _, h, w) = maps[0].size4().unwrap();
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
            Tensor::rand([2, 10, 4, 4], opts),
        ];
        let p = EmbedParams {
            patch_size: 3,
            pretrain_dim: 16,
            embed_dim: 12,
            grid_stage: 0,
        };
        let fast = embed(&maps, p);
        let slow = reference(&maps, p);
        assert_eq!(fast.size(), vec![2, 64, 12]);
        let err = (&fast - &slow).abs().max().double_value(&[]);
        assert!(err < 1e-6, "max abs difference {err}");
    }
}
