//! The parent's side: compare the runs and print the table (or one JSON object).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::workload::{Shape, Workload};

fn at<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(v, |v, key| &v[*key])
}

fn num(v: &Value, path: &[&str]) -> f64 {
    at(v, path).as_f64().unwrap_or(f64::NAN)
}

fn name(run: &Value) -> &str {
    run["system"].as_str().unwrap_or("?")
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Bytes per committed transaction.
fn per_tx(run: &Value, field: &str) -> f64 {
    num(run, &["disk", field]) / num(run, &["counts", "committed"]).max(1.0)
}

/// The run in one line, for stderr while the benchmark goes on.
pub(crate) fn one_line(run: &Value) -> String {
    format!(
        "{:.0} tx/s in {:.2} s; call p50 {:.2} ms, p99 {:.2} ms; peak RSS {:.0} MiB; {:.0} B/tx on disk",
        num(run, &["tx_per_s"]),
        num(run, &["total_secs"]),
        num(run, &["call_ms", "p50"]),
        num(run, &["call_ms", "p99"]),
        mib(num(run, &["peak_rss_kib"])),
        per_tx(run, "file_bytes"),
    )
}

/// How the runs differ from the first in what they must agree on.
pub(crate) fn mismatches(runs: &[Value]) -> Vec<String> {
    let Some(first) = runs.first() else { return vec!["no run".into()] };
    let mut out = Vec::new();
    for run in &runs[1..] {
        for key in ["counts", "check"] {
            if run[key] != first[key] {
                out.push(format!("{} {key} {} != {} {key} {}", name(run), run[key], name(first), first[key]));
            }
        }
    }
    out
}

/// How many transactions of each shape the workload holds.
pub(crate) fn shape_counts(workload: &Workload, transactions: u64) -> Value {
    let mut counts = [0u64; 3];
    for i in 0..transactions {
        counts[match workload.shape(i) {
            Shape::Sale => 0,
            Shape::Refund => 1,
            Shape::Resubmit => 2,
        }] += 1;
    }
    json!({"sales": counts[0], "refunds": counts[1], "resubmits": counts[2]})
}

/// Everything the benchmark found.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) args: Value,
    pub(crate) workload: Value,
    pub(crate) machine: Value,
    pub(crate) runs: Vec<Value>,
    pub(crate) mismatches: Vec<String>,
}

/// `engine / sqlite` for the numbers of the table.
fn ratios(engine: &Value, sqlite: &Value) -> Value {
    let r = |path: &[&str]| num(engine, path) / num(sqlite, path);
    json!({
        "tx_per_s": r(&["tx_per_s"]),
        "p50_call_ms": r(&["call_ms", "p50"]),
        "p99_call_ms": r(&["call_ms", "p99"]),
        "peak_rss": r(&["peak_rss_kib"]),
        "disk_file_bytes_per_tx": per_tx(engine, "file_bytes") / per_tx(sqlite, "file_bytes"),
        "disk_used_bytes_per_tx": per_tx(engine, "used_bytes") / per_tx(sqlite, "used_bytes"),
    })
}

impl Summary {
    fn sqlite(&self) -> Option<&Value> {
        self.runs.iter().find(|r| name(r) == "sqlite")
    }

    fn all_ratios(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        if let Some(sqlite) = self.sqlite() {
            for run in self.runs.iter().filter(|r| name(r) != "sqlite") {
                out.insert(format!("{}/sqlite", name(run)), ratios(run, sqlite));
            }
        }
        out
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "args": self.args,
            "workload": self.workload,
            "machine": self.machine,
            "runs": self.runs,
            "ratios": self.all_ratios(),
            "counts_match": self.mismatches.is_empty(),
            "mismatches": self.mismatches,
        })
    }

    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let a = &self.args;
        let w = &self.workload;
        let m = &self.machine;
        let _ = writeln!(
            t,
            "ledger-bench: {} transactions, seed {}, {} clients x USD/EUR/GBP/JPY, calls of {}, cut-over every {}",
            a["transactions"],
            a["seed_hex"].as_str().unwrap_or("?"),
            a["clients"],
            a["batch"],
            a["cutover"]
        );
        let _ =
            writeln!(t, "workload: {} sales, {} refunds, {} resubmissions", w["sales"], w["refunds"], w["resubmits"]);
        let _ = writeln!(
            t,
            "machine: {} CPUs, load {} at start, {} at end; data in {} ({})",
            m["cpus"],
            m["load_start"].as_str().unwrap_or("?"),
            m["load_end"].as_str().unwrap_or("?"),
            m["dir"].as_str().unwrap_or("?"),
            m["fs"].as_str().unwrap_or("?")
        );
        if let Some(first) = self.runs.first() {
            let c = &first["counts"];
            let rejected: Vec<String> = c["rejected"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| format!("{k} {v}")).collect())
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "outcomes: committed {}, exists {}, rejected {}; batches closed {} in {} cut-overs; {}",
                c["committed"],
                c["exists"],
                if rejected.is_empty() { "0".to_string() } else { rejected.join(", ") },
                c["batch_closes"],
                first["cut_overs"],
                if self.mismatches.is_empty() {
                    format!(
                        "all {} runs agree (outcome digest {})",
                        self.runs.len(),
                        c["outcome_digest"].as_str().unwrap_or("?")
                    )
                } else {
                    "THE RUNS DISAGREE".to_string()
                }
            );
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<15} {:>10} {:>7} {:>12} {:>12} {:>13} {:>9} {:>10} {:>10} {:>12}",
            "system",
            "tx/s",
            "secs",
            "p50 call ms",
            "p99 call ms",
            "peak RSS MiB",
            "anon MiB",
            "disk B/tx",
            "used B/tx",
            "cut-over ms"
        );
        for run in &self.runs {
            let _ = writeln!(
                t,
                "{:<15} {:>10.0} {:>7.2} {:>12.2} {:>12.2} {:>13.0} {:>9.0} {:>10.0} {:>10.0} {:>12.1}",
                name(run),
                num(run, &["tx_per_s"]),
                num(run, &["total_secs"]),
                num(run, &["call_ms", "p50"]),
                num(run, &["call_ms", "p99"]),
                mib(num(run, &["peak_rss_kib"])),
                mib(num(run, &["peak_anon_rss_kib"])),
                per_tx(run, "file_bytes"),
                per_tx(run, "used_bytes"),
                num(run, &["cut_over_ms", "p50"]),
            );
        }
        let ratios = self.all_ratios();
        if !ratios.is_empty() {
            let _ = writeln!(t);
            let _ = writeln!(t, "ratios, engine / SQLite (tx/s: higher is better; the rest: lower is better):");
            for (pair, r) in &ratios {
                let _ = writeln!(
                    t,
                    "  {:<22} tx/s {:.2}x   p50 {:.3}x   p99 {:.3}x   peak RSS {:.2}x   disk B/tx {:.2}x   used B/tx {:.2}x",
                    pair,
                    num(r, &["tx_per_s"]),
                    num(r, &["p50_call_ms"]),
                    num(r, &["p99_call_ms"]),
                    num(r, &["peak_rss"]),
                    num(r, &["disk_file_bytes_per_tx"]),
                    num(r, &["disk_used_bytes_per_tx"]),
                );
            }
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "peak RSS: VmHWM of the run's own process (the engine's mapped log pages count in it); anon: the \
             largest anonymous RSS seen between calls. disk B/tx: bytes of the files left after close / committed transactions (the engine's segments are \
             preallocated, 64 MiB each); used B/tx: the engine's log up to its end plus its snapshots, SQLite's \
             pages in use. tx/s counts submit calls and cut-overs, not workload generation \
             (with calls in flight the engine's time includes it: it overlaps the commits)."
        );
        for run in &self.runs {
            let _ = writeln!(t, "{}: {}", name(run), run["notes"].as_str().unwrap_or(""));
        }
        t
    }
}
