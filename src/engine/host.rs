//! Tensors copied into host buffers, the one conversion the fit's streaming, coreset and bank
//! saving all need.
use tch::{Device, Kind, TchError, Tensor};

/// All elements of `t` (any device and float kind) as a flat row-major `Vec<f32>` on the host.
pub fn to_host_f32(t: &Tensor) -> Result<Vec<f32>, TchError> {
    t.f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_view([-1])?
        .try_into()
}
