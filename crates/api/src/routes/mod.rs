//! Route handlers, one module per area.

pub mod clients;
pub mod me;
pub mod ops;
pub mod pushes;
