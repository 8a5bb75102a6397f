//! Control file (stub; being written).

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control file damaged")]
    Damaged,
}
