//! The decision rules beyond one score: the region of interest, defect regions of the anomaly
//! map, and the accept / review / reject bands. Plain data (no libtorch), so the engine, the CLI
//! and the app decide the same way from the same numbers.
mod regions;
mod roi;
mod rules;

pub use regions::{find_regions, Region, RegionSummary};
pub use roi::{content_cells, grid_mask, inspected, Roi, RoiError};
pub use rules::Rules;
