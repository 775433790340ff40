//! The human-readable table printed at the end of a run (`--json` prints `Report::to_json`).

use std::fmt::Write as _;

use crate::memprobe::{Sample, PAGE_BYTES};
use crate::report::Report;

impl Report {
    /// The human table.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            o,
            "switchboard-bench {} ({} process{}) {}",
            self.mode,
            self.procs,
            if self.procs == 1 { "" } else { "es" },
            params.join(" ")
        );
        let c = |k: &str| self.get(k);
        let line = |o: &mut String, name: &str, text: String| {
            let _ = writeln!(o, "  {name:<18} {text}");
        };
        line(
            &mut o,
            "connections",
            format!(
                "attempted {}  opened {}  failed {}  open at start {}{}",
                c("attempted"),
                c("opened"),
                self.failures.values().sum::<u64>(),
                c("open_at_ready"),
                if c("reopened") > 0 {
                    format!("  reopened later {}", c("reopened"))
                } else {
                    String::new()
                }
            ),
        );
        line(
            &mut o,
            "ramp",
            format!(
                "{:.2} s  {:.1} connects/s",
                self.ramp_s,
                self.rate("opened", self.ramp_s)
            ),
        );
        if !self.failures.is_empty() {
            let f: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            line(&mut o, "failures", f.join(", "));
        }
        let dropped: Vec<String> = self
            .counters
            .iter()
            .filter_map(|(k, v)| Some(format!("{} {v}", k.strip_prefix("dropped_")?)))
            .collect();
        line(
            &mut o,
            "dropped",
            if dropped.is_empty() {
                "none".into()
            } else {
                dropped.join(", ")
            },
        );
        match self.mode.as_str() {
            "connect" => line(&mut o, "held", format!("{:.2} s", self.run_s)),
            "echo" => {
                line(
                    &mut o,
                    "messages",
                    format!(
                        "{} in {:.2} s = {:.0} msg/s, {:.2} MB/s payload each way{}",
                        c("messages"),
                        self.run_s,
                        self.rate("messages", self.run_s),
                        self.rate("bytes", self.run_s) / 1e6,
                        if c("mismatched") > 0 {
                            format!(", {} wrong-length echoes", c("mismatched"))
                        } else {
                            String::new()
                        }
                    ),
                );
            }
            "broadcast" => {
                line(
                    &mut o,
                    "publishes",
                    format!(
                        "{} in {:.2} s = {:.1}/s; complete {}, incomplete {}, over-delivered {}{}",
                        c("published"),
                        self.run_s,
                        self.rate("published", self.run_s),
                        c("publishes_complete"),
                        c("publishes_incomplete"),
                        c("publishes_over_delivered"),
                        if c("serial_timeouts") > 0 {
                            format!(", {} serial timeouts", c("serial_timeouts"))
                        } else {
                            String::new()
                        }
                    ),
                );
                line(
                    &mut o,
                    "deliveries",
                    format!(
                        "{} to {} subscribers = {:.0}/s{}",
                        c("deliveries"),
                        c("subscribers_ready"),
                        self.rate("deliveries", self.run_s),
                        if c("unparsed") > 0 {
                            format!(", {} unparsed messages", c("unparsed"))
                        } else {
                            String::new()
                        }
                    ),
                );
            }
            "churn" => {
                line(
                    &mut o,
                    "reconnects",
                    format!(
                        "{} = {:.1}/s, failed to start {}, retries after a failure {}, \
                         resumed without an id {}",
                        c("reconnects"),
                        self.rate("reconnects", self.run_s),
                        c("reconnect_failed"),
                        c("retries"),
                        c("resumed_without_id")
                    ),
                );
                line(
                    &mut o,
                    "messages",
                    format!(
                        "{} received; {} published, last id published {} / seen {}",
                        c("messages"),
                        c("published"),
                        c("max_published_id"),
                        c("max_seen_id")
                    ),
                );
                line(
                    &mut o,
                    "continuity",
                    format!(
                        "gaps {} ({} ids missing, {} clients), duplicates {} ({} clients), \
                         behind at end {}, never received {}, recovered=false {}",
                        c("gaps"),
                        c("missing_ids"),
                        c("clients_with_gaps"),
                        c("duplicates"),
                        c("clients_with_dups"),
                        self.clients_behind(),
                        c("clients_never_received"),
                        c("not_recovered")
                    ),
                );
            }
            _ => {}
        }
        let publish_errors: Vec<String> = self
            .counters
            .iter()
            .filter_map(|(k, v)| Some(format!("{} {v}", k.strip_prefix("publish_error_")?)))
            .collect();
        if c("publish_behind") > 0 {
            line(
                &mut o,
                "publisher behind",
                format!(
                    "{} publishes fell due but were not sent (HTTP publishing waits for each \
                     response; --publish-via ws does not)",
                    c("publish_behind")
                ),
            );
        }
        if !publish_errors.is_empty() {
            line(&mut o, "publish errors", publish_errors.join(", "));
        }
        for (name, h) in &self.hists {
            if h.is_empty() {
                continue;
            }
            line(
                &mut o,
                name,
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.9),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max(),
                    h.len()
                ),
            );
        }
        self.render_memory(&mut o);
        for e in &self.errors {
            line(&mut o, "error", e.clone());
        }
        o
    }

    /// Churn: clients whose last id is below the last published one.
    pub fn clients_behind(&self) -> u64 {
        let last = match self.get("max_published_id") {
            0 => self.get("max_seen_id"),
            id => id,
        };
        self.last_ids.range(..last).map(|(_, n)| *n).sum()
    }

    fn render_memory(&self, o: &mut String) {
        if self.memory.is_empty() {
            return;
        }
        let kib = |s: Option<&Sample>| {
            s.and_then(|s| s.rss_kb)
                .map_or("-".into(), |k| format!("{k} KiB"))
        };
        let (rss_per, tcp_per) = self.per_connection();
        if self.memory.iter().any(|s| s.rss_kb.is_some()) {
            let run: Vec<u64> = self
                .memory
                .iter()
                .filter(|s| s.label == "run")
                .filter_map(|s| s.rss_kb)
                .collect();
            let _ = writeln!(
                o,
                "  {:<18} before {}  ready {}  during min {} / max {} KiB{}  held {}  after {}{}",
                "server RSS",
                kib(self.first("before")),
                kib(self.last("ready")),
                run.iter().min().map_or("-".into(), ToString::to_string),
                run.iter().max().map_or("-".into(), ToString::to_string),
                self.rss_drift_pct()
                    .map_or(String::new(), |d| format!(" (drift {d:+.1}%)")),
                kib(self.holding()),
                kib(self.last("after")),
                rss_per.map_or(String::new(), |b| format!("  → {b:.0} B/connection")),
            );
        }
        let sock = |s: Option<&Sample>| {
            s.and_then(|s| {
                Some(format!(
                    "{} sockets {} KiB",
                    s.tcp_inuse?,
                    s.tcp_mem_pages? * PAGE_BYTES / 1024
                ))
            })
            .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            o,
            "  {:<18} before {}  held {}  after {}{}",
            "kernel TCP",
            sock(self.first("before")),
            sock(self.holding()),
            sock(self.last("after")),
            tcp_per.map_or(String::new(), |b| format!(
                "  → {b:.0} B/connection (client and server ends; sockstat is system-wide)"
            )),
        );
    }
}
