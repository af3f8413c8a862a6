//! The query embeddings cache in shared memory (`embed_core::query_cache`), shared by every
//! session of the server; it exists only when the library is preloaded.

use std::sync::atomic::{AtomicBool, Ordering};

use embed_core::query_cache::{CacheKey, QueryCache};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::pg::clock::unix_now_ms;
use crate::settings::gucs;

/// Query vectors kept at once (768 kB of shared memory).
const ENTRIES: usize = 128;

#[derive(Clone, Copy, Default)]
pub struct Cache(QueryCache<ENTRIES>);

// SAFETY: plain data.
unsafe impl PGRXSharedMemory for Cache {}

static CACHE: PgLwLock<Cache> = unsafe { PgLwLock::new(c"doctrove_embed_query_cache") };
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; only from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(CACHE);
    AVAILABLE.store(true, Ordering::SeqCst);
}

fn ttl_ms() -> i64 {
    i64::from(gucs::QUERY_CACHE_TTL_S.get()) * 1000
}

/// The cached vector of `key`, if fresh (counted as a hit or a miss); none when the cache is
/// off (`query_cache_ttl_s = 0`) or absent.
pub fn lookup(key: &CacheKey) -> Option<Vec<f32>> {
    if !AVAILABLE.load(Ordering::SeqCst) || ttl_ms() <= 0 {
        return None;
    }
    CACHE.exclusive().0.get(key, unix_now_ms(), ttl_ms())
}

/// Keeps `vector` under `key`.
pub fn store(key: &CacheKey, vector: &[f32]) {
    if !AVAILABLE.load(Ordering::SeqCst) || ttl_ms() <= 0 {
        return;
    }
    CACHE.exclusive().0.put(key, vector, unix_now_ms());
}

/// Hits, misses and entries in use since the server started.
pub fn counts() -> (u64, u64, usize) {
    if !AVAILABLE.load(Ordering::SeqCst) {
        return (0, 0, 0);
    }
    let cache = CACHE.share();
    (cache.0.hits, cache.0.misses, cache.0.len())
}
