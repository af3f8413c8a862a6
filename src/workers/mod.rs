//! The background workers: the live loop every worker runs, and worker 0's Batch API duty.

pub mod batch_api_duty;
pub mod worker;
