//! Every `doctrove_embed.*` setting, the API key setting that shows a stand-in, and the guard
//! that keeps the key out of catalogs every role can read.

pub mod api_key;
pub mod guc_memory;
pub mod gucs;
pub mod secret_guard;
