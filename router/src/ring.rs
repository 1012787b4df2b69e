//! The consistent-hash ring over router shards (hashring), with virtual nodes
//! so that adding or removing a shard moves only that shard's share of users.

use std::hash::Hash;

use hashring::HashRing;

/// Virtual points per shard; more points spread users more evenly.
const VNODES: u32 = 160;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VNode {
    shard: String,
    point: u32,
}

/// A consistent-hash ring of shard names.
#[derive(Debug, Clone)]
pub struct Ring {
    ring: HashRing<VNode>,
    shards: Vec<String>,
}

impl Ring {
    /// A ring over the given shard names.
    pub fn new<I, S>(shards: I) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ring = Ring {
            ring: HashRing::new(),
            shards: Vec::new(),
        };
        for shard in shards {
            ring.add(shard.into());
        }
        ring
    }

    /// Adds a shard (no-op if present).
    pub fn add(&mut self, shard: String) {
        if self.shards.contains(&shard) {
            return;
        }
        for point in 0..VNODES {
            self.ring.add(VNode {
                shard: shard.clone(),
                point,
            });
        }
        self.shards.push(shard);
    }

    /// Removes a shard (no-op if absent).
    pub fn remove(&mut self, shard: &str) {
        if !self.shards.iter().any(|s| s == shard) {
            return;
        }
        for point in 0..VNODES {
            self.ring.remove(&VNode {
                shard: shard.to_owned(),
                point,
            });
        }
        self.shards.retain(|s| s != shard);
    }

    /// The shard that owns `item` (a mid or a key), or `None` on an empty ring.
    pub fn shard_of<T: Hash>(&self, item: &T) -> Option<&str> {
        self.ring.get(item).map(|v| v.shard.as_str())
    }

    /// The shard names, in insertion order.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spreads_users_over_shards() {
        let ring = Ring::new(["a", "b", "c"]);
        let mut counts = std::collections::HashMap::new();
        for mid in 0i64..30_000 {
            *counts
                .entry(ring.shard_of(&mid).unwrap().to_owned())
                .or_insert(0) += 1;
        }
        for shard in ["a", "b", "c"] {
            let n = counts[shard];
            assert!(
                (6_000..14_000).contains(&n),
                "shard {shard} got {n} of 30000"
            );
        }
    }

    proptest! {
        #[test]
        fn adding_a_shard_moves_only_users_to_it(
            n in 1usize..6,
            mids in proptest::collection::vec(any::<i64>(), 1..400),
        ) {
            let names: Vec<String> = (0..n).map(|i| format!("router-{i}")).collect();
            let before = Ring::new(names.clone());
            let mut after = before.clone();
            after.add("router-new".to_owned());
            for mid in &mids {
                let old = before.shard_of(mid).unwrap();
                let new = after.shard_of(mid).unwrap();
                prop_assert!(new == old || new == "router-new", "mid {mid} moved {old} -> {new}");
            }
        }

        #[test]
        fn removing_a_shard_moves_only_its_users(
            n in 2usize..6,
            victim in 0usize..6,
            keys in proptest::collection::vec("[a-z0-9-]{1,24}", 1..400),
        ) {
            let names: Vec<String> = (0..n).map(|i| format!("router-{i}")).collect();
            let victim = names[victim % n].clone();
            let before = Ring::new(names.clone());
            let mut after = before.clone();
            after.remove(&victim);
            for key in &keys {
                let old = before.shard_of(key).unwrap();
                let new = after.shard_of(key).unwrap();
                if old != victim {
                    prop_assert_eq!(old, new);
                }
                prop_assert!(new != victim);
            }
        }
    }
}
