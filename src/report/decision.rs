//! The accept/reject rule, shared by `predict`, `eval` and the operator app.

/// Accept or reject: an image is rejected when its score is strictly above the threshold
/// (the calibrated threshold is the worst good training score, which must still pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
}

impl Decision {
    pub fn of(score: f32, threshold: f32) -> Decision {
        if score > threshold {
            Decision::Reject
        } else {
            Decision::Accept
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Reject => "reject",
        }
    }
}
