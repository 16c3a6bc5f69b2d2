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
    (0..dim * proj)
        .map(|_| rng.random_range(-bound..bound))
        .collect()
}

pub fn start_rows(n: usize, n_starts: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_57a7);
    sample(&mut rng, n, n_starts.min(n)).into_vec()
}

/// The projection matrix `(D, proj)` as a tensor on `device`.
pub fn projection(dim: usize, opts: &CoresetOptions, device: Device) -> Tensor {
    Tensor::from_slice(&random_projection(dim, opts.projection_dim, opts.seed))
        .view([dim as i64, opts.projection_dim as i64])
        .to_device(device)
}

/// Selects `opts.target` rows of `features` `(N, D)`; returns their indices in selection order.
pub fn select(features: &Tensor, opts: &CoresetOptions) -> Vec<i64> {
    let d = features.size2().expect("features are (N, D)").1 as usize;
    let p = projection(d, opts, features.device());
    select_projected(vec![features.to_kind(Kind::Float).matmul(&p)], opts)
}

/// The greedy rule on rows already projected (`reduced = features @ projection`), which is all
/// it needs: fitting keeps only these in memory and streams the full rows to disk. Takes the
/// row blocks (a fit makes one per batch) so the CPU path can copy them out one at a time,
/// never holding them twice.
pub fn select_projected(blocks: Vec<Tensor>, opts: &CoresetOptions) -> Vec<i64> {
    let n = blocks.iter().map(|b| b.size()[0]).sum::<i64>() as usize;
    if opts.target >= n {
        return (0..n as i64).collect();
    }
    let starts = start_rows(n, opts.n_starts, opts.seed);
    if blocks.iter().all(|b| b.device() == Device::Cpu) {
        let mut flat: Vec<f32> = Vec::with_capacity(n * opts.projection_dim);
        for block in blocks {
            let part: Vec<f32> = block
                .to_kind(Kind::Float)
                .contiguous()
                .view([-1])
                .try_into()
                .expect("f32 projection");
            flat.extend_from_slice(&part);
        }
        greedy_cpu(&flat, opts.projection_dim, &starts, opts.target)
    } else {
        greedy_device(&Tensor::cat(&blocks, 0), &starts, opts.target)
    }
}

/// Euclidean distance with 16 independent accumulators: a plain `.sum()` over floats is a serial
/// dependency chain the compiler may not vectorise, and this loop is the coreset's whole cost.
fn dist(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    (acc.iter().sum::<f32>() + tail).sqrt()
}

/// Each row's distances to the start rows (`N x starts`, row-major).
fn start_distances(rows: &[f32], dim: usize, starts: &[usize]) -> Vec<f32> {
    rows.par_chunks(dim)
        .flat_map_iter(|r| {
            starts
                .iter()
                .map(move |&j| dist(r, &rows[j * dim..(j + 1) * dim]))
        })
        .collect()
}

/// Rows that share a nearest centre: their indices, min-distances and a contiguous copy of their
/// projected rows (so a visit streams memory instead of chasing scattered rows), with the largest
/// min-distance (and the first row holding it) so a whole cluster can be skipped at once. The
/// rows without a centre keep no copy: they are read in order from the projected rows themselves.
#[derive(Default)]
struct Cluster {
    members: Vec<u32>,
    mins: Vec<f32>,
    data: Vec<f32>,
    /// Rows without a centre only: their distances to the start rows, which bound the distance
    /// to any new centre from below (`d(x, c) >= |d(x, s) - d(c, s)|`).
    anchors: Vec<f32>,
    max: f32,
    arg: u32,
}

impl Cluster {
    fn push(&mut self, i: u32, m: f32, row: &[f32]) {
        if self.members.is_empty() || m > self.max || (m == self.max && i < self.arg) {
            (self.max, self.arg) = (m, i);
        }
        self.members.push(i);
        self.mins.push(m);
        self.data.extend_from_slice(row);
    }

    fn shrink(&mut self) {
        self.members.shrink_to_fit();
        self.mins.shrink_to_fit();
        self.data.shrink_to_fit();
        self.anchors.shrink_to_fit();
    }

    /// Appends another cluster's rows (the max keeps the first row on ties, whatever the order).
    fn merge(mut self, other: Cluster) -> Cluster {
        if !other.members.is_empty()
            && (self.members.is_empty()
                || other.max > self.max
                || (other.max == self.max && other.arg < self.arg))
        {
            (self.max, self.arg) = (other.max, other.arg);
        }
        self.members.extend_from_slice(&other.members);
        self.mins.extend_from_slice(&other.mins);
        self.data.extend_from_slice(&other.data);
        self
    }

    /// Compares the members with the new centre `crow`; those that get closer move to `moved`.
    /// `gap` is this cluster's centre-to-new-centre distance; rows without a centre pass 0, the
    /// new centre's distances to the start rows (`c_starts`) and all projected rows (`rows`).
    fn update(
        &mut self,
        dim: usize,
        crow: &[f32],
        gap: f32,
        (c_starts, rows): (&[f32], Option<&[f32]>),
        moved: &mut Cluster,
    ) {
        let (mut max, mut arg) = (f32::NEG_INFINITY, u32::MAX);
        let mut kept = 0;
        let k = c_starts.len();
        for r in 0..self.members.len() {
            let (i, m) = (self.members[r], self.mins[r]);
            // Triangle inequality: d(x, c) >= d(a, c) - d(x, a) >= d(x, a) when d(a, c) >= 2 d(x, a),
            // and d(x, c) >= |d(x, s) - d(c, s)| for every start row s. The small margins keep
            // rounding from ever changing the answer.
            let far_from_starts = k > 0
                && self.anchors[r * k..(r + 1) * k]
                    .iter()
                    .zip(c_starts)
                    .any(|(a, b)| (a - b).abs() > m * (1.0 + 1e-5));
            if !far_from_starts && gap <= 2.0 * m * (1.0 + 1e-5) {
                let row = match rows {
                    Some(all) => &all[i as usize * dim..(i as usize + 1) * dim],
                    None => &self.data[r * dim..(r + 1) * dim],
                };
                let d = dist(row, crow);
                if d < m {
                    moved.push(i, d, row);
                    continue;
                }
            }
            if kept != r {
                self.members[kept] = i;
                self.mins[kept] = m;
                if rows.is_none() {
                    self.data.copy_within(r * dim..(r + 1) * dim, kept * dim);
                }
                self.anchors.copy_within(r * k..(r + 1) * k, kept * k);
            }
            if m > max || (m == max && i < arg) {
                (max, arg) = (m, i);
            }
            kept += 1;
        }
        self.members.truncate(kept);
        self.mins.truncate(kept);
        self.data.truncate(kept * dim);
        self.anchors.truncate(kept * k);
        (self.max, self.arg) = (max, arg);
        if self.members.capacity() > 2 * kept + 1024 {
            // Rows only leave a cluster: give the memory back as they do.
            self.shrink();
        }
    }
}

/// Greedy farthest-point selection over `rows` (`N x dim`, row-major), exact but pruned: rows
/// are kept in clusters by their nearest centre, and a cluster whose centre is at least twice its
/// largest min-distance away from the new centre is skipped whole. Rows still carrying their
/// start-point mean have no centre and are compared every step.
pub fn greedy_cpu(rows: &[f32], dim: usize, starts: &[usize], target: usize) -> Vec<i64> {
    let k = starts.len();
    let anchors = start_distances(rows, dim, starts);
    // The official initial value: the mean distance to the start rows.
    let mins: Vec<f32> = anchors
        .chunks_exact(k)
        .map(|a| a.iter().sum::<f32>() / k as f32)
        .collect();
    let (max, arg) = mins
        .iter()
        .enumerate()
        .fold((f32::NEG_INFINITY, 0), |b, (i, &m)| {
            if m > b.0 {
                (m, i as u32)
            } else {
                b
            }
        });
    let mut unassigned = Cluster {
        members: (0..mins.len() as u32).collect(),
        mins,
        data: Vec::new(),
        anchors,
        max,
        arg,
    };
    let mut clusters: Vec<Cluster> = Vec::with_capacity(target);
    let mut chosen: Vec<usize> = Vec::with_capacity(target);
    // The chosen rows, contiguous, for the centre-to-centre distances.
    let mut centres: Vec<f32> = Vec::with_capacity(target * dim);
    // Each centre's distances to the start rows: |d(c, s) - d(a, s)| <= d(c, a) rules most
    // clusters out without their full centre-to-centre distance.
    let mut centre_starts: Vec<f32> = Vec::with_capacity(target * k);
    let mut gaps: Vec<f32> = Vec::with_capacity(target);
    let mut next = unassigned.arg as usize;
    while chosen.len() < target {
        let c = next;
        let crow = &rows[c * dim..(c + 1) * dim];
        let c_starts: Vec<f32> = starts
            .iter()
            .map(|&s| dist(crow, &rows[s * dim..(s + 1) * dim]))
            .collect();
        let gap = |((a, a_starts), cl): ((&[f32], &[f32]), &Cluster)| {
            let reach = 2.0 * cl.max * (1.0 + 1e-5);
            let lower = a_starts
                .iter()
                .zip(&c_starts)
                .map(|(x, y)| (x - y).abs() - 1e-5 * (x + y))
                .fold(0.0, f32::max);
            if cl.members.is_empty() || lower > reach {
                f32::INFINITY
            } else {
                dist(crow, a)
            }
        };
        gaps.clear();
        gaps.par_extend(
            centres
                .par_chunks_exact(dim)
                .zip(centre_starts.par_chunks_exact(k.max(1)))
                .zip(clusters.par_iter())
                .with_min_len(4096)
                .map(gap),
        );
        chosen.push(c);
        centres.extend_from_slice(crow);
        centre_starts.extend_from_slice(&c_starts);
        let mut moved = Cluster::default();
        if !unassigned.members.is_empty() {
            unassigned.update(dim, crow, 0.0, (&c_starts, Some(rows)), &mut moved);
        }
        // Clusters are independent: visit them in parallel, each collecting its own movers.
        let movers = clusters
            .par_iter_mut()
            .zip(gaps.par_iter())
            .filter(|(cl, &gap)| !cl.members.is_empty() && gap <= 2.0 * cl.max * (1.0 + 1e-5))
            .fold(Cluster::default, |mut acc, (cl, &gap)| {
                cl.update(dim, crow, gap, (&[], None), &mut acc);
                acc
            })
            .reduce(Cluster::default, Cluster::merge);
        let mut moved = moved.merge(movers);
        moved.shrink();
        clusters.push(moved);
        // Next centre: the largest min-distance, first row on ties (the official argmax rule).
        let best = clusters
            .iter()
            .chain(std::iter::once(&unassigned))
            .filter(|cl| !cl.members.is_empty())
            .fold((f32::NEG_INFINITY, u32::MAX), |b, cl| {
                if cl.max > b.0 || (cl.max == b.0 && cl.arg < b.1) {
                    (cl.max, cl.arg)
                } else {
                    b
                }
            });
        if best.1 == u32::MAX {
            break;
        }
        next = best.1 as usize;
    }
    chosen.into_iter().map(|i| i as i64).collect()
}

/// The same rule with tensor ops, for CUDA: no host round trip per step.
pub fn greedy_device(reduced: &Tensor, starts: &[usize], target: usize) -> Vec<i64> {
    let to_all = |row: &Tensor| -> Tensor {
        (reduced - row.unsqueeze(0))
            .square()
            .sum_dim_intlist(1, false, Kind::Float)
            .sqrt()
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
    let picks: Vec<i64> = Tensor::stack(&picks, 0)
        .to_device(Device::Cpu)
        .try_into()
        .expect("indices");
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First index of the maximum (the official rule on ties).
    fn argmax(v: &[f32]) -> usize {
        v.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 {
                    (i, x)
                } else {
                    best
                }
            })
            .0
    }

    /// The plain greedy rule, no pruning, straight from the definition.
    fn plain_greedy(rows: &[f32], dim: usize, starts: &[usize], target: usize) -> Vec<i64> {
        let n = rows.len() / dim;
        let row = |i: usize| &rows[i * dim..(i + 1) * dim];
        let mut min_d: Vec<f32> = (0..n)
            .map(|i| {
                starts.iter().map(|&s| dist(row(i), row(s))).sum::<f32>() / starts.len() as f32
            })
            .collect();
        let mut out = Vec::new();
        for _ in 0..target {
            let c = argmax(&min_d);
            out.push(c as i64);
            for (i, m) in min_d.iter_mut().enumerate() {
                *m = m.min(dist(row(i), row(c)));
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
                (0..dim)
                    .map(|k| centres[c * dim + k] + rng.random_range(-1.0f32..1.0))
                    .collect::<Vec<_>>()
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
        let opts = CoresetOptions {
            target: 200,
            projection_dim: 32,
            n_starts: 10,
            seed: 9,
        };
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
