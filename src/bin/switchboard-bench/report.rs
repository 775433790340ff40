//! Results: what a run counted, merging children's results, and printing them (table or JSON).
//!
//! Children print their report with raw material (histogram buckets, per-publish delivery
//! tables) so the parent can merge exactly: histograms are added bucket by bucket, never by
//! combining percentiles.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::memprobe::{Sample, PAGE_BYTES};

/// Highest latency a histogram records (one hour in µs); larger values are clamped.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Significant digits kept by histograms: 0.1% error.
const HIST_SIGFIG: u8 = 3;

/// Histogram names.
pub const ECHO_RTT: &str = "echo_rtt_us";
pub const DELIVERY: &str = "delivery_us";
pub const PUBLISH_TO_ALL: &str = "publish_to_all_us";

pub fn new_hist() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG).expect("constant histogram bounds")
}

#[derive(Debug, Clone)]
pub struct Report {
    pub mode: String,
    pub procs: u64,
    /// Time to open every connection (the slowest process).
    pub ramp_s: f64,
    /// Measured time after the ramp (the slowest process).
    pub run_s: f64,
    /// Counts; merged by sum, except `max_*` keys, merged by max.
    pub counters: BTreeMap<String, u64>,
    /// Failed connection attempts by cause.
    pub failures: BTreeMap<String, u64>,
    /// Settings worth echoing in the output (size, depth, ...).
    pub params: BTreeMap<String, String>,
    pub hists: BTreeMap<String, Histogram<u64>>,
    /// Broadcast: per publish sequence number, (deliveries, slowest delivery µs).
    pub publishes: BTreeMap<u64, (u64, u64)>,
    /// Churn: last id seen at the end → number of clients.
    pub last_ids: BTreeMap<u64, u64>,
    pub memory: Vec<Sample>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(mode: &str) -> Self {
        Report {
            mode: mode.to_string(),
            procs: 1,
            ramp_s: 0.0,
            run_s: 0.0,
            counters: BTreeMap::new(),
            failures: BTreeMap::new(),
            params: BTreeMap::new(),
            hists: BTreeMap::new(),
            publishes: BTreeMap::new(),
            last_ids: BTreeMap::new(),
            memory: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn add(&mut self, key: &str, n: u64) {
        *self.counters.entry(key.to_string()).or_insert(0) += n;
    }

    pub fn set_max(&mut self, key: &str, n: u64) {
        let v = self.counters.entry(key.to_string()).or_insert(0);
        *v = (*v).max(n);
    }

    pub fn get(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    pub fn fail(&mut self, cause: &str) {
        *self.failures.entry(cause.to_string()).or_insert(0) += 1;
    }

    pub fn param(&mut self, key: &str, value: impl ToString) {
        self.params.insert(key.to_string(), value.to_string());
    }

    pub fn set_hist(&mut self, name: &str, h: Histogram<u64>) {
        self.hists.insert(name.to_string(), h);
    }

    /// Folds a child's report into this one.
    pub fn merge(&mut self, o: Report) {
        self.ramp_s = self.ramp_s.max(o.ramp_s);
        self.run_s = self.run_s.max(o.run_s);
        for (k, v) in o.counters {
            if k.starts_with("max_") {
                self.set_max(&k, v);
            } else {
                self.add(&k, v);
            }
        }
        for (k, v) in o.failures {
            *self.failures.entry(k).or_insert(0) += v;
        }
        for (k, v) in o.params {
            self.params.entry(k).or_insert(v);
        }
        for (k, h) in o.hists {
            match self.hists.get_mut(&k) {
                Some(mine) => {
                    if let Err(e) = mine.add(&h) {
                        self.errors.push(format!("merging histogram {k}: {e:?}"));
                    }
                }
                None => {
                    self.hists.insert(k, h);
                }
            }
        }
        for (seq, (count, max_us)) in o.publishes {
            let e = self.publishes.entry(seq).or_insert((0, 0));
            e.0 += count;
            e.1 = e.1.max(max_us);
        }
        for (id, n) in o.last_ids {
            *self.last_ids.entry(id).or_insert(0) += n;
        }
        self.errors.extend(o.errors);
    }

    /// Derives what needs every process's data: the publish-to-all-subscribers histogram
    /// (only publishes every ready subscriber received count; the rest are tallied).
    pub fn finalize(&mut self) {
        if self.mode != "broadcast" {
            return;
        }
        let expected = self.get("subscribers_ready");
        let mut h = new_hist();
        let (mut complete, mut partial, mut extra) = (0, 0, 0);
        for &(count, max_us) in self.publishes.values() {
            if count == expected {
                complete += 1;
                h.saturating_record(max_us.max(1));
            } else if count < expected {
                partial += 1;
            } else {
                extra += 1;
            }
        }
        self.set_hist(PUBLISH_TO_ALL, h);
        self.add("publishes_complete", complete);
        self.add("publishes_incomplete", partial);
        self.add("publishes_over_delivered", extra);
    }

    pub(crate) fn rate(&self, key: &str, secs: f64) -> f64 {
        if secs > 0.0 {
            self.get(key) as f64 / secs
        } else {
            0.0
        }
    }

    /// Derived rates, by mode: (name, value, unit).
    pub fn rates(&self) -> Vec<(&'static str, f64)> {
        let mut r = vec![("connects_per_s", self.rate("opened", self.ramp_s))];
        match self.mode.as_str() {
            "echo" => {
                r.push(("messages_per_s", self.rate("messages", self.run_s)));
                r.push(("mb_per_s", self.rate("bytes", self.run_s) / 1e6));
            }
            "broadcast" => {
                r.push(("publishes_per_s", self.rate("published", self.run_s)));
                r.push(("deliveries_per_s", self.rate("deliveries", self.run_s)));
            }
            "publish" => {
                r.push(("acked_per_s", self.rate("acked", self.run_s)));
                r.push(("received_per_s", self.rate("received", self.run_s)));
            }
            "churn" => {
                r.push(("reconnects_per_s", self.rate("reconnects", self.run_s)));
                r.push(("messages_per_s", self.rate("messages", self.run_s)));
            }
            _ => {}
        }
        r
    }

    /// One JSON object on one line; `raw` adds what a parent needs to merge (histogram
    /// buckets, the per-publish table, last ids).
    pub fn to_json(&self, raw: bool) -> serde_json::Result<String> {
        let hist_buckets = self
            .hists
            .iter()
            .map(|(k, h)| {
                let pairs = h
                    .iter_recorded()
                    .map(|b| (b.value_iterated_to(), b.count_at_value()))
                    .collect();
                (k.clone(), pairs)
            })
            .collect();
        let j = ReportJson {
            mode: self.mode.clone(),
            procs: self.procs,
            ramp_s: self.ramp_s,
            run_s: self.run_s,
            params: self.params.clone(),
            counters: self.counters.clone(),
            failures: self.failures.clone(),
            rates: self.rates().into_iter().collect(),
            latency_us: self
                .hists
                .iter()
                .map(|(k, h)| (k.clone(), Percentiles::of(h)))
                .collect(),
            memory: (!self.memory.is_empty()).then(|| self.memory_json()),
            errors: self.errors.clone(),
            hist_buckets: raw.then_some(hist_buckets),
            publishes: raw.then(|| {
                self.publishes
                    .iter()
                    .map(|(&s, &(c, m))| (s, c, m))
                    .collect()
            }),
            last_ids: raw.then(|| self.last_ids.iter().map(|(&id, &n)| (id, n)).collect()),
        };
        serde_json::to_string(&j)
    }

    /// Reads back a child's `to_json(true)`.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let j: ReportJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if j.mode.is_empty() {
            return Err("no mode".into());
        }
        let mut r = Report::new(&j.mode);
        r.ramp_s = j.ramp_s;
        r.run_s = j.run_s;
        r.counters = j.counters;
        r.failures = j.failures;
        r.params = j.params;
        for (name, pairs) in j.hist_buckets.unwrap_or_default() {
            let mut h = new_hist();
            for (value, count) in pairs {
                h.saturating_record_n(value, count);
            }
            r.hists.insert(name, h);
        }
        r.publishes = j
            .publishes
            .unwrap_or_default()
            .into_iter()
            .map(|(s, c, m)| (s, (c, m)))
            .collect();
        r.last_ids = j.last_ids.unwrap_or_default().into_iter().collect();
        r.errors = j.errors;
        Ok(r)
    }

    pub(crate) fn first(&self, label: &str) -> Option<&Sample> {
        self.memory.iter().find(|s| s.label == label)
    }

    pub(crate) fn last(&self, label: &str) -> Option<&Sample> {
        self.memory.iter().rev().find(|s| s.label == label)
    }

    /// The sample taken while every connection was held: the last one of the run, or the
    /// one at ready if the run was too short to sample.
    pub(crate) fn holding(&self) -> Option<&Sample> {
        self.last("run").or_else(|| self.last("ready"))
    }

    /// (server RSS bytes per connection, kernel TCP memory bytes per connection) while held.
    pub(crate) fn per_connection(&self) -> (Option<f64>, Option<f64>) {
        let n = self.get("open_at_ready");
        let (Some(before), Some(hold)) = (self.first("before"), self.holding()) else {
            return (None, None);
        };
        if n == 0 {
            return (None, None);
        }
        let per = |a: Option<u64>, b: Option<u64>, unit: u64| {
            Some((b? as f64 - a? as f64) * unit as f64 / n as f64)
        };
        (
            per(before.rss_kb, hold.rss_kb, 1024),
            per(before.tcp_mem_pages, hold.tcp_mem_pages, PAGE_BYTES),
        )
    }

    /// How much the server's RSS grew from the first sample of the run to the last, in
    /// percent: with connections held (or, in churn, replaced at the same count) it should not.
    pub(crate) fn rss_drift_pct(&self) -> Option<f64> {
        let first = self.first("run")?.rss_kb?;
        let last = self.last("run")?.rss_kb?;
        (first > 0).then(|| (last as f64 - first as f64) * 100.0 / first as f64)
    }

    fn memory_json(&self) -> MemoryJson {
        let (rss, tcp) = self.per_connection();
        MemoryJson {
            server_rss_bytes_per_conn: rss,
            server_rss_kb_first_run: self.first("run").and_then(|s| s.rss_kb),
            server_rss_kb_last_run: self.last("run").and_then(|s| s.rss_kb),
            server_rss_drift_pct: self.rss_drift_pct(),
            kernel_tcp_mem_bytes_per_conn: tcp,
            tcp_mem_page_bytes: PAGE_BYTES,
            samples: self.memory.clone(),
        }
    }
}

/// The JSON form of a [`Report`]: what `--json` prints and, with the raw parts, what a child
/// prints for its parent. What the parent works out again after merging (rates, percentiles,
/// memory) is written but never read back. Missing fields read as empty.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct ReportJson {
    mode: String,
    procs: u64,
    ramp_s: f64,
    run_s: f64,
    params: BTreeMap<String, String>,
    counters: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    #[serde(skip_deserializing)]
    rates: BTreeMap<&'static str, f64>,
    #[serde(skip_deserializing)]
    latency_us: BTreeMap<String, Percentiles>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    memory: Option<MemoryJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
    /// Raw: each histogram's recorded buckets as `[value, count]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    hist_buckets: Option<BTreeMap<String, Vec<(u64, u64)>>>,
    /// Raw: `[sequence number, deliveries, slowest delivery µs]` per publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    publishes: Option<Vec<(u64, u64, u64)>>,
    /// Raw: `[last id seen, clients]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_ids: Option<Vec<(u64, u64)>>,
}

/// One histogram's summary, in µs.
#[derive(Debug, Serialize)]
struct Percentiles {
    count: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The server's memory over the run (`--server-pid`), per connection and as sampled.
#[derive(Debug, Serialize)]
struct MemoryJson {
    server_rss_bytes_per_conn: Option<f64>,
    server_rss_kb_first_run: Option<u64>,
    server_rss_kb_last_run: Option<u64>,
    server_rss_drift_pct: Option<f64>,
    kernel_tcp_mem_bytes_per_conn: Option<f64>,
    tcp_mem_page_bytes: u64,
    samples: Vec<Sample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_round_trip_and_merge() {
        let mut a = Report::new("broadcast");
        a.add("subscribers_ready", 2);
        a.add("deliveries", 3);
        let mut h = new_hist();
        for v in [10, 20, 30, 1000] {
            h.saturating_record(v);
        }
        a.set_hist(DELIVERY, h);
        a.publishes.insert(1, (1, 50));
        a.publishes.insert(2, (1, 70));
        let text = a.to_json(true).map_err(|e| e.to_string());
        let b = text.and_then(|t| Report::from_json(&t));
        let Ok(b) = b else {
            panic!("round trip failed: {b:?}");
        };
        let mut total = a.clone();
        total.merge(b);
        total.finalize();
        assert_eq!(total.get("deliveries"), 6);
        assert_eq!(total.get("subscribers_ready"), 4);
        assert_eq!(total.hists.get(DELIVERY).map(Histogram::len), Some(8));
        assert_eq!(total.publishes.get(&1), Some(&(2, 50)));
        assert_eq!(total.get("publishes_incomplete"), 2);
        assert!(total.render().contains("deliveries"));
    }

    #[test]
    fn json_has_what_the_bench_scripts_read() {
        let mut r = Report::new("broadcast");
        r.add("subscribers_ready", 1);
        r.publishes.insert(1, (1, 40));
        r.memory = vec![Sample {
            label: "run".into(),
            t_s: 1.0,
            rss_kb: Some(2048),
            tcp_inuse: None,
            tcp_mem_pages: Some(3),
            cpu_ms: Some(120),
        }];
        r.finalize();
        let text = r.to_json(false).map_err(|e| e.to_string());
        let j: Result<serde_json::Value, _> =
            text.and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
        let Ok(j) = j else {
            panic!("{j:?}");
        };
        // benches/broadcast.sh, churn.sh and compare.sh read these.
        assert_eq!(j["latency_us"]["publish_to_all_us"]["p50"], 40);
        assert!(j["rates"]["deliveries_per_s"].is_number());
        assert_eq!(j["counters"]["publishes_complete"], 1);
        assert_eq!(j["memory"]["samples"][0]["label"], "run");
        assert_eq!(j["memory"]["samples"][0]["rss_kb"], 2048);
        assert_eq!(j["memory"]["samples"][0]["cpu_ms"], 120);
        assert!(j["memory"]["samples"][0]["tcp_inuse"].is_null());
        assert!(j["failures"].is_object());
        // The raw parts are for a parent only; no errors means no "errors" key.
        for key in ["hist_buckets", "publishes", "last_ids", "errors"] {
            assert!(j.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn rss_drift_is_first_to_last_run_sample() {
        let sample = |label: &str, rss_kb| Sample {
            label: label.to_string(),
            t_s: 0.0,
            rss_kb: Some(rss_kb),
            tcp_inuse: None,
            tcp_mem_pages: None,
            cpu_ms: None,
        };
        let mut r = Report::new("churn");
        assert_eq!(r.rss_drift_pct(), None);
        r.memory = vec![
            sample("ready", 100),
            sample("run", 1000),
            sample("run", 1200),
            sample("run", 1050),
            sample("after", 10),
        ];
        assert_eq!(r.rss_drift_pct(), Some(5.0));
        assert!(r.render().contains("drift +5.0%"));
    }
}
