//! devices (being built).

use crate::api::Endpoint;

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    Vec::new()
}
