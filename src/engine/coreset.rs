//! Approximate greedy coreset subsampling (paper Sec. 3.2, Alg. 1, with the official code's
//! approximation): rows are projected to a few dimensions by a random linear map, the initial
//! min-distance of every row is its mean distance to a few random start rows, then the farthest
//! row is taken and the min-distances updated, again and again. Memory is O(N x proj), never N x N.
//!
//! On the CPU the rows sit in the leaves of a ball tree, each leaf is updated lazily with a batch
//! of new centres, and the triangle inequality skips the pairs that cannot get closer: the
//! selection is unchanged and most of the N x picks work disappears.
use super::host::to_host_f32;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, TchError, Tensor};

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
pub fn projection(dim: usize, opts: &CoresetOptions, device: Device) -> Result<Tensor, TchError> {
    Tensor::f_from_slice(&random_projection(dim, opts.projection_dim, opts.seed))?
        .f_view([dim as i64, opts.projection_dim as i64])?
        .f_to_device(device)
}

/// Selects `opts.target` rows of `features` `(N, D)`; returns their indices in selection order.
pub fn select(features: &Tensor, opts: &CoresetOptions) -> Result<Vec<i64>, TchError> {
    let d = features.size2()?.1 as usize;
    let p = projection(d, opts, features.device())?;
    let mut projected = Projected::new(features.device());
    projected.push(&features.f_to_kind(Kind::Float)?.f_matmul(&p)?)?;
    Ok(select_projected(projected, opts, &|_| {})?.picks)
}

/// The greedy's picks, and the covering radius they leave in the projected space: the largest
/// min-distance when the selection stops (the official start-row means included), i.e. the
/// distance the next pick would have had. `update` grows the bank by the same rule up to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub picks: Vec<i64>,
    pub radius: f32,
}

/// The projected rows of a fit, collected batch by batch: on the CPU straight into one host
/// buffer, so no per-batch tensors pile up (and fragment the heap) until the selection; on a GPU
/// as device tensors, so nothing crosses to the host.
pub enum Projected {
    Host { rows: Vec<f32>, dim: usize },
    Device(Vec<Tensor>),
}

impl Projected {
    pub fn new(device: Device) -> Projected {
        match device {
            Device::Cpu => Projected::Host {
                rows: Vec::new(),
                dim: 0,
            },
            _ => Projected::Device(Vec::new()),
        }
    }

    /// Appends a `(rows, proj)` block.
    pub fn push(&mut self, block: &Tensor) -> Result<(), TchError> {
        match self {
            Projected::Host { rows, dim } => {
                *dim = block.size().last().copied().unwrap_or(0) as usize;
                rows.extend_from_slice(&to_host_f32(block)?);
            }
            Projected::Device(blocks) => blocks.push(block.shallow_clone()),
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            Projected::Host { rows, dim } => rows.len() / (*dim).max(1),
            Projected::Device(blocks) => blocks.iter().map(|b| b.size()[0] as usize).sum(),
        }
    }
}

/// The greedy rule on rows already projected (`reduced = features @ projection`), which is all
/// it needs: fitting keeps only these in memory and streams the full rows to disk. `picked`
/// hears how many rows are chosen so far, now and then, so a long selection never looks stuck.
pub fn select_projected(
    projected: Projected,
    opts: &CoresetOptions,
    picked: &dyn Fn(usize),
) -> Result<Selection, TchError> {
    let n = projected.len();
    if opts.target >= n {
        return Ok(Selection {
            picks: (0..n as i64).collect(),
            radius: 0.0,
        });
    }
    let starts = start_rows(n, opts.n_starts, opts.seed);
    match projected {
        Projected::Host { rows, dim } => Ok(greedy_cpu(rows, dim, &starts, opts.target, picked)),
        Projected::Device(blocks) => {
            greedy_device(&Tensor::f_cat(&blocks, 0)?, &starts, opts.target, picked)
        }
    }
}

/// Euclidean distance: this loop is the coreset's whole cost. With AVX2 and FMA (the build's
/// target, `.cargo/config.toml`) it runs on two 8-wide registers; the compiler does not
/// vectorise the portable version below by itself.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
fn dist(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut i = 0;
    let mut lanes = [0f32; 8];
    // SAFETY: the target features are enabled at compile time (cfg above), and every unaligned
    // load reads 8 floats at `i..i + 8` or `i + 8..i + 16`, inside both slices (`i + 16 <= n`).
    unsafe {
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        while i + 16 <= n {
            let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb));
            let d1 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)));
            s0 = _mm256_fmadd_ps(d0, d0, s0);
            s1 = _mm256_fmadd_ps(d1, d1, s1);
            i += 16;
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(s0, s1));
    }
    let tail: f32 = a[i..n]
        .iter()
        .zip(&b[i..n])
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    (lanes.iter().sum::<f32>() + tail).sqrt()
}

/// Euclidean distance, portable: 16 independent accumulators over fixed-size chunks.
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
fn dist(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, ta) = a.as_chunks::<LANES>();
    let (cb, tb) = b.as_chunks::<LANES>();
    let tail: f32 = ta.iter().zip(tb).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    (acc.iter().sum::<f32>() + tail).sqrt()
}

/// Rows per leaf of the ball tree: small enough that a leaf's ball is tight, large enough that
/// the leaf-against-centre checks (leaves x picks) stay a small share of the work.
const LEAF_ROWS: usize = 1024;
/// Stale leaves brought up to date together, so both cores have work in every step.
const PARALLEL_LEAVES: usize = 8;
/// Picks between two progress reports.
const REPORT_EVERY: usize = 1024;
/// Relative slack on every triangle-inequality skip, so f32 rounding never changes the answer.
const SLACK: f32 = 1e-5;

/// Each row's mean distance to the start rows: the official initial min-distance.
fn start_means(rows: &[f32], dim: usize, starts: &[usize]) -> Vec<f32> {
    let start_rows: Vec<&[f32]> = starts
        .iter()
        .map(|&s| &rows[s * dim..(s + 1) * dim])
        .collect();
    rows.par_chunks(dim)
        .map(|r| start_rows.iter().map(|s| dist(r, s)).sum::<f32>() / starts.len() as f32)
        .collect()
}

/// Applies `order` (new position -> old position) to a segment whose items are `width` floats,
/// in place by following cycles, so the tree build never holds a second copy of the rows.
fn permute<T: Copy>(items: &mut [T], width: usize, order: &[usize], done: &mut [bool]) {
    done.iter_mut().for_each(|d| *d = false);
    let mut held = vec![items[0]; width];
    for start in 0..order.len() {
        if done[start] || order[start] == start {
            continue;
        }
        held.copy_from_slice(&items[start * width..(start + 1) * width]);
        let mut at = start;
        loop {
            done[at] = true;
            let from = order[at];
            if from == start {
                items[at * width..(at + 1) * width].copy_from_slice(&held);
                break;
            }
            items.copy_within(from * width..(from + 1) * width, at * width);
            at = from;
        }
    }
}

/// Reorders `rows` (with their `ids` and `mins`) so that every run of `LEAF_ROWS` rows is a
/// compact ball: each range is split in half along the line through two far-apart rows.
fn build_tree(rows: &mut [f32], ids: &mut [u32], mins: &mut [f32], dim: usize) {
    let n = ids.len();
    if n <= LEAF_ROWS {
        return;
    }
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];
    let farthest = |from: &[f32]| {
        (0..n)
            .map(|i| (dist(row(i), from), i))
            .fold((f32::NEG_INFINITY, 0), |b, x| if x.0 > b.0 { x } else { b })
            .1
    };
    let a = farthest(row(0));
    let b = farthest(row(a));
    let axis: Vec<f32> = row(b).iter().zip(row(a)).map(|(x, y)| x - y).collect();
    let key: Vec<f32> = (0..n)
        .map(|i| row(i).iter().zip(&axis).map(|(x, y)| x * y).sum())
        .collect();
    // Split at a multiple of the leaf size so that leaves never straddle two halves.
    let half = (n / 2).div_ceil(LEAF_ROWS) * LEAF_ROWS;
    let mut order: Vec<usize> = (0..n).collect();
    order.select_nth_unstable_by(half, |&x, &y| key[x].total_cmp(&key[y]).then(x.cmp(&y)));
    let mut done = vec![false; n];
    permute(rows, dim, &order, &mut done);
    permute(ids, 1, &order, &mut done);
    permute(mins, 1, &order, &mut done);
    let (rl, rr) = rows.split_at_mut(half * dim);
    let (il, ir) = ids.split_at_mut(half);
    let (ml, mr) = mins.split_at_mut(half);
    rayon::join(
        || build_tree(rl, il, ml, dim),
        || build_tree(rr, ir, mr, dim),
    );
}

/// A run of rows that lie in a small ball: its centre and radius let a whole batch of new
/// centres be skipped at once, and each row's distance to the ball's centre skips single pairs.
struct Leaf {
    start: usize,
    len: usize,
    centre: Vec<f32>,
    radius: f32,
    /// Centres chosen so far that this leaf's min-distances already account for.
    applied: usize,
}

/// A leaf's largest min-distance and the first row (original index) holding it: the heap order,
/// largest first, ties to the lowest row as in the official argmax.
#[derive(Clone, Copy)]
struct Key {
    max: f32,
    id: u32,
    pos: u32,
    leaf: u32,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Key {}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.max.total_cmp(&other.max).then(other.id.cmp(&self.id))
    }
}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The leaf's max after lowering its rows' min-distances with the centres `pending`.
fn update_leaf(
    leaf: &Leaf,
    rows: &[f32],
    (ids, mins, reach): (&[u32], &mut [f32], &[f32]),
    pending: &[f32],
    dim: usize,
    leaf_no: u32,
) -> Key {
    let current = mins.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    // Centres farther from the ball than its largest min-distance cannot move any of its rows.
    let near: Vec<(&[f32], f32)> = pending
        .chunks_exact(dim)
        .map(|c| (c, dist(c, &leaf.centre)))
        .filter(|&(_, g)| g - leaf.radius - SLACK * (g + leaf.radius) <= current)
        .collect();
    let (mut max, mut id, mut pos) = (f32::NEG_INFINITY, u32::MAX, 0);
    for (r, m) in mins.iter_mut().enumerate() {
        let row = &rows[r * dim..(r + 1) * dim];
        for &(c, g) in &near {
            // d(x, c) >= d(c, o) - d(x, o) for the ball centre o.
            if g - reach[r] - SLACK * (g + reach[r]) > *m {
                continue;
            }
            let d = dist(row, c);
            if d < *m {
                *m = d;
            }
        }
        if *m > max || (*m == max && ids[r] < id) {
            (max, id, pos) = (*m, ids[r], (leaf.start + r) as u32);
        }
    }
    Key {
        max,
        id,
        pos,
        leaf: leaf_no,
    }
}

/// Greedy farthest-point selection over `rows` (`N x dim`, row-major), exact: the same picks as
/// the plain rule, which compares every row with every new centre. Rows are sorted into a ball
/// tree whose leaves keep their largest min-distance in a heap; a leaf is brought up to date
/// only when it reaches the top, with all the centres chosen since its last visit at once, and
/// the triangle inequality skips the centres (and single pairs) that cannot get closer. Time
/// grows with the pairs that can matter, not with N x picks, and memory is the rows plus a few
/// numbers per row.
pub fn greedy_cpu(
    rows: Vec<f32>,
    dim: usize,
    starts: &[usize],
    target: usize,
    picked: &dyn Fn(usize),
) -> Selection {
    let mins = start_means(&rows, dim, starts);
    greedy(rows, dim, mins, target, f32::NEG_INFINITY, true, picked)
}

/// The same rule grown from rows already chosen: `mins` are each row's distances to them, and
/// rows are taken farthest-first while the farthest lies beyond `within` (what `update` runs).
pub fn grow_cpu(rows: Vec<f32>, dim: usize, mins: Vec<f32>, within: f32) -> Vec<i64> {
    let n = mins.len();
    greedy(rows, dim, mins, n, within, false, &|_| {}).picks
}

/// The greedy from initial min-distances `mins`, until `target` picks or the farthest row lies
/// within `within`. `means` says the mins are start-row means rather than distances (see below).
fn greedy(
    mut rows: Vec<f32>,
    dim: usize,
    mut mins: Vec<f32>,
    target: usize,
    within: f32,
    means: bool,
    picked: &dyn Fn(usize),
) -> Selection {
    let n = rows.len() / dim;
    let target = target.min(n);
    if target == 0 {
        return Selection {
            picks: Vec::new(),
            radius: f32::INFINITY,
        };
    }
    let mut ids: Vec<u32> = (0..n as u32).collect();
    build_tree(&mut rows, &mut ids, &mut mins, dim);
    let start_mins = mins.clone();
    let mut reach = vec![0f32; n];
    let mut leaves: Vec<Leaf> = rows
        .par_chunks(LEAF_ROWS * dim)
        .zip(reach.par_chunks_mut(LEAF_ROWS))
        .enumerate()
        .map(|(l, (block, reach))| {
            let len = reach.len();
            let mut centre = vec![0f32; dim];
            for r in block.chunks_exact(dim) {
                centre.iter_mut().zip(r).for_each(|(c, x)| *c += x);
            }
            centre.iter_mut().for_each(|c| *c /= len as f32);
            for (d, r) in reach.iter_mut().zip(block.chunks_exact(dim)) {
                *d = dist(r, &centre);
            }
            let radius = reach.iter().fold(0f32, |a, &b| a.max(b));
            Leaf {
                start: l * LEAF_ROWS,
                len,
                centre,
                radius,
                applied: 0,
            }
        })
        .collect();
    // Each leaf's first key: an update with no centres only finds its largest min-distance.
    let mut heap: std::collections::BinaryHeap<Key> = leaves
        .par_iter()
        .zip(mins.par_chunks_mut(LEAF_ROWS))
        .enumerate()
        .map(|(l, (leaf, part))| {
            let span = leaf.start..leaf.start + leaf.len;
            update_leaf(
                leaf,
                &rows[span.start * dim..span.end * dim],
                (&ids[span.clone()], part, &reach[span]),
                &[],
                dim,
                l as u32,
            )
        })
        .collect();
    let mut chosen: Vec<i64> = Vec::with_capacity(target);
    let mut centres: Vec<f32> = Vec::with_capacity(target * dim);
    let mut stale: Vec<Key> = Vec::with_capacity(PARALLEL_LEAVES);
    let mut radius = 0.0;
    while let Some(top) = heap.pop() {
        if leaves[top.leaf as usize].applied == chosen.len() {
            // Up to date and no other leaf can beat it: every key is an upper bound, since
            // min-distances only shrink. Once the target is reached, it is the covering radius.
            if chosen.len() == target || top.max <= within {
                radius = top.max;
                break;
            }
            chosen.push(top.id as i64);
            if chosen.len().is_multiple_of(REPORT_EVERY) {
                picked(chosen.len());
            }
            let p = top.pos as usize;
            centres.extend_from_slice(&rows[p * dim..(p + 1) * dim]);
            heap.push(top);
            continue;
        }
        stale.clear();
        stale.push(top);
        while stale.len() < PARALLEL_LEAVES {
            match heap.peek() {
                Some(k) if leaves[k.leaf as usize].applied < chosen.len() => {
                    stale.extend(heap.pop());
                }
                _ => break,
            }
        }
        stale.sort_unstable_by_key(|k| k.leaf);
        // Disjoint row ranges of the stale leaves, handed out as mutable slices.
        let mut parts = Vec::with_capacity(stale.len());
        let mut rest: &mut [f32] = &mut mins;
        let mut offset = 0;
        for k in &stale {
            let leaf = &leaves[k.leaf as usize];
            let (_, tail) = rest.split_at_mut(leaf.start - offset);
            let (part, tail) = tail.split_at_mut(leaf.len);
            parts.push((k.leaf, part));
            rest = tail;
            offset = leaf.start + leaf.len;
        }
        let (leaves_ref, rows_ref, ids_ref, reach_ref) = (&leaves, &rows, &ids, &reach);
        let t = chosen.len();
        let keys: Vec<Key> = parts
            .into_par_iter()
            .map(|(l, part)| {
                let leaf = &leaves_ref[l as usize];
                let span = leaf.start..leaf.start + leaf.len;
                update_leaf(
                    leaf,
                    &rows_ref[span.start * dim..span.end * dim],
                    (&ids_ref[span.clone()], part, &reach_ref[span]),
                    &centres[leaf.applied * dim..t * dim],
                    dim,
                    l,
                )
            })
            .collect();
        for k in keys {
            leaves[k.leaf as usize].applied = t;
            heap.push(k);
        }
    }
    // A row no pick has moved still holds its start-row mean, which is no distance to the bank:
    // measure those few against the picks, so that r bounds every row's distance to its nearest
    // pick (exact, unless the farthest row is one of them: then r is above the true radius).
    let unmoved = (0..n)
        .into_par_iter()
        .filter(|&i| means && mins[i] == start_mins[i])
        .map(|i| nearest_centre(&rows[i * dim..(i + 1) * dim], &centres, dim))
        .reduce(|| 0.0, f32::max);
    Selection {
        picks: chosen,
        radius: radius.max(unmoved),
    }
}

/// Distance from `row` to the nearest of `centres` (row-major, `dim` wide).
fn nearest_centre(row: &[f32], centres: &[f32], dim: usize) -> f32 {
    centres
        .chunks_exact(dim)
        .map(|c| dist(row, c))
        .fold(f32::INFINITY, f32::min)
}

/// The same rule with tensor ops, for CUDA: no host round trip per step.
pub fn greedy_device(
    reduced: &Tensor,
    starts: &[usize],
    target: usize,
    picked: &dyn Fn(usize),
) -> Result<Selection, TchError> {
    let to_all = |row: &Tensor| -> Result<Tensor, TchError> {
        reduced
            .f_sub(&row.f_unsqueeze(0)?)?
            .f_square()?
            .f_sum_dim_intlist(1, false, Kind::Float)?
            .f_sqrt()
    };
    let mut min_d = Tensor::f_zeros([reduced.size2()?.0], (Kind::Float, reduced.device()))?;
    for &s in starts {
        min_d = min_d.f_add(&to_all(&reduced.f_get(s as i64)?)?)?;
    }
    min_d = min_d.f_div_scalar(starts.len() as f64)?;
    let start_d = min_d.f_detach_copy()?;
    let mut picks = Vec::with_capacity(target);
    for _ in 0..target {
        let idx = min_d.f_argmax(0, false)?;
        let row = reduced
            .f_index_select(0, &idx.f_unsqueeze(0)?)?
            .f_squeeze_dim(0)?;
        min_d = min_d.f_minimum(&to_all(&row)?)?;
        picks.push(idx);
        if picks.len().is_multiple_of(REPORT_EVERY) {
            picked(picks.len());
        }
    }
    let picks = Tensor::f_stack(&picks, 0)?;
    // As on the CPU: rows no pick moved are measured against the picks.
    let unmoved: Vec<i64> = min_d
        .f_eq_tensor(&start_d)?
        .f_nonzero()?
        .f_view([-1])?
        .f_to_device(Device::Cpu)?
        .try_into()?;
    let rows: Vec<f32> = to_host_f32(&reduced.f_index_select(0, &picks)?)?;
    let dim = reduced.size2()?.1 as usize;
    let mut radius = min_d.f_max()?.f_double_value(&[])? as f32;
    for i in unmoved {
        let row = to_host_f32(&reduced.f_get(i)?)?;
        radius = radius.max(nearest_centre(&row, &rows, dim));
    }
    Ok(Selection {
        picks: picks.f_to_device(Device::Cpu)?.try_into()?,
        radius,
    })
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
    fn plain_greedy(rows: &[f32], dim: usize, starts: &[usize], target: usize) -> Selection {
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
        let centres: Vec<f32> = out.iter().flat_map(|&c| row(c as usize).to_vec()).collect();
        let radius = (0..n)
            .map(|i| nearest_centre(row(i), &centres, dim))
            .fold(0.0, f32::max);
        Selection { picks: out, radius }
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
        // Three leaves, then many (the tree, the lazy batches and the parallel updates at work).
        for (seed, n) in [(0, 3000), (1, 3000), (2, 3000), (3, 24_000)] {
            let dim = 16;
            let rows = clustered(n, dim, seed);
            let starts = start_rows(n, 10, seed);
            let fast = greedy_cpu(rows.clone(), dim, &starts, 300, &|_| {});
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
        let a = select(&feats, &opts).unwrap();
        let b = select(&feats, &opts).unwrap();
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 200);
        // The tensor path (used on CUDA) run on CPU tensors picks the same rows.
        let p = Tensor::from_slice(&random_projection(64, 32, 9)).view([64, 32]);
        let reduced = feats.matmul(&p);
        let dev = greedy_device(&reduced, &start_rows(2000, 10, 9), 200, &|_| {})
            .unwrap()
            .picks;
        let same = a.iter().zip(&dev).take_while(|(x, y)| x == y).count();
        assert!(same >= 150, "tensor path diverges after {same} picks");
        let other = select(&feats, &CoresetOptions { seed: 10, ..opts }).unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn greedy_property_on_a_small_case() {
        // Points 0, 1, 2, 10, 4 on a line, start at 0: 10 is farthest, then 4 (4 from {0, 10}... the
        // start only seeds the distances), then 2, then 1.
        let rows = [0.0f32, 1.0, 2.0, 10.0, 4.0];
        let picks = greedy_cpu(rows.to_vec(), 1, &[0], 4, &|_| {});
        assert_eq!(picks.picks, vec![3, 4, 2, 1]);
        // Left: 0, covered by 1 at distance 1.
        assert_eq!(picks.radius, 1.0);
    }
}
