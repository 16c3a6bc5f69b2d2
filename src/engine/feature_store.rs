//! Patch rows of a fit, streamed to an anonymous temporary file, so memory holds only the
//! coreset's 128-d projections however many training images there are; the selected rows and
//! each calibration image's rows are read back afterwards.
use super::host::to_host_f32;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use tch::{Device, Tensor};

pub struct FeatureStore {
    writer: BufWriter<File>,
    dim: usize,
    rows: usize,
}

impl FeatureStore {
    /// A store in the system temporary folder; the file disappears when the store is dropped.
    pub fn new(dim: usize) -> std::io::Result<Self> {
        Ok(Self {
            writer: BufWriter::with_capacity(8 << 20, tempfile::tempfile()?),
            dim,
            rows: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends `(M, dim)` rows (any device; copied to the host as f32).
    pub fn append(&mut self, rows: &Tensor) -> std::io::Result<()> {
        let host = to_host_f32(rows).map_err(std::io::Error::other)?;
        let bytes: Vec<u8> = host.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.writer.write_all(&bytes)?;
        self.rows += host.len() / self.dim;
        Ok(())
    }

    fn row_bytes(&self) -> usize {
        self.dim * 4
    }

    fn decode(&self, bytes: &[u8], n: usize, device: Device) -> std::io::Result<Tensor> {
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (|| {
            Tensor::f_from_slice(&v)?
                .f_view([n as i64, self.dim as i64])?
                .f_to_device(device)
        })()
        .map_err(std::io::Error::other)
    }

    /// Rows `start..start + n` as a `(n, dim)` tensor on `device`.
    pub fn read_range(
        &mut self,
        start: usize,
        n: usize,
        device: Device,
    ) -> std::io::Result<Tensor> {
        self.writer.flush()?;
        let mut bytes = vec![0u8; n * self.row_bytes()];
        self.writer
            .get_ref()
            .read_exact_at(&mut bytes, (start * self.row_bytes()) as u64)?;
        self.decode(&bytes, n, device)
    }

    /// The given rows, in the given order, as a `(len, dim)` tensor on `device`.
    pub fn gather(&mut self, index: &[i64], device: Device) -> std::io::Result<Tensor> {
        self.writer.flush()?;
        let rb = self.row_bytes();
        let mut bytes = vec![0u8; index.len() * rb];
        for (slot, &i) in bytes.chunks_exact_mut(rb).zip(index) {
            self.writer
                .get_ref()
                .read_exact_at(slot, i as u64 * rb as u64)?;
        }
        self.decode(&bytes, index.len(), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn rows_come_back_bit_for_bit() {
        tch::manual_seed(1);
        let a = Tensor::randn([5, 7], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([3, 7], (Kind::Float, Device::Cpu));
        let mut store = FeatureStore::new(7).unwrap();
        store.append(&a).unwrap();
        store.append(&b).unwrap();
        assert_eq!(store.len(), 8);
        assert!(store.read_range(5, 3, Device::Cpu).unwrap().equal(&b));
        let picked = store.gather(&[6, 0, 4], Device::Cpu).unwrap();
        let want = Tensor::cat(
            &[
                b.get(1).unsqueeze(0),
                a.get(0).unsqueeze(0),
                a.get(4).unsqueeze(0),
            ],
            0,
        );
        assert!(picked.equal(&want));
    }
}
