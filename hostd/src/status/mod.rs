//! What the node reports: a snapshot model, and its read-only HTTP views.

pub mod html;
pub mod http;
pub mod metrics;
pub mod model;

pub use model::{ApplyHistogram, ResourceState, ResourceStatus, Status, StatusHandle};
