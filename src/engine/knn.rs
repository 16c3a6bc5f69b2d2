//! Exact nearest-neighbour search of patch features against the memory bank (paper Eq. 6).
//!
//! The neighbour is found with the GEMM form `|x|^2 + |m|^2 - 2 x.m` on mean-centred data, in
//! chunks sized to a memory budget, then the winners' distances are recomputed directly as
//! `sum((x - m)^2)`: the GEMM form alone cancels badly when features share a large offset
//! (|x|^2 ~ 4e4 against distances ~ 10; see the reference README).
use tch::{Kind, Tensor};

/// Bytes the distance matrix of one chunk may take (the GEMM output dominates).
pub const DEFAULT_CHUNK_BYTES: usize = 256 << 20;

/// Bank rows prepared for repeated searching.
pub struct Searcher {
    /// `(K, D)` bank rows in f32, as stored.
    rows: Tensor,
    /// Rows minus their mean, in the search precision.
    centred: Tensor,
    mean: Tensor,
    centred_sq: Tensor,
    chunk_bytes: usize,
}

/// `k` nearest bank rows per query, nearest first.
pub struct Neighbours {
    /// `(M, k)` exact squared L2 distances.
    pub sq_dist: Tensor,
    /// `(M, k)` bank row indices.
    pub index: Tensor,
}

impl Searcher {
    /// `kind` is the GEMM precision (Float, or BFloat16 for speed); distances are always exact f32.
    pub fn new(rows: &Tensor, kind: Kind, chunk_bytes: usize) -> Self {
        let rows = rows.to_kind(Kind::Float);
        let mean = rows.mean_dim(0, true, Kind::Float);
        let centred32 = &rows - &mean;
        let centred_sq = centred32.square().sum_dim_intlist(1, false, Kind::Float);
        Self {
            centred: centred32.to_kind(kind),
            rows,
            mean,
            centred_sq,
            chunk_bytes,
        }
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

    /// Nearest `k` rows for each `(M, D)` query. `exclude = (query_source (M,), row_source (K,))`
    /// masks out the rows that came from the query's own image (leave-one-image-out calibration).
    pub fn search(
        &self,
        queries: &Tensor,
        k: i64,
        exclude: Option<(&Tensor, &Tensor)>,
    ) -> Neighbours {
        let queries = queries.to_kind(Kind::Float);
        let m = queries.size()[0];
        let bank = self.len();
        let k = k.min(bank);
        let per_row = (bank as usize * 4).max(1);
        let chunk = ((self.chunk_bytes / per_row).max(1) as i64).min(m.max(1));
        let mut dists = Vec::new();
        let mut idxs = Vec::new();
        // The GEMM only shortlists candidates (a bfloat16 one coarsely); exact f32 distances pick
        // among them, so near-ties the GEMM form gets wrong by cancellation still resolve exactly.
        let candidates = (4 * k).max(8).min(bank);
        let row_sq = self.centred_sq.to_kind(self.centred.kind()).unsqueeze(0);
        for start in (0..m).step_by(chunk as usize) {
            let len = chunk.min(m - start);
            let q = queries.narrow(0, start, len);
            let qc = (&q - &self.mean) * -2.0;
            // |m|^2 - 2 x.m ranks rows like the full distance (|x|^2 is constant per query row).
            let mut approx = row_sq.addmm(&qc.to_kind(self.centred.kind()), &self.centred.tr());
            if let Some((qsrc, rsrc)) = exclude {
                let own = qsrc
                    .narrow(0, start, len)
                    .unsqueeze(1)
                    .eq_tensor(&rsrc.unsqueeze(0));
                approx = approx.masked_fill(&own, f64::INFINITY);
            }
            let idx = approx.topk(candidates, 1, false, false).1;
            // Exact recomputation at the candidates: (len, candidates, D) differences.
            let winners = self
                .rows
                .index_select(0, &idx.view([-1]))
                .view([len, candidates, -1]);
            let exact = (q.unsqueeze(1) - winners)
                .square()
                .sum_dim_intlist(2, false, Kind::Float);
            let (exact, order) = exact.sort(1, false);
            dists.push(exact.narrow(1, 0, k));
            idxs.push(idx.gather(1, &order, false).narrow(1, 0, k));
        }
        Neighbours {
            sq_dist: Tensor::cat(&dists, 0),
            index: Tensor::cat(&idxs, 0),
        }
    }
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
        let s = Searcher::new(&bank, Kind::Float, 4096); // tiny budget: many chunks
        let n = s.search(&queries, 2, None);
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
    fn excluded_rows_are_never_chosen() {
        tch::manual_seed(4);
        let opts = (Kind::Float, Device::Cpu);
        let bank = Tensor::randn([50, 8], opts);
        let queries = bank.narrow(0, 0, 10);
        // Rows 0..10 come from "image 0", the rest from image 1; the queries are image 0's rows.
        let rsrc = Tensor::from_slice(&(0..50).map(|i| i64::from(i >= 10)).collect::<Vec<_>>());
        let qsrc = Tensor::zeros([10], (Kind::Int64, Device::Cpu));
        let n = Searcher::new(&bank, Kind::Float, 64).search(&queries, 1, Some((&qsrc, &rsrc)));
        let chosen: Vec<i64> = n.index.view([-1]).try_into().unwrap();
        assert!(chosen.iter().all(|&i| i >= 10));
        assert!(n.sq_dist.min().double_value(&[]) > 0.0);
    }
}
