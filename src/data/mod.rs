//! Images and datasets: decoding, PIL-exact resizing, dataset layouts, the synthetic generator.
//! Nothing here touches libtorch: the GUI thread uses these directly.
mod geometry;

pub mod dataset;
pub mod defects;
mod error;
pub mod image;
pub mod preprocess;
pub mod resize;
pub mod synthetic;
pub mod synthetic_long;
pub mod working;

pub use dataset::{is_image_path, list_images, open, Dataset, TestSample};
pub use error::DataError;
pub use geometry::Geometry;
pub use image::{
    decode_limits, image_size, load_luma8, load_rgb8, set_decode_limits, DecodeLimits,
};
pub use preprocess::{load_mask, preprocess, to_chw_f32, CropMode, WHOLE_ALIGN};
pub use resize::{resize_bilinear_pil, resize_bilinear_pil_gray};
pub use synthetic::{generate, SyntheticSpec};
