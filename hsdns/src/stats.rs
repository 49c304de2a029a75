//! `hsdns stats`: the kernel's verdict counters of a running daemon, summed
//! over CPUs, as an aligned table or one JSON object.

use std::{fmt::Write as _, path::Path};

use anyhow::Result;
use hsdns_common::Counters;

use crate::maps::bpf::read_pinned_counters;

/// `hsdns stats`.
pub fn print(pin_dir: &Path, json: bool) -> Result<()> {
    let c = read_pinned_counters(pin_dir)?;
    if json {
        println!("{}", self::json(&c));
    } else {
        print!("{}", table(&c));
    }
    Ok(())
}

/// The counters as an aligned two-column table, answered and passed
/// verdicts apart with their totals.
pub fn table(c: &Counters) -> String {
    let fields = c.fields();
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let num = fields
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(1)
        .max("packets".len());
    let mut s = String::new();
    let _ = writeln!(s, "{:<width$}  {:>num$}", "verdict", "packets");
    let mut answered = 0u64;
    let mut passed = 0u64;
    let mut dropped = 0u64;
    for (k, v) in fields {
        let _ = writeln!(s, "{k:<width$}  {v:>num$}");
        if k.starts_with("answered_") {
            answered += v;
        } else if k.starts_with("pass_") {
            passed += v;
        } else {
            dropped += v;
        }
    }
    let _ = writeln!(s, "{}", "-".repeat(width + 2 + num));
    for (k, v) in [
        ("answered (total)", answered),
        ("passed up (total)", passed),
        ("dropped (total)", dropped),
    ] {
        let _ = writeln!(s, "{k:<width$}  {v:>num$}");
    }
    s
}

/// The counters as one JSON object, name to value.
pub fn json(c: &Counters) -> String {
    let map: serde_json::Map<String, serde_json::Value> = c
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_and_totals_add_up() {
        let c = Counters {
            answered_a: 12_345,
            answered_nxdomain: 7,
            pass_unknown_name: 3,
            dropped_internal: 1,
            ..Default::default()
        };
        let t = table(&c);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["verdict", "packets"]
        );
        // Every row ends at the same column: right-aligned numbers.
        let width = lines[0].len();
        assert!(
            lines
                .iter()
                .filter(|l| !l.starts_with('-'))
                .all(|l| l.len() == width),
            "{t}"
        );
        assert!(t.contains("answered_a"));
        let total = |what: &str| -> u64 {
            let l = lines.iter().find(|l| l.starts_with(what)).unwrap();
            l.split_whitespace().last().unwrap().parse().unwrap()
        };
        assert_eq!(total("answered (total)"), 12_352);
        assert_eq!(total("passed up (total)"), 3);
        assert_eq!(total("dropped (total)"), 1);
        assert!(!t.contains("Counters {"), "not Rust debug output");
    }

    #[test]
    fn json_has_every_counter_by_name() {
        let c = Counters {
            answered_aaaa: 5,
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&json(&c)).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), c.fields().len());
        assert_eq!(o["answered_aaaa"], 5);
        assert_eq!(o["pass_not_dns"], 0);
    }
}
