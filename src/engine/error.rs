//! The engine's one error type: everything a fit or an inspection can fail with, each naming
//! its cause (a file, a setting, libtorch's message).
use crate::backbone::BackboneError;
use crate::bank::{BankError, FieldError};
use crate::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("invalid setting: {0}")]
    Setting(#[from] FieldError),
    #[error("{0}")]
    Config(String),
}
