//! The background workers: the launcher that starts them in each database, the live loop every
//! worker runs, its turns among the jobs, and each database's first worker's Batch API duty.

pub mod batch_api_duty;
pub mod job_turns;
pub mod launcher;
pub mod signals;
pub mod worker;
