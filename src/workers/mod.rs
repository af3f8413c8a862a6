//! The background workers: the live loop of every worker, and worker 0's Batch API duty.

pub mod worker;
pub mod batch_api_duty;
