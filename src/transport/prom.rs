//! The Prometheus text exposition format (0.0.4): a family's `# HELP` and `# TYPE` lines and
//! its samples, with HELP text and label values escaped. What to report is in `metrics.rs`.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

pub fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, Kind::Gauge, help);
    sample(out, name, &[], value);
}

pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, Kind::Counter, help);
    sample(out, name, &[], value);
}

pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            push_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// HELP text escapes backslash and newline.
pub fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape backslash, double quote and newline.
pub fn push_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        let mut out = String::new();
        push_label_value(&mut out, "q\"b\\n\n");
        assert_eq!(out, "q\\\"b\\\\n\\n");
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "1"), ("b", "x")], 5);
        sample(&mut out, "m", &[], 0);
        assert_eq!(out, "m{a=\"1\",b=\"x\"} 5\nm 0\n");
    }
}
