//! The server-wide cache of query embeddings: a repeated search text makes no API call while its
//! vector is fresh. Entries are keyed by a SHA-256 of everything that makes the vector (the
//! endpoints, the model, the dimensions and the text as sent), live for a time to live, and the
//! least recently used gives way to a new one. Fixed-size plain data, so it can live in shared
//! memory; vectors longer than [`MAX_CACHED_DIMS`] are not kept.

use sha2::{Digest, Sha256};

/// Longest vector kept (text-embedding-3-small's 1536 and every local model's).
pub const MAX_CACHED_DIMS: usize = 1536;

/// What makes a cached vector: the hash of its endpoints, model, dimensions and text.
pub type CacheKey = [u8; 32];

/// The key of a query: `endpoints` (their names and URLs, in order), `model`, `dimensions` (0:
/// the model's own) and the text as sent.
pub fn cache_key(endpoints: &[&str], model: &str, dimensions: u32, text: &str) -> CacheKey {
    let mut hash = Sha256::new();
    for part in endpoints.iter().copied().chain([model, &dimensions.to_string(), text]) {
        // Each part's length first, so no two lists of parts hash the same.
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[derive(Clone, Copy)]
struct Entry {
    key: CacheKey,
    /// 0: the entry is free.
    dims: u16,
    stored_ms: i64,
    used_ms: i64,
    vector: [f32; MAX_CACHED_DIMS],
}

impl Entry {
    const EMPTY: Entry = Entry {
        key: [0; 32],
        dims: 0,
        stored_ms: 0,
        used_ms: 0,
        vector: [0.0; MAX_CACHED_DIMS],
    };
}

/// The cache: `N` entries and its hit and miss counts.
#[derive(Clone, Copy)]
pub struct QueryCache<const N: usize> {
    entries: [Entry; N],
    pub hits: u64,
    pub misses: u64,
}

impl<const N: usize> Default for QueryCache<N> {
    fn default() -> Self {
        QueryCache {
            entries: [Entry::EMPTY; N],
            hits: 0,
            misses: 0,
        }
    }
}

impl<const N: usize> QueryCache<N> {
    /// The vector of `key` if it was stored less than `ttl_ms` ago; counts a hit or a miss.
    pub fn get(&mut self, key: &CacheKey, now_ms: i64, ttl_ms: i64) -> Option<Vec<f32>> {
        let found = self
            .entries
            .iter_mut()
            .find(|e| e.dims > 0 && &e.key == key && now_ms - e.stored_ms < ttl_ms);
        match found {
            Some(entry) => {
                entry.used_ms = now_ms;
                self.hits += 1;
                Some(entry.vector[..entry.dims as usize].to_vec())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps `vector` under `key`, in place of the same key's, a free entry, or the least
    /// recently used one; a vector longer than [`MAX_CACHED_DIMS`] (or empty) is not kept.
    pub fn put(&mut self, key: &CacheKey, vector: &[f32], now_ms: i64) {
        if vector.is_empty() || vector.len() > MAX_CACHED_DIMS {
            return;
        }
        let index = self
            .entries
            .iter()
            .position(|e| e.dims > 0 && &e.key == key)
            .or_else(|| self.entries.iter().position(|e| e.dims == 0))
            .or_else(|| (0..N).min_by_key(|&i| self.entries[i].used_ms));
        let Some(index) = index else { return };
        let entry = &mut self.entries[index];
        entry.key = *key;
        entry.dims = vector.len() as u16;
        entry.stored_ms = now_ms;
        entry.used_ms = now_ms;
        entry.vector[..vector.len()].copy_from_slice(vector);
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.dims > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_vector_is_found_until_its_time_is_up() {
        let mut cache = QueryCache::<4>::default();
        let key = cache_key(&["default"], "m", 0, "graph neural networks");
        assert_eq!(cache.get(&key, 0, 1000), None);
        cache.put(&key, &[1.0, 2.0], 10);
        assert_eq!(cache.get(&key, 500, 1000), Some(vec![1.0, 2.0]));
        assert_eq!(cache.get(&key, 1010, 1000), None);
        assert_eq!((cache.hits, cache.misses), (1, 2));
    }

    #[test]
    fn everything_that_makes_the_vector_is_in_the_key() {
        let base = cache_key(&["a"], "m", 0, "t");
        assert_ne!(base, cache_key(&["b"], "m", 0, "t"));
        assert_ne!(base, cache_key(&["a"], "n", 0, "t"));
        assert_ne!(base, cache_key(&["a"], "m", 8, "t"));
        assert_ne!(base, cache_key(&["a"], "m", 0, "u"));
        assert_ne!(cache_key(&["ab", "c"], "m", 0, "t"), cache_key(&["a", "bc"], "m", 0, "t"));
    }

    #[test]
    fn the_least_recently_used_gives_way() {
        let mut cache = QueryCache::<2>::default();
        let (a, b, c) = (
            cache_key(&[], "m", 0, "a"),
            cache_key(&[], "m", 0, "b"),
            cache_key(&[], "m", 0, "c"),
        );
        cache.put(&a, &[1.0], 1);
        cache.put(&b, &[2.0], 2);
        assert!(cache.get(&a, 3, 100).is_some());
        cache.put(&c, &[3.0], 4);
        assert!(cache.get(&b, 5, 100).is_none(), "b was the least recently used");
        assert_eq!(cache.get(&a, 5, 100), Some(vec![1.0]));
        assert_eq!(cache.get(&c, 5, 100), Some(vec![3.0]));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn long_vectors_are_not_kept() {
        let mut cache = QueryCache::<2>::default();
        let key = cache_key(&[], "m", 3072, "t");
        cache.put(&key, &vec![0.5; MAX_CACHED_DIMS + 1], 1);
        assert!(cache.is_empty());
    }
}
