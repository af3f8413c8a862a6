//! The papers table: finding and checking it, the pending papers' partial index, the write of
//! vectors with its isolation of refused rows, rejected papers, the watch triggers, and similarity
//! search.

pub mod target;
pub mod pending_index;
pub mod write;
pub mod failures;
pub mod watch;
pub mod similarity;
