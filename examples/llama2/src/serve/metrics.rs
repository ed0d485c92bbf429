//! The server's Prometheus metrics (`GET /metrics`): throughput, queue depth, active
//! sequences, time to first token, and requests by outcome.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

/// How a request ended, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Generation finished (a stop, the end-of-sequence token or the length limit).
    Completed,
    /// Refused before queueing (bad input).
    Invalid,
    /// Refused because the queue was full.
    Rejected,
    /// The client went away first.
    Cancelled,
    /// The server failed it (a device error, or shutdown).
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Invalid => "invalid",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }
}

/// Every metric, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<Vec<(String, String)>, Counter>,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    /// Generated tokens per second over the last window of at least a second.
    pub tokens_per_second: Gauge<f64, AtomicU64>,
    pub queue_depth: Gauge,
    pub active_sequences: Gauge,
    /// Seconds from a request's arrival to its first generated token.
    pub time_to_first_token: Histogram,
    /// Rows per batched step.
    pub step_rows: Histogram,
    window: Mutex<(Instant, u64)>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let prompt_tokens = Counter::default();
        let generated_tokens = Counter::default();
        let tokens_per_second = Gauge::<f64, AtomicU64>::default();
        let queue_depth = Gauge::default();
        let active_sequences = Gauge::default();
        let time_to_first_token = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let step_rows = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register("greta_requests", "Requests by outcome", requests.clone());
        registry.register(
            "greta_prompt_tokens",
            "Prompt tokens processed",
            prompt_tokens.clone(),
        );
        registry.register(
            "greta_generated_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        registry.register(
            "greta_generation_tokens_per_second",
            "Tokens generated per second, over the last second or more",
            tokens_per_second.clone(),
        );
        registry.register(
            "greta_queue_depth",
            "Requests waiting for a sequence slot",
            queue_depth.clone(),
        );
        registry.register(
            "greta_active_sequences",
            "Sequences in the batch",
            active_sequences.clone(),
        );
        registry.register(
            "greta_time_to_first_token_seconds",
            "From a request's arrival to its first generated token",
            time_to_first_token.clone(),
        );
        registry.register(
            "greta_step_rows",
            "Rows (tokens of all sequences) per batched step",
            step_rows.clone(),
        );
        Metrics {
            registry,
            requests,
            prompt_tokens,
            generated_tokens,
            tokens_per_second,
            queue_depth,
            active_sequences,
            time_to_first_token,
            step_rows,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Counts a request's outcome.
    pub fn count(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&vec![("outcome".to_string(), outcome.label().to_string())])
            .inc();
    }

    /// Counts `n` generated tokens and refreshes the throughput gauge once a second.
    pub fn generated(&self, n: u64) {
        self.generated_tokens.inc_by(n);
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let total = self.generated_tokens.get();
        let elapsed = w.0.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            self.tokens_per_second.set((total - w.1) as f64 / elapsed);
            *w = (Instant::now(), total);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        // An idle server's throughput decays to 0 instead of keeping its last value.
        self.generated(0);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
