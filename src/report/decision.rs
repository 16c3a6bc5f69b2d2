//! The decision vocabulary, shared by `predict`, `eval` and the operator app.

/// Accept, review (a person decides) or reject. With one threshold (`Decision::of`) an image is
/// rejected when its score is strictly above it (the calibrated threshold is the worst good
/// training score, which must still pass); the bank's rules add the review band between two
/// thresholds (`decide::Rules::decide`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accept,
    Review,
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
            Decision::Review => "review",
            Decision::Reject => "reject",
        }
    }
}
