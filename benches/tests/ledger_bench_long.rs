//! `ledger-bench long`, small: 200k transactions in windows of 50k through the C ABI.
//! The summary must add up (every transaction counted once, in the right window), every
//! resubmission must have come back `EXISTS`, and the reopen check must have passed.

use std::process::Command;

use serde_json::Value;

const TRANSACTIONS: u64 = 200_000;
const WINDOW: u64 = 50_000;

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite())
}

#[test]
fn long_history_mode_on_a_small_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-bench"))
        .args(["long", "--transactions", &TRANSACTIONS.to_string(), "--window", &WINDOW.to_string()])
        .args(["--seed", "14", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run ledger-bench long");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ledger-bench long failed: {}\n{stderr}", output.status);
    let s: Value = serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");

    // Every transaction counted once, by shape and outcome.
    let c = &s["counts"];
    assert_eq!(n(&c["transactions"]), TRANSACTIONS, "{c}");
    let (sales, refunds, resubmits) = (&c["sales"], &c["refunds"], &c["resubmits"]);
    assert_eq!(n(&sales["total"]) + n(&refunds["total"]) + n(&resubmits["total"]), TRANSACTIONS, "{c}");
    for shape in [sales, refunds, resubmits] {
        let outcomes: u64 = shape["outcomes"].as_object().expect("outcomes").values().map(n).sum();
        assert_eq!(outcomes, n(&shape["total"]), "{c}");
    }
    assert!((160_000..180_000).contains(&n(&sales["total"])), "about 85% sales: {c}");
    assert!((16_000..24_000).contains(&n(&refunds["total"])), "about 10% refunds: {c}");
    assert!((8_000..12_000).contains(&n(&resubmits["total"])), "about 5% resubmissions: {c}");
    assert_eq!(n(&sales["outcomes"]["ok"]), n(&sales["total"]), "every sale committed: {c}");
    assert_eq!(n(&resubmits["outcomes"]["exists"]), n(&resubmits["total"]), "every resubmission EXISTS: {c}");
    assert!(n(&refunds["outcomes"]["ok"]) * 10 > n(&refunds["total"]) * 9, "refunds mostly accepted: {c}");
    assert_eq!(n(&c["errors"]), 0, "{c}");

    // Windows: exact, in order, each measured.
    let windows = s["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 4);
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(n(&w["index"]), i as u64);
        assert_eq!(n(&w["first"]), i as u64 * WINDOW);
        assert_eq!(n(&w["transactions"]), WINDOW);
        assert!(positive(&w["tx_per_s"]) && positive(&w["call_ms"]["p99"]), "{w}");
        assert!(n(&w["memory"]["anon_rss_kib"]) > 0 && n(&w["memory"]["rss_kib"]) > 0, "{w}");
        assert!(n(&w["memory"]["peak_rss_kib"]) >= n(&w["memory"]["rss_kib"]), "{w}");
        assert!(n(&w["anon_peak_rss_kib"]) > 0, "{w}");
        assert!(n(&w["disk"]["file_bytes"]) > 0, "{w}");
        assert!(w["engine"].is_object(), "the engine-statistics hook reports: {w}");
    }
    assert_eq!(s["first_window"], windows[0]);
    assert_eq!(s["last_window"], windows[3]);
    let ratio = s["last_over_first"].as_f64().expect("ratio");
    let expected = windows[3]["tx_per_s"].as_f64().expect("rate") / windows[0]["tx_per_s"].as_f64().expect("rate");
    assert!((ratio - expected).abs() < 1e-9 * expected, "{ratio} vs {expected}");
    assert!(positive(&s["tx_per_s"]) && positive(&s["call_ms"]["p50"]));
    let memory = &s["memory"];
    let window_peaks = windows.iter().map(|w| n(&w["anon_peak_rss_kib"])).max();
    assert_eq!(Some(n(&memory["peak_anon_rss_kib"])), window_peaks, "{memory}");
    assert!(n(&memory["peak_anon_rss_kib_with_reopen"]) >= n(&memory["peak_anon_rss_kib"]), "{memory}");
    assert!(n(&memory["peak_rss_kib"]) > 0, "{memory}");
    assert!(n(&s["disk"]["file_bytes"]) > 0);

    // The reopen: timed, the first payment still EXISTS and can be refunded.
    let r = &s["reopen"];
    assert!(positive(&r["secs"]), "{r}");
    assert_eq!(r["first_payment_resubmitted"], "exists", "{r}");
    assert_eq!(r["refund_of_first_payment"], "ok", "{r}");
    assert_eq!(r["refunded_after"].as_i64(), r["refunded_before"].as_i64().map(|v| v + 1), "{r}");
    assert_eq!(r["passed"], Value::Bool(true));
    assert_eq!(s["passed"], Value::Bool(true));

    // Reported as it went, and cleaned up after itself.
    assert!(stderr.contains("window 1/4") && stderr.contains("window 4/4"), "{stderr}");
    assert!(dir.path().read_dir().expect("dir").next().is_none(), "the temporary ledger is removed");
}
