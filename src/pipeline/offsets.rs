//! Bookkeeping of committable Kafka offsets: only those whose writes every backend has
//! made durable. Pure code, no Kafka client.

use std::collections::{BTreeMap, HashMap};

/// `(topic, partition)` to the next offset to consume.
pub type Positions = HashMap<(String, i32), i64>;

/// Sequence numbers of sealed batches and the consumer positions after each.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    batches: BTreeMap<u64, Positions>,
    done: HashMap<&'static str, u64>,
    backends: Vec<&'static str>,
}

impl OffsetTracker {
    pub fn new(backends: &[&'static str]) -> Self {
        Self {
            batches: BTreeMap::new(),
            done: HashMap::new(),
            backends: backends.to_vec(),
        }
    }

    /// Records the positions reached by batch `sequence` (sequences increase by one).
    pub fn seal(&mut self, sequence: u64, positions: Positions) {
        self.batches.insert(sequence, positions);
    }

    /// Records that `backend` has made every batch up to `sequence` durable and returns
    /// the positions that became committable, merged over the released batches.
    pub fn acknowledge(&mut self, backend: &'static str, sequence: u64) -> Option<Positions> {
        let entry = self.done.entry(backend).or_insert(0);
        *entry = (*entry).max(sequence);
        let durable = self
            .backends
            .iter()
            .map(|name| self.done.get(name).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        let released: Vec<u64> = self
            .batches
            .range(..=durable)
            .map(|(seq, _)| *seq)
            .collect();
        if released.is_empty() {
            return None;
        }
        let mut merged = Positions::new();
        for sequence in released {
            if let Some(positions) = self.batches.remove(&sequence) {
                for (key, offset) in positions {
                    let current = merged.entry(key).or_insert(offset);
                    *current = (*current).max(offset);
                }
            }
        }
        Some(merged)
    }

    /// Batches sealed but not yet durable in every backend.
    pub fn outstanding(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(offset: i64) -> Positions {
        Positions::from([(("t".to_owned(), 0), offset)])
    }

    #[test]
    fn commit_waits_for_every_backend() {
        let mut tracker = OffsetTracker::new(&["postgres", "consul"]);
        tracker.seal(1, positions(10));
        tracker.seal(2, positions(20));
        assert_eq!(tracker.acknowledge("consul", 2), None);
        let released = tracker
            .acknowledge("postgres", 1)
            .expect("batch 1 released");
        assert_eq!(released[&("t".to_owned(), 0)], 10);
        assert_eq!(tracker.outstanding(), 1);
        let released = tracker
            .acknowledge("postgres", 2)
            .expect("batch 2 released");
        assert_eq!(released[&("t".to_owned(), 0)], 20);
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn lagging_backend_holds_commits() {
        let mut tracker = OffsetTracker::new(&["postgres", "consul"]);
        for sequence in 1..=5 {
            tracker.seal(sequence, positions(sequence as i64 * 10));
            assert_eq!(tracker.acknowledge("consul", sequence), None);
        }
        assert_eq!(tracker.outstanding(), 5);
        let released = tracker.acknowledge("postgres", 5).expect("all released");
        assert_eq!(released[&("t".to_owned(), 0)], 50);
    }
}
