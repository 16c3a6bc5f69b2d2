//! The building block every backbone here is made of: a bias-free convolution followed by an
//! inference-mode BatchNorm, both registered under PyTorch's parameter names (`weight`, `bias`,
//! `running_mean`, `running_var`), returning errors instead of panicking, and foldable into one
//! biased convolution for inference.

use tch::{nn, TchError, Tensor};

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug)]
pub(super) enum Padding {
    /// PyTorch's `padding=p`: the same zeros on every side.
    Symmetric(i64),
    /// TensorFlow's "SAME": output size `ceil(input / stride)`, with the odd extra row/column at
    /// the bottom/right. Computed from each input's size, because padding fixed for one image
    /// size shifts every feature at another.
    TfSame,
}

/// A 2-D convolution without bias of its own (every conv here is followed by a BatchNorm).
#[derive(Debug)]
struct Conv2d {
    weight: Tensor,
    kernel: i64,
    stride: i64,
    padding: Padding,
    groups: i64,
}

/// Conv2d geometry.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvSpec {
    pub c_in: i64,
    pub c_out: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: Padding,
    pub groups: i64,
}

impl ConvSpec {
    /// PyTorch's `Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2)`.
    pub(super) fn torch(c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        ConvSpec {
            c_in,
            c_out,
            kernel,
            stride,
            padding: Padding::Symmetric(kernel / 2),
            groups: 1,
        }
    }

    /// TensorFlow's convolution with "SAME" padding, grouped (`groups = c_in` is depthwise).
    pub(super) fn tf_same(c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        ConvSpec {
            padding: Padding::TfSame,
            groups,
            ..ConvSpec::torch(c_in, c_out, kernel, stride)
        }
    }
}

impl Conv2d {
    /// Registers `<p>.weight` with shape `[c_out, c_in / groups, k, k]`, zero-filled: values come
    /// from a checkpoint or a seeded initialiser, so building consumes no random numbers.
    fn new(p: &nn::Path, spec: ConvSpec) -> Result<Self, TchError> {
        let shape = [
            spec.c_out,
            spec.c_in / spec.groups,
            spec.kernel,
            spec.kernel,
        ];
        Ok(Conv2d {
            weight: p.f_zeros("weight", &shape)?,
            kernel: spec.kernel,
            stride: spec.stride,
            padding: spec.padding,
            groups: spec.groups,
        })
    }

    /// `bias` is the folded BatchNorm's shift, if any.
    fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, TchError> {
        let (s, g) = (self.stride, self.groups);
        match self.padding {
            Padding::Symmetric(p) => x.f_conv2d(&self.weight, bias, [s, s], [p, p], [1, 1], g),
            Padding::TfSame => {
                let size = x.size();
                let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
                let (top, bottom) = same_padding(h, self.kernel, s);
                let (left, right) = same_padding(w, self.kernel, s);
                if top == bottom && left == right {
                    // Symmetric: let the convolution pad, saving a copy of the input.
                    x.f_conv2d(&self.weight, bias, [s, s], [top, left], [1, 1], g)
                } else {
                    x.f_constant_pad_nd([left, right, top, bottom])?.f_conv2d(
                        &self.weight,
                        bias,
                        [s, s],
                        [0, 0],
                        [1, 1],
                        g,
                    )
                }
            }
        }
    }
}

/// TensorFlow "SAME" padding `(before, after)` of one dimension of size `input`.
pub(super) fn same_padding(input: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let output = (input + stride - 1) / stride;
    let total = ((output - 1) * stride + kernel - input).max(0);
    (total / 2, total - total / 2)
}

/// BatchNorm with frozen statistics (eval mode): `(x - mean) / sqrt(var + eps) * weight + bias`.
/// The momentum of the original layers only matters in training, so it is not kept.
#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: f64,
}

impl BatchNorm {
    /// Registers the four tensors with an identity transform (PyTorch's fresh BatchNorm).
    fn new(p: &nn::Path, channels: i64, eps: f64) -> Result<Self, TchError> {
        Ok(BatchNorm {
            weight: p.f_ones("weight", &[channels])?,
            bias: p.f_zeros("bias", &[channels])?,
            running_mean: p.f_zeros_no_train("running_mean", &[channels])?,
            running_var: p.f_ones_no_train("running_var", &[channels])?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.0,
            self.eps,
            true,
        )
    }
}

/// A convolution and the BatchNorm after it, registered as `<conv>.weight` and `<bn>.*`.
#[derive(Debug)]
pub(super) struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
    /// The BatchNorm lives in the conv's weight and in `bn.bias` (see `fold`).
    folded: bool,
}

impl ConvBn {
    /// Convolution `<p>/<conv>` and its BatchNorm `<p>/<bn>`.
    pub(super) fn new(
        p: &nn::Path,
        (conv, bn): (&str, &str),
        spec: ConvSpec,
        eps: f64,
    ) -> Result<Self, TchError> {
        Ok(ConvBn {
            conv: Conv2d::new(&(p / conv), spec)?,
            bn: BatchNorm::new(&(p / bn), spec.c_out, eps)?,
            folded: false,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        if self.folded {
            self.conv.forward(x, Some(&self.bn.bias))
        } else {
            self.bn.forward(&self.conv.forward(x, None)?)
        }
    }

    /// Folds the BatchNorm into the convolution, in place: `w * s` and bias `beta - mean * s`
    /// with `s = gamma / sqrt(var + eps)`. Same function up to rounding, one pass less over
    /// every activation map. The weights then no longer equal the checkpoint's.
    pub(super) fn fold(&mut self) -> Result<(), TchError> {
        if self.folded {
            return Ok(());
        }
        let bn = &self.bn;
        tch::no_grad(|| {
            let scale = bn
                .weight
                .f_div(&bn.running_var.f_add_scalar(bn.eps)?.f_sqrt()?)?;
            let shift = bn.bias.f_sub(&bn.running_mean.f_mul(&scale)?)?;
            self.conv
                .weight
                .shallow_clone()
                .f_mul_(&scale.f_view([-1, 1, 1, 1])?)
                .map(drop)?;
            bn.bias.shallow_clone().f_copy_(&shift)
        })?;
        self.folded = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::same_padding;

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 2 on an even size pads only the bottom/right.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(225, 3, 2), (1, 1));
        assert_eq!(same_padding(28, 5, 2), (1, 2));
        assert_eq!(same_padding(29, 5, 2), (2, 2));
        // Stride 1 keeps the size with symmetric padding for odd kernels.
        assert_eq!(same_padding(17, 5, 1), (2, 2));
        assert_eq!(same_padding(17, 1, 1), (0, 0));
    }
}
