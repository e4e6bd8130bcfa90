//! The cold tier comparison, tiny: both engines (runs of `ledger_store::table` and
//! fjall) ingest 40k transactions in checkpoints of 5k (so the eight runs merge once), find
//! every present id and no absent one, one at a time and in groups.

use std::process::Command;

use serde_json::Value;

#[test]
fn both_engines_find_every_present_id_and_no_absent_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_cold_tier_compare"))
        .args(["--keys", "40000", "--checkpoint", "5000", "--lookups", "10000", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run cold_tier_compare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cold_tier_compare failed: {}\n{stderr}", output.status);
    let results: Value = serde_json::from_slice(&output.stdout).expect("one JSON array on stdout");
    let results = results.as_array().expect("an array");
    let engines: Vec<&str> = results.iter().filter_map(|r| r["engine"].as_str()).collect();
    assert_eq!(engines, ["runs", "fjall"]);
    for r in results {
        let name = &r["engine"];
        for (kind, expect) in [("absent", 0), ("present", 10_000)] {
            let l = &r["lookups"][kind];
            for field in ["found", "group_found_first", "group_found_second"] {
                assert_eq!(l[field].as_u64(), Some(expect), "{name} {kind} {field}\n{stderr}");
            }
            assert!(l["single_ns"].as_f64().is_some_and(|v| v > 0.0), "{name} {kind}");
        }
        assert_eq!(r["ingest"]["batches"].as_array().map(Vec::len), Some(8), "{name}");
        assert!(r["disk"]["file_bytes"].as_u64().is_some_and(|v| v > 40_000 * 112), "{name}");
        assert!(r["memory"].as_array().is_some_and(|m| m.len() == 5), "{name}");
    }
    assert_eq!(
        results[0]["layout"]["runs_newest_first"],
        serde_json::json!([40000]),
        "eight runs of 5k merged into one"
    );
    // Every child removed its directory.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}
