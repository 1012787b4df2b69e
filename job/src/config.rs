//! Job configuration: routine queues, comet call deadlines and retries, room
//! batching and room targets. Every field has a default, so an empty `[job]`
//! section works.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::JobError;

/// Fan-out settings of the job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Workers per comet, each with its own queue; a keyed push goes to the
    /// worker chosen by its first key, a room batch by its room, so each
    /// stays in order. Each worker has one call in flight, so a comet takes
    /// at most `routines` calls at a time from this job. Default 32 (goim
    /// `comet.routineSize`; docs/benchmark.md measures 8, 32 and 64).
    pub routines: usize,
    /// Capacity of each worker's queue. Default 1024 (goim `comet.routineChan`).
    pub routine_queue: usize,
    /// Most keyed pushes a worker sends in one call (rim's `PushMsgs`): the
    /// keyed pushes queued behind each other on a worker go out together,
    /// in order, without waiting for more (a quiet comet gets each push at
    /// once). 1 sends one goim `PushMsg` per push. A comet that does not
    /// serve `PushMsgs` (goim's) gets `PushMsg` per push anyway. Default 64.
    pub push_batch: usize,
    /// How long `dispatch` (and a room batcher) waits for room in a full
    /// queue before that comet's part fails. Bounds how long one slow comet
    /// delays the others (goim waits forever). Default 5s.
    #[serde(with = "humantime_serde")]
    pub enqueue_timeout: Duration,
    /// Deadline of one call to a comet. Default 5s (goim has none).
    #[serde(with = "humantime_serde")]
    pub push_timeout: Duration,
    /// Retries of a call that timed out or found the comet unavailable,
    /// after a 100 ms backoff that doubles each time. Default 3.
    pub retries: u32,
    /// How long `Job::shutdown` lets workers deliver what is queued before
    /// failing the rest. Default 5s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a keyed push for a comet the job does not know yet waits
    /// for it to be discovered (a comet that just started may hold sessions
    /// before the next discovery round). A comet still unknown after this is
    /// given up for `unknown_comet_wait * 10`: its pushes fail at once, counted
    /// as `unknown_comet`. Default 3s; 0 fails at once.
    #[serde(with = "humantime_serde")]
    pub unknown_comet_wait: Duration,
    /// Room batching.
    pub room: RoomConfig,
}

/// Room batching settings (goim `[room]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// Most messages in one batch. Default 64 (goim 20).
    pub batch: usize,
    /// How long a batch waits for more messages after its first one.
    /// Default 0s: a batch holds what is already queued and never waits,
    /// so a quiet room adds no latency. `1s` with `batch = 20` is goim's behaviour.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Capacity of each room's queue. Default 1024 (goim `2 * batch`).
    pub queue: usize,
    /// A room without messages for this long stops its batcher; the next
    /// message starts a new one. Default 15m.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// How long a batch waits for every comet's answer before the room's
    /// next batch goes out anyway (what arrives meanwhile coalesces). A comet
    /// that missed it is not waited for again until it answers, so a hung
    /// comet delays the room's other comets once, by at most this. Default 200ms.
    #[serde(with = "humantime_serde")]
    pub pace: Duration,
    /// Which comets a room batch goes to. `members` (the default): only the
    /// comets on record as holding members of the room (the router shards'
    /// room membership records, looked up for every batch), plus every
    /// comet whose online report is stale or missing, plus every comet when
    /// the lookup fails; needs the routers (`[[routers]]`), else every
    /// comet. `all`: every comet (goim's behaviour; needed while goim
    /// comets, which never announce their rooms, are among the comets).
    pub targets: RoomTargets,
    /// Deadline of one room membership lookup; a lookup that fails or runs
    /// out sends the batch to every comet. Default 1s.
    #[serde(with = "humantime_serde")]
    pub lookup_timeout: Duration,
}

/// Which comets a room batch goes to ([`RoomConfig::targets`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomTargets {
    /// The comets holding members of the room (and those job cannot rule out).
    #[default]
    Members,
    /// Every comet.
    All,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            routines: 32,
            routine_queue: 1024,
            push_batch: 64,
            enqueue_timeout: Duration::from_secs(5),
            push_timeout: Duration::from_secs(5),
            retries: 3,
            shutdown_grace: Duration::from_secs(5),
            unknown_comet_wait: Duration::from_secs(3),
            room: RoomConfig::default(),
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            batch: 64,
            window: Duration::ZERO,
            queue: 1024,
            idle: Duration::from_secs(15 * 60),
            pace: Duration::from_millis(200),
            targets: RoomTargets::Members,
            lookup_timeout: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), JobError> {
        let invalid = |m: &str| Err(JobError::Config(m.to_owned()));
        if self.routines == 0 {
            return invalid("routines must be at least 1");
        }
        if self.routine_queue == 0 {
            return invalid("routine_queue must be at least 1");
        }
        if self.push_batch == 0 {
            return invalid("push_batch must be at least 1");
        }
        if self.push_timeout.is_zero() {
            return invalid("push_timeout must be greater than 0");
        }
        if self.room.batch == 0 {
            return invalid("room.batch must be at least 1");
        }
        if self.room.queue == 0 {
            return invalid("room.queue must be at least 1");
        }
        if self.room.lookup_timeout.is_zero() {
            return invalid("room.lookup_timeout must be greater than 0");
        }
        Ok(())
    }

    /// The config with every value forced into its valid range, so that a
    /// config that skipped `validate` cannot make the job panic (a zero
    /// capacity channel does).
    pub(crate) fn clamped(mut self) -> Config {
        self.routines = self.routines.max(1);
        self.routine_queue = self.routine_queue.max(1);
        self.push_batch = self.push_batch.max(1);
        if self.push_timeout.is_zero() {
            self.push_timeout = Config::default().push_timeout;
        }
        self.room.batch = self.room.batch.max(1);
        self.room.queue = self.room.queue.max(1);
        if self.room.lookup_timeout.is_zero() {
            self.room.lookup_timeout = RoomConfig::default().lookup_timeout;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_is_the_default() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.routines, 32);
        assert_eq!(config.push_batch, 64);
        assert_eq!(config.room.batch, 64);
        assert_eq!(config.room.window, Duration::ZERO);
        config.validate().unwrap();
    }

    #[test]
    fn durations_are_human_readable() {
        let config: Config = toml::from_str(
            "push_timeout = \"250ms\"\n[room]\nbatch = 20\nwindow = \"1s\"\nidle = \"15m\"\n",
        )
        .unwrap();
        assert_eq!(config.push_timeout, Duration::from_millis(250));
        assert_eq!(config.room.batch, 20);
        assert_eq!(config.room.window, Duration::from_secs(1));
        assert_eq!(config.room.idle, Duration::from_secs(900));
    }

    #[test]
    fn room_targets_parse() {
        let config: Config = toml::from_str("[room]\ntargets = \"all\"\n").unwrap();
        assert_eq!(config.room.targets, RoomTargets::All);
        assert_eq!(Config::default().room.targets, RoomTargets::Members);
        assert!(toml::from_str::<Config>("[room]\ntargets = \"some\"\n").is_err());
        let zero: Config = toml::from_str("[room]\nlookup_timeout = \"0s\"\n").unwrap();
        assert!(zero.validate().is_err());
        assert_eq!(zero.clamped().room.lookup_timeout, Duration::from_secs(1));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<Config>("routineSize = 32").is_err());
        assert!(toml::from_str::<Config>("[room]\nsignal = \"1s\"").is_err());
    }

    #[test]
    fn zero_values_fail_validation_and_are_clamped() {
        let mut config = Config {
            routines: 0,
            ..Config::default()
        };
        assert!(matches!(config.validate(), Err(JobError::Config(_))));
        config.room.batch = 0;
        config.room.queue = 0;
        config.routine_queue = 0;
        config.push_batch = 0;
        config.push_timeout = Duration::ZERO;
        let clamped = config.clamped();
        clamped.validate().unwrap();
        assert_eq!(clamped.routines, 1);
    }
}
