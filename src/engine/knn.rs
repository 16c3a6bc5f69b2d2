//! Exact nearest-neighbour search of patch features against the memory bank (paper Eq. 6).
//!
//! Brute force is a full-width GEMM against every bank row. Bank features are nearly low-rank,
//! so each row is instead compressed to its top principal components plus the length of what
//! they leave out. The distance between two compressed rows is a lower bound of the true one
//! (Pythagoras, then the reverse triangle inequality on the residuals). A GEMM on the short rows
//! shortlists candidates, their distances are computed directly as `sum((x - m)^2)` in f32 (the
//! GEMM form `|x|^2 + |m|^2 - 2 x.m` cancels badly; see the reference README), and a query is
//! finished once the next row's lower bound exceeds its k-th exact distance; otherwise its
//! shortlist grows. The answer is the brute-force answer at a fraction of the arithmetic.
//!
//! Queries far from every row (a drifted part's new images, which `update` searches) defeat the
//! compressed bounds: `Searcher::dense` gives them full-width bounds from the start, one GEMM
//! against the centred bank (in bf16 where AMX or tensor cores make it cheap), then the same
//! exact shortlist check.
use tch::{Kind, TchError, Tensor};

/// Bytes the lower-bound matrix of one chunk may take (it dominates the search's memory).
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 20;
/// Share of the bank's variance the principal components keep; the rest is the residual.
const EXPLAINED_VARIANCE: f64 = 0.999;
/// Bounds on the number of principal components (the GEMM width).
const MIN_COMPONENTS: i64 = 32;
const MAX_COMPONENTS: i64 = 256;
/// Rows the principal components are estimated from. Any orthonormal basis gives a valid bound;
/// a better one only gives a tighter bound, so a sample is enough.
const BASIS_SAMPLE: i64 = 8192;
/// f32 rounding allowance of a lower bound, relative to `(|q| + max |m|)^2` of the centred
/// operands: about 170 ulps, well above what the narrow GEMM and the compression lose. It can only add
/// candidates, never drop the true neighbour.
const SLACK: f64 = 2e-5;
/// First shortlist length; queries whose bound is not yet beaten get four times as many.
const INITIAL_SHORTLIST: i64 = 8;
/// Once a shortlist would pass 1/64 of the bank, the compressed bounds are too loose to pay
/// (exact distances cost far more per row than a GEMM): the pending queries get full-width
/// bounds instead, one GEMM against the centred bank, tight up to f32 rounding.
const FULL_WIDTH_SHARE: i64 = 64;
/// Rounding allowance of the full-width bounds, as `SLACK`: a 1,024-wide f32 dot product's
/// worst case is about `D * 2^-24 / 2` of `(|q| + |m|)^2`, 3e-5 at D = 1,024.
const FULL_SLACK: f64 = 1e-4;
/// Rounding allowance of bf16 compressed bounds: bf16 operands and a bf16 result each round by
/// up to 2^-9, so `2 q.m` is off by at most about 6 * 2^-9 |q||m| <= 2.9e-3 (|q| + |m|)^2.
const BF16_SLACK: f64 = 4e-3;

/// Bank rows prepared for repeated searching.
pub struct Searcher {
    /// `(K, D)` bank rows in their stored precision (f16 banks stay half the size in memory).
    rows: Tensor,
    mean: Tensor,
    /// How candidates are shortlisted first.
    bounds: Bounds,
    /// `(K,)` squared lengths of the centred rows.
    centred_sq: Tensor,
    /// Largest centred row length, for the rounding allowance.
    max_norm: f64,
    /// Rounding allowance of the first bounds, relative to `(|q| + max_norm)^2`.
    bound_slack: f64,
    /// Rounding allowance of the full-width bounds.
    full_slack: f64,
    chunk_bytes: usize,
}

enum Bounds {
    /// Compressed rows first, full-width bounds for the queries they leave pending.
    Compressed {
        /// `(D, d)` orthonormal principal directions of the centred rows.
        basis: Tensor,
        /// `(d + 1, K)` compressed centred rows, transposed (the GEMM's operand as MKL and
        /// oneDNN read it fastest): components, then residual length; f32, or bf16 for the
        /// bound GEMM of `with_bf16_bounds`.
        short_t: Tensor,
    },
    /// Full-width bounds for every query: `(D, K)` centred rows, transposed, in the GEMM's kind
    /// (f32, or bf16 after `with_bf16_bounds`), kept so no query chunk centres the bank again.
    Dense { centred_t: Tensor },
}

/// `k` nearest bank rows per query, nearest first.
pub struct Neighbours {
    /// `(M, k)` exact squared L2 distances.
    pub sq_dist: Tensor,
    /// `(M, k)` bank row indices.
    pub index: Tensor,
}

impl Searcher {
    /// `rows` in f32, or f16 to halve the bank's memory (distances are still computed in f32).
    pub fn new(rows: &Tensor, chunk_bytes: usize) -> Result<Self, TchError> {
        let mean = rows.f_mean_dim(0, true, Kind::Float)?;
        let basis = principal_basis(rows, &mean)?;
        let parts = centred_blocks(rows, &mean, chunk_bytes, |c| compress(c, &basis))?;
        let short = if parts.is_empty() {
            Tensor::f_zeros([0, basis.size()[1] + 1], (Kind::Float, rows.device()))?
        } else {
            Tensor::f_cat(&parts, 0)?
        };
        let centred_sq = short.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?;
        Self::prepared(
            rows,
            mean,
            Bounds::Compressed {
                basis,
                short_t: short.f_tr()?.f_contiguous()?,
            },
            centred_sq,
            SLACK,
            chunk_bytes,
        )
    }

    /// A searcher for queries that lie far from every row, where compressed bounds do not prune
    /// (on bottle's drifted images 60 % of the patches needed the full width anyway): full-width
    /// bounds from the start, at the price of a centred copy of the bank.
    pub fn dense(rows: &Tensor, chunk_bytes: usize) -> Result<Self, TchError> {
        let mean = rows.f_mean_dim(0, true, Kind::Float)?;
        let parts = centred_blocks(rows, &mean, chunk_bytes, |c| Ok(c.shallow_clone()))?;
        let centred = if parts.is_empty() {
            Tensor::f_zeros([0, rows.size2()?.1], (Kind::Float, rows.device()))?
        } else {
            Tensor::f_cat(&parts, 0)?
        };
        let centred_sq = centred
            .f_square()?
            .f_sum_dim_intlist(1, false, Kind::Float)?;
        Self::prepared(
            rows,
            mean,
            Bounds::Dense {
                centred_t: centred.f_tr()?.f_contiguous()?,
            },
            centred_sq,
            FULL_SLACK,
            chunk_bytes,
        )
    }

    fn prepared(
        rows: &Tensor,
        mean: Tensor,
        bounds: Bounds,
        centred_sq: Tensor,
        bound_slack: f64,
        chunk_bytes: usize,
    ) -> Result<Self, TchError> {
        let max_norm = if centred_sq.numel() == 0 {
            0.0
        } else {
            centred_sq.f_max()?.f_double_value(&[])?.sqrt()
        };
        Ok(Self {
            rows: rows.shallow_clone(),
            mean,
            bounds,
            centred_sq,
            max_norm,
            bound_slack,
            full_slack: FULL_SLACK,
            chunk_bytes,
        })
    }

    /// Shortlisting GEMM in bf16 (AMX and tensor cores run it several times faster than f32),
    /// with a rounding allowance widened to match: the answer is still the exact one. Dense
    /// searchers get bf16 full-width bounds (`BF16_SLACK` holds at any width: it is relative).
    pub fn with_bf16_bounds(mut self) -> Result<Self, TchError> {
        match &mut self.bounds {
            Bounds::Compressed { short_t, .. } => *short_t = short_t.f_to_kind(Kind::BFloat16)?,
            Bounds::Dense { centred_t } => {
                *centred_t = centred_t.f_to_kind(Kind::BFloat16)?;
                self.full_slack = BF16_SLACK;
            }
        }
        self.bound_slack = BF16_SLACK;
        Ok(self)
    }

    pub fn len(&self) -> i64 {
        self.rows.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rows(&self) -> &Tensor {
        &self.rows
    }

    /// Width of the compressed rows (principal components + 1); the full width when dense.
    pub fn compressed_width(&self) -> i64 {
        match &self.bounds {
            Bounds::Compressed { short_t, .. } => short_t.size()[0],
            Bounds::Dense { centred_t } => centred_t.size()[0],
        }
    }

    /// Nearest `k` rows for each `(M, D)` query. `exclude = (query_source (M,), row_source (K,))`
    /// masks out the rows that came from the query's own image (leave-one-image-out calibration).
    /// A `k` below 1 or an empty bank is an error, not a panic.
    pub fn search(
        &self,
        queries: &Tensor,
        k: i64,
        exclude: Option<(&Tensor, &Tensor)>,
    ) -> Result<Neighbours, TchError> {
        let k = k.min(self.len());
        if k < 1 {
            return Err(TchError::Shape(format!(
                "cannot search for {k} neighbours among {} bank rows",
                self.len()
            )));
        }
        let queries = queries.f_to_kind(Kind::Float)?;
        let m = queries.size2()?.0;
        let per_query = (self.len() as usize * 4).max(1);
        let chunk = ((self.chunk_bytes / per_query).max(1) as i64).min(m.max(1));
        let mut dists = Vec::new();
        let mut idxs = Vec::new();
        for start in (0..m).step_by(chunk as usize) {
            let len = chunk.min(m - start);
            let own = exclude
                .map(|(qsrc, rsrc)| {
                    qsrc.f_narrow(0, start, len)?
                        .f_unsqueeze(1)?
                        .f_eq_tensor(&rsrc.f_unsqueeze(0)?)
                })
                .transpose()?;
            let (d, i) = self.search_chunk(&queries.f_narrow(0, start, len)?, k, own.as_ref())?;
            dists.push(d);
            idxs.push(i);
        }
        Ok(Neighbours {
            sq_dist: Tensor::f_cat(&dists, 0)?,
            index: Tensor::f_cat(&idxs, 0)?,
        })
    }

    /// `search` over the queries whose `cells` entry is true (one per query row): the others,
    /// padding around a part, are not searched and get distance 0 to row 0 (a perfect match), so
    /// a short part centred in a long input costs only its own cells. `exclude`'s query sources
    /// are per query row, as in `search`.
    pub fn search_cells(
        &self,
        queries: &Tensor,
        k: i64,
        exclude: Option<(&Tensor, &Tensor)>,
        cells: &[bool],
    ) -> Result<Neighbours, TchError> {
        if cells.iter().all(|&c| c) {
            return self.search(queries, k, exclude);
        }
        let kept: Vec<i64> = (0..cells.len() as i64)
            .filter(|&i| cells[i as usize])
            .collect();
        let n = queries.size()[0];
        let k = k.min(self.len()).max(1);
        let device = queries.device();
        let mut sq_dist = Tensor::f_zeros([n, k], (Kind::Float, device))?;
        let mut index = Tensor::f_zeros([n, k], (Kind::Int64, device))?;
        if !kept.is_empty() {
            let idx = Tensor::f_from_slice(&kept)?.f_to_device(device)?;
            let qsrc = exclude
                .map(|(q, _)| q.f_index_select(0, &idx))
                .transpose()?;
            let exclude = exclude.zip(qsrc.as_ref()).map(|((_, r), q)| (q, r));
            let found = self.search(&queries.f_index_select(0, &idx)?, k, exclude)?;
            sq_dist = sq_dist.f_index_copy(0, &idx, &found.sq_dist)?;
            index = index.f_index_copy(0, &idx, &found.index)?;
        }
        Ok(Neighbours { sq_dist, index })
    }

    fn search_chunk(
        &self,
        q: &Tensor,
        k: i64,
        own: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor), TchError> {
        let (m, bank) = (q.size()[0], self.len());
        let qc = q.f_sub(&self.mean)?;
        // `q_sq`: the squared length of the centred query (compression keeps it).
        let (q_sq, mut lower, mut full_width) = match &self.bounds {
            Bounds::Compressed { basis, short_t } => {
                let qs = compress(&qc, basis)?;
                let q_sq = qs.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?;
                (q_sq, self.compressed_bounds(short_t, &qs)?, false)
            }
            Bounds::Dense { .. } => (
                qc.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?,
                self.full_bounds(&qc)?,
                true,
            ),
        };
        if let Some(own) = own {
            lower = lower.f_masked_fill(own, f64::INFINITY)?;
        }
        let allowance = |share: f64, q_sq: &Tensor| {
            q_sq.f_sqrt()?
                .f_add_scalar(self.max_norm)?
                .f_square()?
                .f_mul_scalar(share)?
                .f_sub(q_sq)
        };
        let mut slack = allowance(self.bound_slack, &q_sq)?;
        let opts = (Kind::Float, q.device());
        let mut sq_dist = Tensor::f_zeros([m, k], opts)?;
        let mut index = Tensor::f_zeros([m, k], (Kind::Int64, q.device()))?;
        let mut todo = Tensor::f_arange(m, (Kind::Int64, q.device()))?;
        let first_width = (4 * k).max(INITIAL_SHORTLIST);
        let mut width = first_width;
        loop {
            if !full_width && width < bank && width * FULL_WIDTH_SHARE > bank {
                let mut full = self.full_bounds(&q.f_index_select(0, &todo)?.f_sub(&self.mean)?)?;
                if let Some(own) = own {
                    full = full.f_masked_fill(&own.f_index_select(0, &todo)?, f64::INFINITY)?;
                }
                let _ = lower.f_index_copy_(0, &todo, &full)?;
                let _ = slack.f_index_copy_(
                    0,
                    &todo,
                    &allowance(self.full_slack, &q_sq.f_index_select(0, &todo)?)?,
                )?;
                full_width = true;
                width = first_width;
            }
            let width_now = width.min(bank);
            let pending = if todo.numel() as i64 == m {
                lower.shallow_clone()
            } else {
                lower.f_index_select(0, &todo)?
            };
            let (bounds, cand) = smallest(&pending, (width_now + 1).min(bank))?;
            let shortlist = cand.f_narrow(1, 0, width_now)?;
            let mut exact = self.exact(&q.f_index_select(0, &todo)?, &shortlist)?;
            if own.is_some() {
                // Excluded rows only reach a shortlist when too few others are left.
                exact = exact
                    .f_masked_fill(&bounds.f_narrow(1, 0, width_now)?.f_isinf()?, f64::INFINITY)?;
            }
            let (best, order) = exact.f_topk(k, 1, false, true)?;
            let done = if width_now >= bank {
                Tensor::f_ones_like(&todo)?.f_to_kind(Kind::Bool)?
            } else {
                // Every row off the shortlist is at least as far as the next bound.
                let next = bounds
                    .f_select(1, width_now)?
                    .f_sub(&slack.f_index_select(0, &todo)?)?;
                next.f_ge_tensor(&best.f_select(1, k - 1)?)?
            };
            let finished = todo.f_masked_select(&done)?;
            let _ = sq_dist.f_index_copy_(0, &finished, &best.f_index(&[Some(&done)])?)?;
            let _ = index.f_index_copy_(
                0,
                &finished,
                &shortlist
                    .f_gather(1, &order, false)?
                    .f_index(&[Some(&done)])?,
            )?;
            todo = todo.f_masked_select(&done.f_logical_not()?)?;
            if todo.numel() == 0 {
                return Ok((sq_dist, index));
            }
            width *= 4;
        }
    }

    /// Squared distances between compressed rows, less the per-query `|qs|^2`, in one GEMM.
    fn compressed_bounds(&self, short_t: &Tensor, qs: &Tensor) -> Result<Tensor, TchError> {
        bound_gemm(qs, short_t, &self.centred_sq)
    }

    /// `(n, K)` full-width bounds `|m|^2 - 2 q.m` for centred queries `qc`: the squared distances
    /// less `|q|^2`, one GEMM per block of centred bank rows (a dense searcher's kept copy).
    fn full_bounds(&self, qc: &Tensor) -> Result<Tensor, TchError> {
        if let Bounds::Dense { centred_t } = &self.bounds {
            return bound_gemm(qc, centred_t, &self.centred_sq);
        }
        let q2 = qc.f_mul_scalar(-2.0)?;
        let parts = centred_blocks(&self.rows, &self.mean, self.chunk_bytes, |c| {
            q2.f_mm(&c.f_tr()?)
        })?;
        if parts.is_empty() {
            Tensor::f_zeros([qc.size()[0], 0], (Kind::Float, qc.device()))
        } else {
            Tensor::f_cat(&parts, 1)?.f_add(&self.centred_sq.f_unsqueeze(0)?)
        }
    }

    /// `(n, w)` direct squared distances from each query to its `w` shortlisted rows, in query
    /// blocks that keep the `(block, w, D)` differences within the chunk budget.
    fn exact(&self, q: &Tensor, shortlist: &Tensor) -> Result<Tensor, TchError> {
        let (n, w) = shortlist.size2()?;
        let dim = self.rows.size()[1];
        let block = ((self.chunk_bytes / (w * dim * 4).max(1) as usize).max(1) as i64).min(n);
        let parts = (0..n)
            .step_by(block.max(1) as usize)
            .map(|s| {
                let len = block.min(n - s);
                // The gathered rows are a fresh tensor: subtracting and squaring in place saves
                // two passes over `(block, w, D)` (the gather and one reduction remain).
                let mut rows = self
                    .rows
                    .f_index_select(0, &shortlist.f_narrow(0, s, len)?.f_reshape([-1])?)?
                    .f_to_kind(Kind::Float)?
                    .f_view([len, w, dim])?;
                let _ = rows.f_sub_(&q.f_narrow(0, s, len)?.f_unsqueeze(1)?)?;
                rows.f_square_()?.f_sum_dim_intlist(2, false, Kind::Float)
            })
            .collect::<Result<Vec<_>, TchError>>()?;
        if parts.is_empty() {
            Tensor::f_zeros([0, w], (Kind::Float, q.device()))
        } else {
            Tensor::f_cat(&parts, 0)
        }
    }
}

/// `|m|^2 - 2 q.m` for every query row of `q` and bank row of `m`, from `m_t` = `m`
/// transposed, in its kind (f32, or bf16 with an f32 result), `m_sq` being the rows' squared
/// lengths. The bf16 product is added to `m_sq` in one pass: converting it first would be another
/// pass over the whole `(n, K)` matrix, which costs more than the AMX GEMM itself.
fn bound_gemm(q: &Tensor, m_t: &Tensor, m_sq: &Tensor) -> Result<Tensor, TchError> {
    let sq = m_sq.f_unsqueeze(0)?;
    if m_t.kind() == Kind::Float {
        sq.f_addmm(&q.f_mul_scalar(-2.0)?, m_t)
    } else {
        sq.f_add(&q.f_to_kind(m_t.kind())?.f_mul_scalar(-2.0)?.f_mm(m_t)?)
    }
}

/// Groups `smallest` splits a row into: a full `topk` over every bound costs several times a
/// pass that only takes each group's minimum.
const SELECTION_GROUPS: i64 = 256;

/// The `count` smallest values of each row of `x` `(n, K)`, ascending, and their columns: the
/// same answer as `topk`, in two cheap steps. The `count` smallest values lie in the `count`
/// groups with the smallest minima (a value in any other group has `count` smaller minima
/// before it), so only those groups' members are ranked. Group `g` holds the columns
/// `g, g + G, g + 2G, ...`: their minimum is an elementwise `min` down contiguous rows of
/// `G` columns, four times faster than reducing runs of adjacent columns.
fn smallest(x: &Tensor, count: i64) -> Result<(Tensor, Tensor), TchError> {
    let (n, cols) = x.size2()?;
    let groups = SELECTION_GROUPS;
    let full_rows = cols / groups;
    if full_rows == 0 || count * 4 > groups || n == 0 {
        return x.f_topk(count, 1, false, true);
    }
    let minima = x
        .f_narrow(1, 0, full_rows * groups)?
        .f_view([n, full_rows, groups])?
        .f_amin(&[1i64][..], false)?;
    let tail = cols - full_rows * groups;
    if tail > 0 {
        // The last, partial row of columns: its column `g` belongs to group `g`.
        let head = minima.f_narrow(1, 0, tail)?;
        let _ = head.f_minimum_out(&head, &x.f_narrow(1, full_rows * groups, tail)?)?;
    }
    let (_, chosen) = minima.f_topk(count, 1, false, false)?;
    // Members of the chosen groups; those past the end (groups the partial row misses) rank last.
    let rows = full_rows + i64::from(tail > 0);
    let steps = Tensor::f_arange(rows, (Kind::Int64, x.device()))?.f_mul_scalar(groups)?;
    let members = chosen
        .f_unsqueeze(2)?
        .f_add(&steps)?
        .f_view([n, count * rows])?;
    let past = members.f_ge(cols)?;
    let values = x
        .f_gather(1, &members.f_clamp_max(cols - 1)?, false)?
        .f_masked_fill(&past, f64::INFINITY)?;
    let (best, order) = values.f_topk(count, 1, false, true)?;
    Ok((best, members.f_gather(1, &order, false)?))
}

/// `(D, d)` top principal directions of the rows about `mean`, `d` keeping `EXPLAINED_VARIANCE`.
fn principal_basis(rows: &Tensor, mean: &Tensor) -> Result<Tensor, TchError> {
    let (n, dim) = rows.size2()?;
    let sample = if n > BASIS_SAMPLE {
        rows.f_index_select(
            0,
            &Tensor::f_linspace(
                0.0,
                (n - 1) as f64,
                BASIS_SAMPLE,
                (Kind::Float, rows.device()),
            )?
            .f_to_kind(Kind::Int64)?,
        )?
    } else {
        rows.shallow_clone()
    };
    let sample = sample.f_to_kind(Kind::Float)?.f_sub(mean)?;
    // The covariance only steers the basis; eigh in f64 keeps the basis itself orthonormal.
    // eigh sorts eigenvalues ascending: the top components are the last columns.
    let (values, vectors) = sample
        .f_tr()?
        .f_mm(&sample)?
        .f_to_kind(Kind::Double)?
        .f_linalg_eigh("L")?;
    let values: Vec<f64> = values
        .f_clamp_min(0.0)?
        .f_flip([0])?
        .f_to_device(tch::Device::Cpu)?
        .try_into()?;
    let total: f64 = values.iter().sum();
    let mut kept = 0.0;
    let mut d = dim;
    for (i, v) in values.iter().enumerate() {
        kept += v;
        if kept >= EXPLAINED_VARIANCE * total {
            d = i as i64 + 1;
            break;
        }
    }
    let d = d.clamp(MIN_COMPONENTS.min(dim), MAX_COMPONENTS.min(dim));
    vectors.f_narrow(1, dim - d, d)?.f_to_kind(Kind::Float)
}

/// `f` applied to the centred bank in row blocks of at most `chunk_bytes`, so no full-size
/// centred copy of the bank is ever made.
fn centred_blocks(
    rows: &Tensor,
    mean: &Tensor,
    chunk_bytes: usize,
    f: impl Fn(&Tensor) -> Result<Tensor, TchError>,
) -> Result<Vec<Tensor>, TchError> {
    let (n, dim) = rows.size2()?;
    let block = ((chunk_bytes / (dim as usize * 4).max(1)).max(1) as i64).min(n.max(1));
    (0..n)
        .step_by(block as usize)
        .map(|s| {
            f(&rows
                .f_narrow(0, s, block.min(n - s))?
                .f_to_kind(Kind::Float)?
                .f_sub(mean)?)
        })
        .collect()
}

/// Centred rows `(N, D)` to `(N, d + 1)`: their components along `basis`, then the length of the
/// part the basis misses.
fn compress(centred: &Tensor, basis: &Tensor) -> Result<Tensor, TchError> {
    let proj = centred.f_mm(basis)?;
    let residual = centred
        .f_square()?
        .f_sum_dim_intlist(1, true, Kind::Float)?
        .f_sub(&proj.f_square()?.f_sum_dim_intlist(1, true, Kind::Float)?)?
        .f_clamp_min(0.0)?
        .f_sqrt()?;
    Tensor::f_cat(&[proj, residual], 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn finds_exact_neighbours_despite_large_shared_offset() {
        tch::manual_seed(3);
        let opts = (Kind::Float, Device::Cpu);
        // Features with a large common offset, like post-ReLU CNN averages.
        let offset = Tensor::full([1, 64], 50.0, opts);
        let bank = Tensor::randn([500, 64], opts) + &offset;
        let queries = Tensor::randn([37, 64], opts) * 0.3 + bank.narrow(0, 100, 37);
        let s = Searcher::new(&bank, 4096).unwrap(); // tiny budget: many chunks
        let n = s.search(&queries, 2, None).unwrap();
        // Brute force in f64.
        let b64 = bank.to_kind(Kind::Double);
        let q64 = queries.to_kind(Kind::Double);
        let d = (q64.unsqueeze(1) - b64.unsqueeze(0))
            .square()
            .sum_dim_intlist(2, false, Kind::Double);
        let (want_d, want_i) = d.topk(2, 1, false, true);
        assert!(n.index.equal(&want_i));
        let rel = ((n.sq_dist.to_kind(Kind::Double) - &want_d).abs() / &want_d)
            .max()
            .double_value(&[]);
        assert!(rel < 1e-5, "relative error {rel}");
    }

    #[test]
    fn smallest_equals_topk_with_ties_and_a_short_last_group() {
        tch::manual_seed(9);
        let opts = (Kind::Float, Device::Cpu);
        // 3,001 columns: 11 full rows of 256 groups and a partial row of 185, so 71 groups have
        // one member less; rounded values make ties.
        let x = (Tensor::randn([40, 3001], opts) * 4.0).round();
        // Rows whose smallest values all lie in the partial row, and one in its last column.
        let _ = x.narrow(0, 0, 2).narrow(1, 11 * 256, 185).fill_(-100.0);
        let _ = x.narrow(0, 2, 1).narrow(1, 3000, 1).fill_(-200.0);
        for count in [1, 9, 33] {
            let (got, cols) = smallest(&x, count).unwrap();
            let (want, _) = x.topk(count, 1, false, true);
            assert!(got.equal(&want), "values differ at count {count}");
            // Every column is distinct and holds the value reported for it.
            assert!(x.gather(1, &cols, false).equal(&got));
            let sorted = cols.sort(1, false).0;
            let distinct =
                sorted
                    .narrow(1, 1, count - 1)
                    .ne_tensor(&sorted.narrow(1, 0, count - 1));
            assert!(count == 1 || distinct.all().int64_value(&[]) == 1);
        }
        // No partial row: every group has the same members.
        let even = x.narrow(1, 0, 11 * 256);
        let (got, cols) = smallest(&even, 9).unwrap();
        assert!(got.equal(&even.topk(9, 1, false, true).0));
        assert!(even.gather(1, &cols, false).equal(&got));
    }

    #[test]
    fn no_neighbours_asked_is_an_error_not_a_panic() {
        let bank = Tensor::randn([20, 8], (Kind::Float, Device::Cpu));
        let s = Searcher::new(&bank, 1 << 20).unwrap();
        assert!(s.search(&bank, 0, None).is_err());
        assert!(s.search(&bank, -3, None).is_err());
    }

    #[test]
    fn excluded_rows_are_never_chosen() {
        tch::manual_seed(4);
        let opts = (Kind::Float, Device::Cpu);
        let bank = Tensor::randn([50, 8], opts);
        let queries = bank.narrow(0, 0, 10);
        // Rows 0..10 come from "image 0", the rest from image 1; the queries are image 0's rows.
        let rsrc = Tensor::from_slice(&(0..50).map(|i| i64::from(i >= 10)).collect::<Vec<_>>());
        let qsrc = Tensor::zeros([10], (Kind::Int64, Device::Cpu));
        let n = Searcher::new(&bank, 64)
            .unwrap()
            .search(&queries, 1, Some((&qsrc, &rsrc)))
            .unwrap();
        let chosen: Vec<i64> = n.index.view([-1]).try_into().unwrap();
        assert!(chosen.iter().all(|&i| i >= 10));
        assert!(n.sq_dist.min().double_value(&[]) > 0.0);
    }

    /// f64 brute force: `(distances, indices)` of the `k` nearest rows, with `own` rows masked.
    fn brute(bank: &Tensor, queries: &Tensor, k: i64, own: Option<&Tensor>) -> (Tensor, Tensor) {
        let d = (queries.to_kind(Kind::Double).unsqueeze(1)
            - bank.to_kind(Kind::Double).unsqueeze(0))
        .square()
        .sum_dim_intlist(2, false, Kind::Double);
        let d = match own {
            Some(own) => d.masked_fill(own, f64::INFINITY),
            None => d,
        };
        d.topk(k, 1, false, true)
    }

    fn assert_same(got: &Neighbours, want: &(Tensor, Tensor)) {
        assert!(
            got.index.equal(&want.1),
            "neighbour indices differ from brute force"
        );
        let rel = ((got.sq_dist.to_kind(Kind::Double) - &want.0).abs() / &want.0)
            .max()
            .double_value(&[]);
        assert!(rel < 1e-5, "relative error {rel}");
    }

    #[test]
    fn compressed_search_equals_brute_force_on_low_rank_features() {
        tch::manual_seed(5);
        let opts = (Kind::Float, Device::Cpu);
        // Rank-12 structure plus small noise and an offset, like pooled CNN features.
        let basis = Tensor::randn([12, 128], opts);
        let bank = Tensor::randn([3000, 12], opts).mm(&basis)
            + Tensor::randn([3000, 128], opts) * 0.05
            + 3.0;
        let queries = Tensor::randn([300, 12], opts).mm(&basis)
            + Tensor::randn([300, 128], opts) * 0.05
            + 3.0;
        let s = Searcher::new(&bank, 1 << 20).unwrap();
        assert!(s.compressed_width() <= 33, "width {}", s.compressed_width());
        let s16 = Searcher::new(&bank, 1 << 20)
            .unwrap()
            .with_bf16_bounds()
            .unwrap();
        for k in [1, 3] {
            let want = brute(&bank, &queries, k, None);
            assert_same(&s.search(&queries, k, None).unwrap(), &want);
            // bf16 bounds only shortlist: the answer is the same exact one.
            assert_same(&s16.search(&queries, k, None).unwrap(), &want);
        }
    }

    #[test]
    fn bf16_bound_gemm_stays_within_its_allowance() {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        // Post-ReLU-like, offset; the compressed width and the full width of a dense searcher.
        for dim in [256, 1024] {
            let bank = Tensor::randn([2000, dim], opts).abs() * 3.0;
            let queries = Tensor::randn([200, dim], opts).abs() * 3.0;
            let s = Searcher::new(&bank, 1 << 20).unwrap();
            let Bounds::Compressed { basis, short_t } = &s.bounds else {
                panic!("Searcher::new compresses")
            };
            let qs = compress(&(&queries - &s.mean), basis).unwrap();
            for (q, m) in [(qs, short_t.tr()), (&queries - &s.mean, &bank - &s.mean)] {
                let m_sq = m.square().sum_dim_intlist(1, false, Kind::Float);
                let (q64, m64) = (q.to_kind(Kind::Double), m.to_kind(Kind::Double));
                // The f32 rows' bound in f64, against the one the bf16 GEMM gives.
                let want = m_sq.to_kind(Kind::Double).unsqueeze(0) - q64.mm(&m64.tr()) * 2.0;
                let got = bound_gemm(&q, &m.to_kind(Kind::BFloat16).tr().contiguous(), &m_sq)
                    .unwrap()
                    .to_kind(Kind::Double);
                let q_norm = q64.square().sum_dim_intlist(1, true, Kind::Double).sqrt();
                let allowance = (q_norm + s.max_norm).square() * BF16_SLACK;
                let worst = ((got - want).abs() / allowance).max().double_value(&[]);
                eprintln!(
                    "bf16 bound error, width {}: at most {worst:.3} of its allowance",
                    m.size()[1]
                );
                assert!(worst < 1.0, "bf16 bound error at {worst} of its allowance");
            }
        }
    }

    #[test]
    fn dense_search_equals_brute_force_on_far_queries() {
        tch::manual_seed(8);
        let opts = (Kind::Float, Device::Cpu);
        // Queries shifted away from a post-ReLU-like bank, as a drifted part's patches are.
        let bank = Tensor::randn([1200, 384], opts).abs() * 3.0;
        let queries = Tensor::randn([90, 384], opts).abs() * 3.0 + 4.0;
        let rsrc = Tensor::from_slice(&(0..1200).map(|i| i64::from(i >= 500)).collect::<Vec<_>>());
        let qsrc = Tensor::zeros([90], (Kind::Int64, Device::Cpu));
        let own = qsrc.unsqueeze(1).eq_tensor(&rsrc.unsqueeze(0));
        for bf16 in [false, true] {
            let mut s = Searcher::dense(&bank, 1 << 16).unwrap(); // small budget: many chunks
            if bf16 {
                s = s.with_bf16_bounds().unwrap();
            }
            for k in [1, 3] {
                assert_same(
                    &s.search(&queries, k, None).unwrap(),
                    &brute(&bank, &queries, k, None),
                );
                assert_same(
                    &s.search(&queries, k, Some((&qsrc, &rsrc))).unwrap(),
                    &brute(&bank, &queries, k, Some(&own)),
                );
            }
        }
    }

    #[test]
    fn loose_bounds_grow_the_shortlist_until_exact() {
        tch::manual_seed(6);
        let opts = (Kind::Float, Device::Cpu);
        // Isotropic 512-d data: 256 components keep half the variance, so bounds are weak.
        let bank = Tensor::randn([1500, 512], opts);
        let queries = Tensor::randn([40, 512], opts);
        let s = Searcher::new(&bank, 1 << 20).unwrap();
        assert_eq!(s.compressed_width(), MAX_COMPONENTS + 1);
        assert_same(
            &s.search(&queries, 2, None).unwrap(),
            &brute(&bank, &queries, 2, None),
        );
        // With exclusion: queries come from "image 0" = the first 700 rows.
        let rsrc = Tensor::from_slice(&(0..1500).map(|i| i64::from(i >= 700)).collect::<Vec<_>>());
        let qsrc = Tensor::zeros([40], (Kind::Int64, Device::Cpu));
        let own = qsrc.unsqueeze(1).eq_tensor(&rsrc.unsqueeze(0));
        assert_same(
            &s.search(&queries, 2, Some((&qsrc, &rsrc))).unwrap(),
            &brute(&bank, &queries, 2, Some(&own)),
        );
    }
}
