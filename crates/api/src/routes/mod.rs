//! Route handlers, one module per area.

pub mod badges;
pub mod channels;
pub mod clients;
pub mod experiments;
pub mod imkit;
pub mod me;
pub mod ops;
pub mod prefs;
pub mod pushes;
pub mod webpush;
