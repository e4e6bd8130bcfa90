//! The comparative benchmark, small: the three runs (engine durable, engine without
//! sync, SQLite) must agree on every outcome, and the workload must exercise commits,
//! resubmissions, rejections and batch cut-overs.

use std::process::Command;

use serde_json::Value;

#[test]
fn three_runs_agree_on_a_small_workload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-bench"))
        .args(["--transactions", "20000", "--cutover", "4000", "--batch", "3000", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run ledger-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ledger-bench failed: {}\n{stderr}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");

    assert_eq!(report["counts_match"], Value::Bool(true), "{stderr}");
    let runs = report["runs"].as_array().expect("runs");
    let names: Vec<&str> = runs.iter().filter_map(|r| r["system"].as_str()).collect();
    assert_eq!(names, ["engine-durable", "engine-nosync", "sqlite"]);
    for run in runs {
        assert_eq!(run["counts"], runs[0]["counts"], "counts of {}", run["system"]);
        assert_eq!(run["check"], runs[0]["check"], "final totals of {}", run["system"]);
        assert!(run["tx_per_s"].as_f64().is_some_and(|v| v > 0.0));
        assert!(run["peak_rss_kib"].as_u64().is_some_and(|v| v > 0));
        assert!(run["disk"]["file_bytes"].as_u64().is_some_and(|v| v > 0));
    }

    let counts = &runs[0]["counts"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let rejected: u64 = counts["rejected"].as_object().expect("rejected").values().map(n).sum();
    assert!(n(&counts["committed"]) > 15_000, "{counts}");
    assert!(n(&counts["exists"]) > 0, "{counts}");
    assert!(rejected > 0, "{counts}");
    assert!(n(&counts["rejected"]["exceeds_ref_amount"]) > 0, "{counts}");
    assert_eq!(n(&counts["committed"]) + n(&counts["exists"]) + rejected, 20_000);
    assert!(n(&counts["batch_closes"]) > 0, "{counts}");
    assert_eq!(n(&runs[0]["cut_overs"]), 5);
    let ratios = report["ratios"].as_object().expect("ratios");
    assert!(ratios.contains_key("engine-durable/sqlite") && ratios.contains_key("engine-nosync/sqlite"));
    assert!(dir.path().read_dir().expect("dir").next().is_none(), "the runs clean up after themselves");
}
