//! A metrics recorder that keeps counters and histograms in memory, for
//! tests that check what a component counted.
//!
//! Install it with `metrics::set_default_local_recorder(&recorder)` in a
//! current-thread test, so that every task of the test reports to it, and
//! read values by key: the metric name, followed by its labels sorted by name
//! as `{k=v,...}` when it has any, e.g. `rim_job_dropped_total{reason=no_comets}`.
//! Gauges are not recorded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ::metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Counters and histograms recorded in memory.
#[derive(Default)]
pub struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

impl TestRecorder {
    /// A counter's value (0 if it was never registered).
    pub fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A histogram's recorded values, in the order recorded (none if it was
    /// never registered).
    pub fn samples(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(key)
            .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
    }
}

/// One histogram's values.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// `name{k=v,...}` with the labels sorted, or `name` without labels.
fn key_string(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        return key.name().to_owned();
    }
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let counter = self
            .counters
            .lock()
            .unwrap()
            .entry(key_string(key))
            .or_default()
            .clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let samples = self
            .histograms
            .lock()
            .unwrap()
            .entry(key_string(key))
            .or_default()
            .clone();
        Histogram::from_arc(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::TestRecorder;

    #[test]
    fn counters_and_histograms_are_read_by_name_and_sorted_labels() {
        let recorder = TestRecorder::default();
        ::metrics::with_local_recorder(&recorder, || {
            ::metrics::counter!("hits", "z" => "1", "a" => "2").increment(3);
            ::metrics::counter!("plain").increment(1);
            ::metrics::histogram!("seconds").record(0.5);
            ::metrics::histogram!("seconds").record(1.5);
        });
        assert_eq!(recorder.counter("hits{a=2,z=1}"), 3);
        assert_eq!(recorder.counter("hits{z=1,a=2}"), 0);
        assert_eq!(recorder.counter("plain"), 1);
        assert_eq!(recorder.counter("never"), 0);
        assert_eq!(recorder.samples("seconds"), [0.5, 1.5]);
        assert!(recorder.samples("never").is_empty());
    }
}
