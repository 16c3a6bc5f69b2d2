//! The decision vocabulary, shared by `predict`, `eval` and the operator app.

/// Accept, review (a person decides) or reject, as `decide::Rules::decide` rules: a score
/// strictly above a threshold crosses it (the calibrated threshold is the worst good training
/// score, which must still pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accept,
    Review,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Review => "review",
            Decision::Reject => "reject",
        }
    }
}
