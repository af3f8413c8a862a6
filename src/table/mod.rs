//! The papers table: finding and checking it (and the jobs that name it), the pending papers and their partial index, the
//! claims of open Batch API jobs, the one write of vectors (shared by both paths) with its
//! isolation of refused rows and the record of failures, the watch triggers, similarity search
//! and the status figures.

pub mod claims;
pub mod failures;
pub mod hybrid;
pub mod job_store;
pub mod jobs;
pub mod pending;
pub mod pending_index;
pub mod rights;
pub mod search;
pub mod similarity;
pub mod status;
pub mod target;
pub mod watch;
pub mod write;
