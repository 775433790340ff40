//! Results: what a run counted, merging children's results, and printing them (table or JSON).
//!
//! Children print their report with raw material (histogram buckets, per-publish delivery
//! tables) so the parent can merge exactly: histograms are added bucket by bucket, never by
//! combining percentiles.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::json::Value;
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
            "churn" => {
                r.push(("reconnects_per_s", self.rate("reconnects", self.run_s)));
                r.push(("messages_per_s", self.rate("messages", self.run_s)));
            }
            _ => {}
        }
        r
    }

    /// One JSON object; `raw` adds what a parent needs to merge (buckets, per-publish table).
    pub fn to_json(&self, raw: bool) -> Value {
        let mut v = Value::obj();
        v.put("mode", self.mode.as_str());
        v.put("procs", self.procs);
        v.put("ramp_s", self.ramp_s);
        v.put("run_s", self.run_s);
        v.put("params", map_obj(&self.params, |s| Value::from(s.as_str())));
        v.put("counters", map_obj(&self.counters, |n| Value::UInt(*n)));
        v.put("failures", map_obj(&self.failures, |n| Value::UInt(*n)));
        let mut rates = Value::obj();
        for (k, x) in self.rates() {
            rates.put(k, x);
        }
        v.put("rates", rates);
        v.put("latency_us", map_obj(&self.hists, percentiles));
        if !self.memory.is_empty() {
            v.put("memory", self.memory_json());
        }
        if !self.errors.is_empty() {
            let errors: Vec<Value> = self.errors.iter().map(|e| e.as_str().into()).collect();
            v.put("errors", errors);
        }
        if raw {
            let buckets = map_obj(&self.hists, |h| {
                let pairs: Vec<Value> = h
                    .iter_recorded()
                    .map(|b| {
                        vec![
                            Value::UInt(b.value_iterated_to()),
                            Value::UInt(b.count_at_value()),
                        ]
                        .into()
                    })
                    .collect();
                pairs.into()
            });
            v.put("hist_buckets", buckets);
            let pubs: Vec<Value> = self
                .publishes
                .iter()
                .map(|(s, (c, m))| vec![Value::UInt(*s), Value::UInt(*c), Value::UInt(*m)].into())
                .collect();
            v.put("publishes", pubs);
            let ids: Vec<Value> = self
                .last_ids
                .iter()
                .map(|(id, n)| vec![Value::UInt(*id), Value::UInt(*n)].into())
                .collect();
            v.put("last_ids", ids);
        }
        v
    }

    /// Reads back a child's `to_json(true)`.
    pub fn from_json(v: &Value) -> Result<Report, String> {
        let mode = v.get("mode").and_then(Value::as_str).ok_or("no mode")?;
        let mut r = Report::new(mode);
        r.ramp_s = v.get("ramp_s").and_then(Value::as_f64).unwrap_or(0.0);
        r.run_s = v.get("run_s").and_then(Value::as_f64).unwrap_or(0.0);
        let counts = |key: &str| -> BTreeMap<String, u64> {
            v.get(key)
                .map(Value::as_obj)
                .unwrap_or(&[])
                .iter()
                .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                .collect()
        };
        r.counters = counts("counters");
        r.failures = counts("failures");
        for (k, p) in v.get("params").map(Value::as_obj).unwrap_or(&[]) {
            r.params
                .insert(k.clone(), p.as_str().unwrap_or("").to_string());
        }
        for (name, pairs) in v.get("hist_buckets").map(Value::as_obj).unwrap_or(&[]) {
            let mut h = new_hist();
            for pair in pairs.as_arr() {
                let (Some(value), Some(count)) = (
                    pair.as_arr().first().and_then(Value::as_u64),
                    pair.as_arr().get(1).and_then(Value::as_u64),
                ) else {
                    return Err(format!("bad bucket in {name}"));
                };
                h.saturating_record_n(value, count);
            }
            r.hists.insert(name.clone(), h);
        }
        for row in v.get("publishes").map(Value::as_arr).unwrap_or(&[]) {
            let f = |i: usize| row.as_arr().get(i).and_then(Value::as_u64);
            if let (Some(s), Some(c), Some(m)) = (f(0), f(1), f(2)) {
                r.publishes.insert(s, (c, m));
            }
        }
        for row in v.get("last_ids").map(Value::as_arr).unwrap_or(&[]) {
            let f = |i: usize| row.as_arr().get(i).and_then(Value::as_u64);
            if let (Some(id), Some(n)) = (f(0), f(1)) {
                r.last_ids.insert(id, n);
            }
        }
        for e in v.get("errors").map(Value::as_arr).unwrap_or(&[]) {
            r.errors.push(e.as_str().unwrap_or("").to_string());
        }
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

    fn memory_json(&self) -> Value {
        let mut m = Value::obj();
        let (rss, tcp) = self.per_connection();
        m.put("server_rss_bytes_per_conn", rss);
        m.put(
            "server_rss_kb_first_run",
            self.first("run").and_then(|s| s.rss_kb),
        );
        m.put(
            "server_rss_kb_last_run",
            self.last("run").and_then(|s| s.rss_kb),
        );
        m.put("server_rss_drift_pct", self.rss_drift_pct());
        m.put("kernel_tcp_mem_bytes_per_conn", tcp);
        m.put("tcp_mem_page_bytes", PAGE_BYTES);
        let samples: Vec<Value> = self
            .memory
            .iter()
            .map(|s| {
                let mut o = Value::obj();
                o.put("label", s.label.as_str());
                o.put("t_s", s.t_s);
                o.put("rss_kb", s.rss_kb);
                o.put("tcp_inuse", s.tcp_inuse);
                o.put("tcp_mem_pages", s.tcp_mem_pages);
                o
            })
            .collect();
        m.put("samples", samples);
        m
    }
}

fn map_obj<T>(m: &BTreeMap<String, T>, f: impl Fn(&T) -> Value) -> Value {
    Value::Obj(m.iter().map(|(k, v)| (k.clone(), f(v))).collect())
}

fn percentiles(h: &Histogram<u64>) -> Value {
    let mut v = Value::obj();
    v.put("count", h.len());
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        v.put(name, h.value_at_quantile(q));
    }
    v.put("max", h.max());
    v.put("mean", h.mean());
    v
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
        let text = a.to_json(true).to_json();
        let b = crate::json::parse(&text).and_then(|v| Report::from_json(&v));
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
    fn rss_drift_is_first_to_last_run_sample() {
        let sample = |label: &str, rss_kb| Sample {
            label: label.to_string(),
            t_s: 0.0,
            rss_kb: Some(rss_kb),
            tcp_inuse: None,
            tcp_mem_pages: None,
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
