//! Approximate greedy coreset subsampling (paper Sec. 3.2, Alg. 1, with the official code's
//! approximation): rows are projected to a few dimensions by a random linear map, the initial
//! min-distance of every row is its mean distance to a few random start rows, then the farthest
//! row is taken and the min-distances updated, again and again. Memory is O(N x proj), never N x N.
//!
//! On the CPU the update skips every row that the triangle inequality proves cannot get closer to
//! the new centre (`d(a, c) >= 2 d(x, a)` where `a` is the row's current nearest centre), which
//! leaves the selection unchanged and removes most of the work once the coreset grows.
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoresetOptions {
    /// Number of rows to select.
    pub target: usize,
    /// Dimension of the random projection (128 in the paper).
    pub projection_dim: usize,
    /// Random start rows for the initial min-distances (10 in the official code).
    pub n_starts: usize,
    pub seed: u64,
}

/// The official sampler's random draws, made reproducible from our seed: the projection matrix
/// (`reduced = features @ P`, uniform in +-1/sqrt(D) as torch.nn.Linear's default init) and the
/// start rows.
pub fn random_projection(dim: usize, proj: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bound = 1.0 / (dim as f32).sqrt();
    (0..dim * proj).map(|_| rng.random_range(-bound..bound)).collect()
}

pub fn start_rows(n: usize, n_starts: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_57a7);
    sample(&mut rng, n, n_starts.min(n)).into_vec()
}

/// Selects `opts.target` rows of `features` `(N, D)`; returns their indices in selection order.
pub fn select(features: &Tensor, opts: &CoresetOptions) -> Vec<i64> {
    let (n, d) = features.size2().expect("features are (N, D)");
    let (n, d) = (n as usize, d as usize);
    if opts.target >= n {
        return (0..n as i64).collect();
    }
    let p = random_projection(d, opts.projection_dim, opts.seed);
    let p = Tensor::from_slice(&p)
        .view([d as i64, opts.projection_dim as i64])
        .to_device(features.device());
    let reduced = features.to_kind(Kind::Float).matmul(&p);
    let starts = start_rows(n, opts.n_starts, opts.seed);
    if features.device() == Device::Cpu {
        let flat: Vec<f32> = reduced.contiguous().view([-1]).try_into().expect("f32 projection");
        greedy_cpu(&flat, opts.projection_dim, &starts, opts.target)
    } else {
        greedy_device(&reduced, &starts, opts.target)
    }
}

fn dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Initial min-distance of each row: its mean Euclidean distance to the start rows.
fn initial_distances(rows: &[f32], dim: usize, starts: &[usize]) -> Vec<f32> {
    rows.par_chunks(dim)
        .map(|r| {
            let s: f32 = starts.iter().map(|&j| dist(r, &rows[j * dim..(j + 1) * dim])).sum();
            s / starts.len() as f32
        })
        .collect()
}

/// First index of the maximum (the official rule on ties).
fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best })
        .0
}

/// Greedy farthest-point selection over `rows` (`N x dim`, row-major) with triangle-inequality
/// pruning. Rows still carrying their start-point mean have no centre and are always updated.
pub fn greedy_cpu(rows: &[f32], dim: usize, starts: &[usize], target: usize) -> Vec<i64> {
    const NO_CENTRE: u32 = u32::MAX;
    let mut min_d = initial_distances(rows, dim, starts);
    let mut centre = vec![NO_CENTRE; min_d.len()];
    let mut chosen: Vec<usize> = Vec::with_capacity(target);
    // Distance from the newest centre to every earlier one, indexed by selection order.
    let mut centre_gap = Vec::with_capacity(target);
    let mut next = argmax(&min_d);
    const BLOCK: usize = 4096;
    while chosen.len() < target {
        let c = next;
        let crow = &rows[c * dim..(c + 1) * dim];
        centre_gap.clear();
        centre_gap.par_extend(chosen.par_iter().map(|&j| dist(crow, &rows[j * dim..(j + 1) * dim])));
        let slot = chosen.len() as u32;
        chosen.push(c);
        // One parallel pass updates the distances and finds the next argmax.
        let (best_i, _) = min_d
            .par_chunks_mut(BLOCK)
            .zip(centre.par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(b, (md, ce))| {
                let base = b * BLOCK;
                let mut best = (usize::MAX, f32::NEG_INFINITY);
                for (o, (m, a)) in md.iter_mut().zip(ce.iter_mut()).enumerate() {
                    let i = base + o;
                    // Keep a tiny margin so rounding never lets pruning change the answer.
                    let prunable = *a != NO_CENTRE && centre_gap[*a as usize] > 2.0 * *m * (1.0 + 1e-5);
                    if !prunable {
                        let d = dist(&rows[i * dim..(i + 1) * dim], crow);
                        if d < *m {
                            *m = d;
                            *a = slot;
                        }
                    }
                    if *m > best.1 {
                        best = (i, *m);
                    }
                }
                best
            })
            .reduce(
                || (usize::MAX, f32::NEG_INFINITY),
                |x, y| if y.1 > x.1 || (y.1 == x.1 && y.0 < x.0) { y } else { x },
            );
        next = best_i;
    }
    chosen.into_iter().map(|i| i as i64).collect()
}

/// The same rule with tensor ops, for CUDA: no host round trip per step.
pub fn greedy_device(reduced: &Tensor, starts: &[usize], target: usize) -> Vec<i64> {
    let to_all = |row: &Tensor| -> Tensor {
        (reduced - row.unsqueeze(0)).square().sum_dim_intlist(1, false, Kind::Float).sqrt()
    };
    let mut min_d = Tensor::zeros([reduced.size()[0]], (Kind::Float, reduced.device()));
    for &s in starts {
        min_d += to_all(&reduced.get(s as i64));
    }
    min_d /= starts.len() as f64;
    let mut picks = Vec::with_capacity(target);
    for _ in 0..target {
        let idx = min_d.argmax(0, false);
        let row = reduced.index_select(0, &idx.unsqueeze(0)).squeeze_dim(0);
        min_d = min_d.minimum(&to_all(&row));
        picks.push(idx);
    }
    let picks: Vec<i64> = Tensor::stack(&picks, 0).to_device(Device::Cpu).try_into().expect("indices");
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain greedy rule, no pruning, straight from the definition.
    fn plain_greedy(rows: &[f32], dim: usize, starts: &[usize], target: usize) -> Vec<i64> {
        let n = rows.len() / dim;
        let row = |i: usize| &rows[i * dim..(i + 1) * dim];
        let mut min_d: Vec<f32> = (0..n)
            .map(|i| starts.iter().map(|&s| dist(row(i), row(s))).sum::<f32>() / starts.len() as f32)
            .collect();
        let mut out = Vec::new();
        for _ in 0..target {
            let c = argmax(&min_d);
            out.push(c as i64);
            for i in 0..n {
                min_d[i] = min_d[i].min(dist(row(i), row(c)));
            }
        }
        out
    }

    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..8 * dim).map(|_| rng.random_range(-5.0..5.0)).collect();
        (0..n)
            .flat_map(|i| {
                let c = i % 8;
                (0..dim).map(|k| centres[c * dim + k] + rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn pruned_selection_equals_plain_greedy() {
        for seed in 0..4 {
            let (n, dim) = (3000, 16);
            let rows = clustered(n, dim, seed);
            let starts = start_rows(n, 10, seed);
            let fast = greedy_cpu(&rows, dim, &starts, 300);
            let slow = plain_greedy(&rows, dim, &starts, 300);
            assert_eq!(fast, slow, "seed {seed}");
        }
    }

    #[test]
    fn no_duplicates_deterministic_and_device_path_agrees() {
        tch::manual_seed(0);
        let feats = Tensor::randn([2000, 64], (Kind::Float, Device::Cpu));
        let opts = CoresetOptions { target: 200, projection_dim: 32, n_starts: 10, seed: 9 };
        let a = select(&feats, &opts);
        let b = select(&feats, &opts);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 200);
        // The tensor path (used on CUDA) run on CPU tensors picks the same rows.
        let p = Tensor::from_slice(&random_projection(64, 32, 9)).view([64, 32]);
        let reduced = feats.matmul(&p);
        let dev = greedy_device(&reduced, &start_rows(2000, 10, 9), 200);
        let same = a.iter().zip(&dev).take_while(|(x, y)| x == y).count();
        assert!(same >= 150, "tensor path diverges after {same} picks");
        let other = select(&feats, &CoresetOptions { seed: 10, ..opts });
        assert_ne!(a, other);
    }

    #[test]
    fn greedy_property_on_a_small_case() {
        // Points 0, 1, 2, 10, 4 on a line, start at 0: 10 is farthest, then 4 (4 from {0, 10}... the
        // start only seeds the distances), then 2, then 1.
        let rows = [0.0f32, 1.0, 2.0, 10.0, 4.0];
        let picks = greedy_cpu(&rows, 1, &[0], 4);
        assert_eq!(picks, vec![3, 4, 2, 1]);
    }
}
