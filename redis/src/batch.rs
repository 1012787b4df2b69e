//! [`Batch`]: commands on keys of different slots, run together.

use std::collections::HashMap;
use std::time::Duration;

use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline};

/// Commands to run together, each with the key that routes it. On one Redis
/// they go as one pipeline; on a cluster as one pipeline per slot, run
/// concurrently. Either way the answers come back in the order the commands
/// were pushed, and the commands of one slot run in that order. Not atomic
/// (use `MULTI` or a script within one slot for that), and every command
/// must allow a repeat: on a cluster a slot's pipeline is sent again after a
/// redirection or a lost connection.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) pipe: Pipeline,
    pub(crate) slots: Vec<Slot>,
    /// Replicas that must hold the batch's writes, and how long to wait.
    pub(crate) replicas: Option<(u32, Duration)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds `cmd`, routed by `key` (its slot: the key's hash tag, or the
    /// whole key without one).
    pub fn push(&mut self, key: impl AsRef<[u8]>, cmd: Cmd) -> &mut Batch {
        self.slots.push(Slot::for_key(key));
        self.pipe.add_command(cmd);
        self
    }

    /// Answers only once `replicas` replicas of each master it wrote to
    /// hold its writes: a `WAIT replicas timeout` ends each pipeline (on the
    /// same connection, so it covers the writes before it), and a batch that
    /// fewer replicas acknowledged within `timeout` fails. 0: no `WAIT`.
    pub fn wait_replicas(&mut self, replicas: u32, timeout: Duration) -> &mut Batch {
        self.replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The commands grouped by slot, each group in push order, with the
    /// position of each command in the batch.
    pub(crate) fn by_slot(&self) -> Vec<(Vec<usize>, Pipeline)> {
        let mut index: HashMap<Slot, usize> = HashMap::new();
        let mut groups: Vec<(Vec<usize>, Pipeline)> = Vec::new();
        for (at, (slot, cmd)) in self.slots.iter().zip(self.pipe.cmd_iter()).enumerate() {
            let group = *index.entry(*slot).or_insert_with(|| {
                groups.push((Vec::new(), redis::pipe()));
                groups.len() - 1
            });
            let (positions, pipe) = &mut groups[group];
            positions.push(at);
            pipe.add_command(cmd.clone());
        }
        if let Some((replicas, timeout)) = self.replicas {
            for (_, pipe) in &mut groups {
                pipe.add_command(wait_cmd(replicas, timeout));
            }
        }
        groups
    }

    /// The whole batch as one pipeline (one node), `WAIT` included.
    pub(crate) fn pipeline(&self) -> Pipeline {
        let mut pipe = self.pipe.clone();
        if let Some((replicas, timeout)) = self.replicas {
            pipe.add_command(wait_cmd(replicas, timeout));
        }
        pipe
    }
}

/// `WAIT replicas timeout-ms`.
pub(crate) fn wait_cmd(replicas: u32, timeout: Duration) -> Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(replicas).arg(
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
    );
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_group_by_the_hash_tag_and_keep_their_order() {
        let mut batch = Batch::new();
        for key in ["{1}:a", "{2}:a", "{1}:b", "x", "{2}:b", "{1}:c"] {
            batch.push(key, redis::cmd("GET").arg(key).clone());
        }
        assert_eq!(batch.len(), 6);
        let groups: Vec<Vec<usize>> = batch.by_slot().into_iter().map(|(p, _)| p).collect();
        assert_eq!(groups, [vec![0, 2, 5], vec![1, 4], vec![3]]);
        let (_, pipe) = &batch.by_slot()[0];
        let keys: Vec<Vec<u8>> = pipe
            .cmd_iter()
            .map(|cmd| match cmd.args_iter().nth(1) {
                Some(redis::Arg::Simple(bytes)) => bytes.to_vec(),
                other => panic!("no key: {other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [b"{1}:a".to_vec(), b"{1}:b".to_vec(), b"{1}:c".to_vec()]
        );
    }
}
