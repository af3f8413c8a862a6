//! The background workers: the live loop every worker runs, its turns among the jobs, and
//! worker 0's Batch API duty.

pub mod batch_api_duty;
pub mod job_turns;
pub mod worker;
