//! Server counters, gauges and histograms in Prometheus's text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

const TTFT_BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const TPS_BOUNDS: &[f64] = &[1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// What `/metrics` reports; shared by the HTTP side and the engine thread.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    cancelled: AtomicU64,
    slots_busy: AtomicU64,
    ttft: Mutex<Histogram>,
    tokens_per_second: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            slots_busy: AtomicU64::new(0),
            ttft: Mutex::new(Histogram::new(TTFT_BOUNDS)),
            tokens_per_second: Mutex::new(Histogram::new(TPS_BOUNDS)),
        }
    }
}

/// Gauges read at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub queue_depth: usize,
    pub slots_total: usize,
}

impl Metrics {
    pub fn request(&self, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_default() += 1;
    }

    pub fn prompt(&self, n: usize) {
        self.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn generated(&self) {
        self.generated_tokens.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn slot_taken(&self) {
        self.slots_busy.fetch_add(1, Ordering::Relaxed);
    }

    pub fn slot_freed(&self) {
        let _ = self
            .slots_busy
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Every slot is free again (the engine dropped what was in flight).
    pub fn slots_cleared(&self) {
        self.slots_busy.store(0, Ordering::Relaxed);
    }

    pub fn first_token(&self, secs: f64) {
        self.ttft
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(secs);
    }

    pub fn finished(&self, tokens_per_second: f64) {
        self.tokens_per_second
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(tokens_per_second);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP edge_requests_total HTTP requests answered, by status code.\n# TYPE edge_requests_total counter"
        );
        for (status, n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "edge_requests_total{{status=\"{status}\"}} {n}");
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "edge_prompt_tokens_total",
            "Prompt tokens of requests that started.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "edge_generated_tokens_total",
            "Tokens generated.",
            self.generated_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "edge_requests_cancelled_total",
            "Generations stopped because the client went away.",
            self.cancelled.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "edge_queue_depth",
            "Requests waiting for a slot.",
            g.queue_depth as u64,
        );
        gauge(
            &mut out,
            "edge_slots_busy",
            "Slots generating.",
            self.slots_busy.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "edge_slots_total",
            "Slots (--parallel).",
            g.slots_total as u64,
        );
        self.ttft.lock().unwrap_or_else(|e| e.into_inner()).render(
            &mut out,
            "edge_time_to_first_token_seconds",
            "Seconds from a request's arrival to its first generated token.",
        );
        self.tokens_per_second
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(
                &mut out,
                "edge_generation_tokens_per_second",
                "Generated tokens per second of each finished request, after its first token.",
            );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request(200);
        m.request(200);
        m.request(400);
        m.prompt(12);
        m.generated();
        m.slot_taken();
        m.first_token(0.3);
        m.finished(42.0);
        let text = m.render(Gauges {
            queue_depth: 2,
            slots_total: 4,
        });
        for line in [
            "edge_requests_total{status=\"200\"} 2",
            "edge_requests_total{status=\"400\"} 1",
            "edge_prompt_tokens_total 12",
            "edge_generated_tokens_total 1",
            "edge_queue_depth 2",
            "edge_slots_busy 1",
            "edge_slots_total 4",
            "edge_time_to_first_token_seconds_bucket{le=\"0.25\"} 0",
            "edge_time_to_first_token_seconds_bucket{le=\"0.5\"} 1",
            "edge_time_to_first_token_seconds_count 1",
            "edge_generation_tokens_per_second_bucket{le=\"50\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        m.slot_freed();
        m.slot_freed();
        assert!(m
            .render(Gauges {
                queue_depth: 0,
                slots_total: 4
            })
            .contains("edge_slots_busy 0"));
    }
}
