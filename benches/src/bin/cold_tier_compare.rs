//! `cold_tier_compare`: the cold tier of issue 14 measured against a proven library.
//!
//! Two engines hold the same history of N transactions, ingested one checkpoint at a
//! time, and answer the same lookups:
//!
//! 1. **runs**: `ledger_store::table` files used as ledger-core uses them: one run per
//!    checkpoint (112-byte entries keyed by the 16-byte id, a 40-byte secondary entry
//!    `(client, seq, commit time, id)` per transaction, a blocked Bloom filter), runs of
//!    one size class merged four at a time as `checkpoint::mergeable` would (here
//!    synchronously after each checkpoint, by a k-way merge through `TableBuilder`, and
//!    timed apart), lookups probing the runs newest first, Bloom first, as `Cold::get`.
//! 2. **fjall** (3.x): keyspace `tx` (id -> the entry's other 96 bytes, so both hold the
//!    same 112 bytes per transaction) and keyspace `by_client` ((client, seq) -> commit
//!    time and id), fed a checkpoint at a time; see [`fjall_open`] for the settings.
//!
//! Measured for each: ingest time per checkpoint and in all (including every sync, the
//! merges, and for fjall the wait until its flushes and compactions are idle), lookups
//! of absent ids (new random ids: the hot path's usual answer) and of present ids
//! (uniform over history), one at a time and in groups of 8190 (each group looked up
//! twice: the first pass as the engine judges a fresh group, the second warm), disk
//! bytes, and VmRSS / RssAnon after each phase. Each engine runs in a child process
//! (this binary again, with the hidden `--child`) in a fresh directory, in alternating
//! order over `--rounds`. Nothing evicts the page cache: the files were just written,
//! so reads are served from memory; the report says how much was cached.
//!
//! ```text
//! cargo run --release -p ledger-benches --bin cold_tier_compare -- \
//!     [--keys 10000000] [--checkpoint 1000000] [--lookups 1000000] [--seed 1] [--rounds 2] [--json]
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use ledger_store::Storage;
use ledger_store::table::{KEY_BYTES, Key, Table, TableBuilder, key_hash};
use serde_json::{Value, json};

/// Bytes of a cold run entry (ledger-core's `records::ENTRY_BYTES`).
const ENTRY_BYTES: usize = 112;
/// Bytes of a secondary entry in a run (`table::SECONDARY_BYTES`).
const SECONDARY_BYTES: u64 = 40;
/// Runs merged at once (ledger-core's `checkpoint::MERGE_FANIN`).
const MERGE_FANIN: usize = 8;
/// Ids the engine judges per call.
const GROUP: usize = 8190;
/// Distinct clients in the generated history.
const CLIENTS: u64 = 10_000;

type Entry = [u8; ENTRY_BYTES];
/// A secondary index row: client, seq, commit time, id.
type Secondary = (u64, u64, u64, Key);
/// A transaction of a checkpoint.
type Row = (Entry, Secondary);
type Res<T> = Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Compression {
    None,
    Lz4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FjallWrite {
    /// `Keyspace::start_ingestion`: each checkpoint's sorted rows written straight into
    /// tables (no journal, no memtable), as a cold tier fed from the log would.
    Ingest,
    /// One `WriteBatch` per keyspace and checkpoint through the journal (not synced per
    /// write), then `persist(SyncAll)`.
    Batch,
}

#[derive(Debug, Parser)]
#[command(about = "Cold tier: ledger_store::table runs against fjall (issue 14)")]
struct Args {
    /// Transactions in history.
    #[arg(long, default_value_t = 10_000_000)]
    keys: u64,
    /// Transactions per checkpoint (one run each).
    #[arg(long, default_value_t = 1_000_000)]
    checkpoint: u64,
    /// Lookups of each kind (absent, present), one at a time and again in groups.
    #[arg(long, default_value_t = 1_000_000)]
    lookups: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds; the engines' order alternates from one round to the next.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Engines, comma-separated: runs, fjall.
    #[arg(long, default_value = "runs,fjall")]
    engines: String,
    /// Where each run's fresh directory is made (and removed).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
    /// fjall's block cache, MiB.
    #[arg(long, default_value_t = 256)]
    fjall_cache_mib: u64,
    /// fjall's data block compression.
    #[arg(long, value_enum, default_value = "none")]
    fjall_compression: Compression,
    /// How fjall is fed a checkpoint.
    #[arg(long, value_enum, default_value = "ingest")]
    fjall_write: FjallWrite,
    /// Print the results as one JSON array on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Internal: run one engine in `--child-dir` and print its result as JSON.
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true)]
    child_dir: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let result = match &args.child {
        Some(engine) => child(&args, engine),
        None => parent(&args),
    };
    if let Err(e) = result {
        eprintln!("cold_tier_compare: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------
// The generated history

/// splitmix64: the `n`th output of the stream seeded with `seed`.
fn splitmix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The id of transaction `i` of a stream: 128 random bits, big-endian (high half
/// first, as ledger-core's `key_of`).
fn id_key(seed: u64, i: u64) -> Key {
    let mut k = [0u8; KEY_BYTES];
    k[..8].copy_from_slice(&splitmix(seed, 2 * i).to_be_bytes());
    k[8..].copy_from_slice(&splitmix(seed, 2 * i + 1).to_be_bytes());
    k
}

/// The history's ids come from this stream; absent ids from another.
fn history_seed(seed: u64) -> u64 {
    seed
}

fn absent_seed(seed: u64, pass: u64) -> u64 {
    seed ^ 0xa5a5_0000_0000_0000 ^ (pass << 32)
}

/// Transaction `i` of history as a run entry (the layout of FORMAT.md "Cold run
/// entry", with plausible values) and its secondary index row.
fn transaction(seed: u64, i: u64) -> Row {
    let key = id_key(history_seed(seed), i);
    let r = splitmix(seed ^ 0x7777, i);
    let client = r % CLIENTS;
    let seq = i + 1;
    let ts = 1_700_000_000_000_000_000 + i * 1_000;
    let mut e = [0u8; ENTRY_BYTES];
    e[..16].copy_from_slice(&key);
    // ref id (0: a sale), client, device, amount, user data, seq, batch, commit time,
    // captured, refunded, then kind, flags, state, currency and two zero bytes.
    let words = [0, 0, client, r >> 40, (r >> 8) % 100_000, r, seq, seq / 50_000 + 1, ts, 0, 0];
    for (n, w) in words.iter().enumerate() {
        e[16 + 8 * n..24 + 8 * n].copy_from_slice(&w.to_le_bytes());
    }
    e[104..110].copy_from_slice(&[1, 0, 1, b'E', b'U', b'R']);
    (e, (client, seq, ts, key))
}

/// Index of the `j`th present lookup: uniform over all `keys` transactions.
fn present_index(seed: u64, pass: u64, j: u64, keys: u64) -> u64 {
    let r = splitmix(seed ^ 0x1234_5678 ^ (pass << 40), j);
    ((u128::from(r) * u128::from(keys)) >> 64) as u64
}

// ---------------------------------------------------------------------------------
// Process measurements

fn status_kib(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    let Some(line) = status.lines().find(|l| l.starts_with(field)) else { return 0 };
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

fn memory(phase: &str) -> Value {
    let m = json!({
        "phase": phase,
        "rss_kib": status_kib("VmRSS:"),
        "anon_kib": status_kib("RssAnon:"),
        "file_kib": status_kib("RssFile:"),
        "hwm_kib": status_kib("VmHWM:"),
    });
    eprintln!(
        "    mem {phase:<22} rss {:>7} MiB  anon {:>7} MiB  file {:>7} MiB",
        m["rss_kib"].as_u64().unwrap_or(0) / 1024,
        m["anon_kib"].as_u64().unwrap_or(0) / 1024,
        m["file_kib"].as_u64().unwrap_or(0) / 1024
    );
    m
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn meminfo_kib(field: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    let Some(line) = s.lines().find(|l| l.starts_with(field)) else { return 0 };
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

/// Apparent bytes and allocated bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> Res<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let meta = entry.metadata().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path())?;
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    Ok(total)
}

/// Bytes of the files under `dir` resident in the page cache (mincore over a mapping
/// of each file).
fn cached_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += cached_bytes(&path);
        } else if let Ok(file) = std::fs::File::open(&path)
            && file.metadata().is_ok_and(|m| m.len() > 0)
            // SAFETY: a read-only mapping, only passed to mincore and dropped; the
            // bytes are never read, so a file changed meanwhile cannot be misread.
            && let Ok(map) = unsafe { memmap2::Mmap::map(&file) }
        {
            total += resident(&map);
        }
    }
    total
}

fn resident(map: &[u8]) -> u64 {
    const PAGE: usize = 4096;
    let pages = map.len().div_ceil(PAGE);
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is a live mapping of `map.len()` bytes starting at a page boundary
    // (mmap returns page-aligned addresses); `vec` has one byte per page.
    let rc = unsafe { libc_mincore(map.as_ptr().cast_mut().cast(), map.len(), vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE as u64
}

unsafe extern "C" {
    #[link_name = "mincore"]
    fn libc_mincore(addr: *mut std::ffi::c_void, length: usize, vec: *mut u8) -> i32;
}

// ---------------------------------------------------------------------------------
// The parent: children in alternating order, then the table

fn parent(args: &Args) -> Res<()> {
    let engines: Vec<String> =
        args.engines.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if let Some(bad) = engines.iter().find(|e| !["runs", "fjall"].contains(&e.as_str())) {
        return Err(format!("unknown engine {bad:?} (runs, fjall)"));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    eprintln!(
        "cold_tier_compare: keys {} checkpoint {} lookups {} seed {} rounds {}; load average {}; {} cores; MemAvailable {} MiB",
        args.keys,
        args.checkpoint,
        args.lookups,
        args.seed,
        args.rounds,
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        meminfo_kib("MemAvailable:") / 1024
    );
    let mut results = Vec::new();
    for round in 0..args.rounds {
        let mut order = engines.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for engine in order {
            let dir = tempfile::Builder::new()
                .prefix(&format!("cold-compare-{engine}-"))
                .tempdir_in(&args.dir)
                .map_err(|e| format!("temp dir in {}: {e}", args.dir.display()))?;
            eprintln!("== round {} engine {engine} in {}", round + 1, dir.path().display());
            let mut cmd = Command::new(&exe);
            cmd.args(["--keys", &args.keys.to_string()])
                .args(["--checkpoint", &args.checkpoint.to_string()])
                .args(["--lookups", &args.lookups.to_string()])
                .args(["--seed", &args.seed.to_string()])
                .args(["--fjall-cache-mib", &args.fjall_cache_mib.to_string()])
                .args(["--fjall-compression", compression_name(args.fjall_compression)])
                .args(["--fjall-write", fjall_write_name(args.fjall_write)])
                .args(["--child", &engine])
                .arg("--child-dir")
                .arg(dir.path());
            let out = cmd.output().map_err(|e| format!("running {engine}: {e}"))?;
            std::io::stderr().write_all(&out.stderr).map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("{engine} failed: {}", out.status));
            }
            let mut v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{engine}'s result: {e}"))?;
            v["round"] = json!(round + 1);
            results.push(v);
        }
    }
    if args.json {
        println!("{}", Value::Array(results));
    } else {
        print_table(&results);
    }
    Ok(())
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Lz4 => "lz4",
    }
}

fn fjall_write_name(w: FjallWrite) -> &'static str {
    match w {
        FjallWrite::Ingest => "ingest",
        FjallWrite::Batch => "batch",
    }
}

fn print_table(results: &[Value]) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "| round | engine | ingest s | ingest MB/s | absent ns | absent grp 1st/2nd ns | present ns | present grp 1st/2nd ns | disk MiB alloc (apparent) | cached MiB | RSS MiB (end) | anon MiB (peak phase) | load |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in results {
        let l = &r["lookups"];
        let anon_peak = r["memory"].as_array().map_or(0, |m| m.iter().map(|p| u(&p["anon_kib"])).max().unwrap_or(0));
        let rss_end = r["memory"].as_array().and_then(|m| m.last()).map_or(0, |p| u(&p["rss_kib"]));
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.0} | {:.0} / {:.0} | {:.0} | {:.0} / {:.0} | {:.0} ({:.0}) | {:.0} | {} | {} | {} -> {} |",
            r["round"],
            r["engine_label"].as_str().unwrap_or("?"),
            f(&r["ingest"]["total_s"]),
            f(&r["ingest"]["mb_per_s"]),
            f(&l["absent"]["single_ns"]),
            f(&l["absent"]["group_first_ns"]),
            f(&l["absent"]["group_second_ns"]),
            f(&l["present"]["single_ns"]),
            f(&l["present"]["group_first_ns"]),
            f(&l["present"]["group_second_ns"]),
            u(&r["disk"]["allocated_bytes"]) as f64 / f64::from(1 << 20),
            u(&r["disk"]["file_bytes"]) as f64 / f64::from(1 << 20),
            u(&r["disk"]["cached_bytes"]) as f64 / f64::from(1 << 20),
            rss_end / 1024,
            anon_peak / 1024,
            r["load_start"].as_str().unwrap_or(""),
            r["load_end"].as_str().unwrap_or(""),
        );
    }
}

// ---------------------------------------------------------------------------------
// The child: one engine

/// What the benchmark asks of an engine.
trait Cold {
    /// Takes one checkpoint's transactions durably; returns the seconds spent on
    /// anything beyond writing this checkpoint (merges), if done inline.
    fn checkpoint(&mut self, rows: Vec<Row>) -> Res<f64>;
    /// Waits until background work (flushes, compactions) is idle; returns how long
    /// it was busy.
    fn quiesce(&mut self) -> Res<Duration>;
    /// The transaction with this id, copied into `out`.
    fn get(&self, key: &Key, out: &mut Entry) -> Res<bool>;
    /// Touches what `get` will read (the engine warms a group before judging it).
    fn warm(&self, key: &Key);
    /// A description of the layout (runs, levels).
    fn layout(&self) -> Value;
}

fn child(args: &Args, engine: &str) -> Res<()> {
    let dir = args.child_dir.clone().ok_or("--child needs --child-dir")?;
    if args.checkpoint == 0 || args.keys == 0 {
        return Err("--keys and --checkpoint must be positive".into());
    }
    let load_start = loadavg();
    let mut mem = vec![memory("start")];
    let (mut cold, label, settings): (Box<dyn Cold>, String, Value) = match engine {
        "runs" => (Box::new(Runs::new(&dir)), "runs".into(), json!({"bloom_bits_per_key": 12, "merge_fanin": 4})),
        "fjall" => {
            let (f, settings) = fjall_open(&dir, args)?;
            let label =
                format!("fjall-{}-{}", fjall_write_name(args.fjall_write), compression_name(args.fjall_compression));
            (Box::new(f), label, settings)
        }
        other => return Err(format!("unknown engine {other:?}")),
    };

    // Ingest, a checkpoint at a time; generating the rows is not timed.
    let mut batches = Vec::new();
    let mut ingest = Duration::ZERO;
    let mut extra_s = 0.0;
    let mut start = 0;
    while start < args.keys {
        let end = (start + args.checkpoint).min(args.keys);
        let rows: Vec<_> = (start..end).map(|i| transaction(args.seed, i)).collect();
        let t = Instant::now();
        let extra = cold.checkpoint(rows)?;
        let took = t.elapsed();
        ingest += took;
        extra_s += extra;
        eprintln!(
            "    checkpoint {:>3}: {:>8} rows in {:>7.3} s (of which merges {:.3} s)",
            batches.len() + 1,
            end - start,
            took.as_secs_f64(),
            extra
        );
        batches.push(json!({"rows": end - start, "s": took.as_secs_f64(), "merge_s": extra}));
        start = end;
    }
    mem.push(memory("after ingest"));
    let quiesce = cold.quiesce()?;
    let total = ingest + quiesce;
    let logical = args.keys * (ENTRY_BYTES as u64 + SECONDARY_BYTES);
    eprintln!(
        "    ingest {:.3} s + background work to idle {:.3} s = {:.3} s: {:.1} MB/s of {} logical bytes",
        ingest.as_secs_f64(),
        quiesce.as_secs_f64(),
        total.as_secs_f64(),
        logical as f64 / 1e6 / total.as_secs_f64(),
        logical
    );
    mem.push(memory("after idle"));
    let (file_bytes, allocated_bytes) = disk_usage(&dir)?;

    // Lookups.
    let n = args.lookups;
    let mut lookups = json!({});
    for kind in ["absent", "present"] {
        let keys_for = |pass: u64| -> Vec<Key> {
            (0..n)
                .map(|j| match kind {
                    "absent" => id_key(absent_seed(args.seed, pass), j),
                    _ => id_key(history_seed(args.seed), present_index(args.seed, pass, j, args.keys)),
                })
                .collect()
        };
        let expect = if kind == "present" { n } else { 0 };
        let single_keys = keys_for(0);
        let mut out = [0u8; ENTRY_BYTES];
        let t = Instant::now();
        let mut found = 0u64;
        for k in &single_keys {
            if cold.get(k, &mut out)? {
                found += 1;
                if out[..KEY_BYTES] != k[..] {
                    return Err(format!("{label}: {kind} lookup returned another id's entry"));
                }
            }
        }
        let single = t.elapsed();
        drop(single_keys);
        let group_keys = keys_for(1);
        let (mut first, mut second) = (Duration::ZERO, Duration::ZERO);
        let (mut found1, mut found2) = (0u64, 0u64);
        for group in group_keys.chunks(GROUP) {
            let t = Instant::now();
            for k in group {
                cold.warm(k);
            }
            for k in group {
                found1 += u64::from(cold.get(k, &mut out)?);
            }
            first += t.elapsed();
            let t = Instant::now();
            for k in group {
                found2 += u64::from(cold.get(k, &mut out)?);
            }
            second += t.elapsed();
        }
        let ns = |d: Duration| d.as_nanos() as f64 / n.max(1) as f64;
        eprintln!(
            "    {kind:<7} lookups: one at a time {:>7.0} ns/op; groups of {GROUP}: first pass {:>7.0} ns/op, second {:>7.0} ns/op; found {found} / {found1} / {found2} of {n}",
            ns(single),
            ns(first),
            ns(second)
        );
        if [found, found1, found2] != [expect; 3] {
            return Err(format!("{label}: {kind} lookups found {found} / {found1} / {found2}, expected {expect} each"));
        }
        lookups[kind] = json!({
            "n": n,
            "found": found,
            "group_found_first": found1,
            "group_found_second": found2,
            "single_ns": ns(single),
            "group_first_ns": ns(first),
            "group_second_ns": ns(second),
        });
        mem.push(memory(&format!("after {kind} lookups")));
    }
    let cached = cached_bytes(&dir);
    eprintln!(
        "    disk {file_bytes} bytes ({allocated_bytes} allocated), {cached} of them in the page cache; layout {}",
        cold.layout()
    );
    let result = json!({
        "engine": engine,
        "engine_label": label,
        "settings": settings,
        "keys": args.keys,
        "checkpoint": args.checkpoint,
        "ingest": {
            "batches": batches,
            "checkpoints_s": ingest.as_secs_f64(),
            "merges_inline_s": extra_s,
            "idle_wait_s": quiesce.as_secs_f64(),
            "total_s": total.as_secs_f64(),
            "logical_bytes": logical,
            "mb_per_s": logical as f64 / 1e6 / total.as_secs_f64(),
        },
        "lookups": lookups,
        "disk": {"file_bytes": file_bytes, "allocated_bytes": allocated_bytes, "cached_bytes": cached},
        "layout": cold.layout(),
        "memory": mem,
        "load_start": load_start,
        "load_end": loadavg(),
    });
    drop(cold);
    println!("{result}");
    Ok(())
}

// ---------------------------------------------------------------------------------
// runs: ledger_store::table as ledger-core uses it

struct Runs {
    dir: PathBuf,
    storage: Storage,
    /// Newest first.
    runs: Vec<Table>,
    next_id: u64,
}

impl Runs {
    fn new(dir: &Path) -> Runs {
        Runs { dir: dir.to_path_buf(), storage: Storage::os(), runs: Vec::new(), next_id: 1 }
    }

    fn take_name(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        format!("run-{id:020}.tbl")
    }

    /// ledger-core's `mergeable`: the first `MERGE_FANIN` of the first (newest) stretch
    /// of at least that many adjacent runs of one size class (a power of 4 in entries).
    fn mergeable(&self) -> Option<std::ops::Range<usize>> {
        let class = |t: &Table| (t.len().max(1) as u64).ilog(MERGE_FANIN as u64);
        let mut start = 0;
        while start < self.runs.len() {
            let c = class(&self.runs[start]);
            let len = self.runs[start..].iter().take_while(|t| class(t) == c).count();
            if len >= MERGE_FANIN {
                return Some(start..start + MERGE_FANIN);
            }
            start += len;
        }
        None
    }

    /// Merges `inputs` (newest first; the newest wins on an id) into one run: a k-way
    /// merge of the entries, then of the secondary entries.
    fn merge(&mut self, range: std::ops::Range<usize>) -> Res<Table> {
        let name = self.take_name();
        let inputs = &self.runs[range];
        let upper: u64 = inputs.iter().map(|t| t.len() as u64).sum();
        let mut b =
            TableBuilder::create(&self.storage, &self.dir, &name, ENTRY_BYTES, upper).map_err(|e| e.to_string())?;
        let mut at = vec![0usize; inputs.len()];
        loop {
            let mut best: Option<(usize, &[u8])> = None;
            for (i, t) in inputs.iter().enumerate() {
                if at[i] < t.len() {
                    let key = &t.entry(at[i])[..KEY_BYTES];
                    if best.is_none_or(|(_, b)| key < b) {
                        best = Some((i, key));
                    }
                }
            }
            let Some((i, key)) = best else { break };
            b.push_entry(inputs[i].entry(at[i])).map_err(|e| e.to_string())?;
            for (j, t) in inputs.iter().enumerate() {
                if at[j] < t.len() && t.entry(at[j])[..KEY_BYTES] == *key {
                    at[j] += 1;
                }
            }
        }
        let mut sat = vec![0usize; inputs.len()];
        loop {
            let mut best: Option<(usize, (u64, u64))> = None;
            for (i, t) in inputs.iter().enumerate() {
                if sat[i] < t.secondary_len() {
                    let (g, o, _, _) = t.secondary_at(sat[i]);
                    if best.is_none_or(|(_, b)| (g, o) < b) {
                        best = Some((i, (g, o)));
                    }
                }
            }
            let Some((i, (g, o))) = best else { break };
            let (_, _, aux, key) = inputs[i].secondary_at(sat[i]);
            b.push_secondary(g, o, aux, &key).map_err(|e| e.to_string())?;
            for (j, t) in inputs.iter().enumerate() {
                if sat[j] < t.secondary_len() && t.secondary_at(sat[j]).0 == g && t.secondary_at(sat[j]).1 == o {
                    sat[j] += 1;
                }
            }
        }
        let info = b.finish().map_err(|e| e.to_string())?;
        Table::open_written(&info).map_err(|e| e.to_string())
    }
}

impl Cold for Runs {
    fn checkpoint(&mut self, rows: Vec<Row>) -> Res<f64> {
        // As build_run: sort references by id, write; sort by (client, seq), write.
        let mut refs: Vec<&Row> = rows.iter().collect();
        refs.sort_unstable_by(|a, b| a.0[..KEY_BYTES].cmp(&b.0[..KEY_BYTES]));
        let name = self.take_name();
        let mut b = TableBuilder::create(&self.storage, &self.dir, &name, ENTRY_BYTES, refs.len() as u64)
            .map_err(|e| e.to_string())?;
        for r in &refs {
            b.push_entry(&r.0).map_err(|e| e.to_string())?;
        }
        refs.sort_unstable_by_key(|r| (r.1.0, r.1.1));
        for r in &refs {
            let (client, seq, ts, key) = r.1;
            b.push_secondary(client, seq, ts, &key).map_err(|e| e.to_string())?;
        }
        let info = b.finish().map_err(|e| e.to_string())?;
        self.runs.insert(0, Table::open_written(&info).map_err(|e| e.to_string())?);
        drop(refs);
        drop(rows);
        // The engine merges on a thread of its own; here inline, timed apart.
        let t = Instant::now();
        while let Some(range) = self.mergeable() {
            let merged = self.merge(range.clone())?;
            let gone: Vec<Table> = self.runs.splice(range, [merged]).collect();
            for old in gone {
                let path = old.path().to_path_buf();
                drop(old);
                ledger_store::table::remove_table(&self.storage, &path).map_err(|e| e.to_string())?;
            }
        }
        Ok(t.elapsed().as_secs_f64())
    }

    fn quiesce(&mut self) -> Res<Duration> {
        Ok(Duration::ZERO)
    }

    fn get(&self, key: &Key, out: &mut Entry) -> Res<bool> {
        let hash = key_hash(key);
        Ok(self
            .runs
            .iter()
            .find_map(|t| t.find_hashed(key, hash).map(|p| t.entry(p)))
            .map(|e| out.copy_from_slice(e))
            .is_some())
    }

    fn warm(&self, key: &Key) {
        let hash = key_hash(key);
        for t in &self.runs {
            t.prefetch_hashed(hash);
        }
    }

    fn layout(&self) -> Value {
        json!({"runs_newest_first": self.runs.iter().map(Table::len).collect::<Vec<_>>()})
    }
}

// ---------------------------------------------------------------------------------
// fjall

struct Fjall {
    db: fjall::Database,
    tx: fjall::Keyspace,
    by_client: fjall::Keyspace,
    write: FjallWrite,
}

/// Opens fjall for this workload:
///
/// - journal: `manual_journal_persist`, durability by `persist(SyncAll)` at the end of
///   each checkpoint (with `--fjall-write ingest` nothing goes through the journal at
///   all: the rows come sorted from the checkpoint and become tables directly);
/// - `tx`: Bloom filters of 12 bits per key on every level (the runs' 12 bits per key;
///   fjall's default is a 0.01% rate on L0 and 10 bits below), filter and index blocks
///   pinned on every level (point lookups dominate, mostly of absent ids), 4 KiB data
///   blocks (the default, for point reads);
/// - `by_client`: no filters (only scanned by range), same block size;
/// - data blocks compressed as `--fjall-compression` (default none: the runs are
///   uncompressed; lz4 is fjall's default below L1);
/// - block cache `--fjall-cache-mib` (default 256 MiB), leveled compaction (default),
///   worker threads as the cores (default, at most 4).
fn fjall_open(dir: &Path, args: &Args) -> Res<(Fjall, Value)> {
    use fjall::config::{BloomConstructionPolicy, CompressionPolicy, FilterPolicy, FilterPolicyEntry, PinningPolicy};
    let compression = match args.fjall_compression {
        Compression::None => fjall::CompressionType::None,
        Compression::Lz4 => fjall::CompressionType::Lz4,
    };
    let db = fjall::Database::builder(dir)
        .cache_size(args.fjall_cache_mib << 20)
        .manual_journal_persist(true)
        .open()
        .map_err(|e| format!("fjall open: {e}"))?;
    let tx = db
        .keyspace("tx", || {
            fjall::KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .filter_policy(FilterPolicy::all(FilterPolicyEntry::Bloom(BloomConstructionPolicy::BitsPerKey(12.0))))
                .filter_block_pinning_policy(PinningPolicy::all(true))
                .index_block_pinning_policy(PinningPolicy::all(true))
                .data_block_compression_policy(CompressionPolicy::all(compression))
        })
        .map_err(|e| format!("fjall keyspace: {e}"))?;
    let by_client = db
        .keyspace("by_client", || {
            fjall::KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .filter_policy(FilterPolicy::disabled())
                .data_block_compression_policy(CompressionPolicy::all(compression))
        })
        .map_err(|e| format!("fjall keyspace: {e}"))?;
    let settings = json!({
        "write": fjall_write_name(args.fjall_write),
        "compression": compression_name(args.fjall_compression),
        "cache_mib": args.fjall_cache_mib,
        "bloom_bits_per_key": 12,
        "pinned": "filter and index blocks, all levels (tx)",
        "journal": "manual persist; persist(SyncAll) per checkpoint",
        "compaction": "leveled (default)",
    });
    Ok((Fjall { db, tx, by_client, write: args.fjall_write }, settings))
}

fn client_key(client: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&client.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn client_value(ts: u64, key: &Key) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&ts.to_le_bytes());
    v[8..].copy_from_slice(key);
    v
}

impl Cold for Fjall {
    fn checkpoint(&mut self, mut rows: Vec<Row>) -> Res<f64> {
        let err = |e: fjall::Error| format!("fjall: {e}");
        match self.write {
            FjallWrite::Ingest => {
                rows.sort_unstable_by(|a, b| a.0[..KEY_BYTES].cmp(&b.0[..KEY_BYTES]));
                let mut ing = self.tx.start_ingestion().map_err(err)?;
                for (e, _) in &rows {
                    ing.write(&e[..KEY_BYTES], &e[KEY_BYTES..]).map_err(err)?;
                }
                ing.finish().map_err(err)?;
                rows.sort_unstable_by_key(|r| (r.1.0, r.1.1));
                let mut ing = self.by_client.start_ingestion().map_err(err)?;
                for (_, (client, seq, ts, key)) in &rows {
                    ing.write(&client_key(*client, *seq)[..], &client_value(*ts, key)[..]).map_err(err)?;
                }
                ing.finish().map_err(err)?;
            }
            FjallWrite::Batch => {
                let mut batch = self.db.batch().durability(None);
                for (e, (client, seq, ts, key)) in &rows {
                    batch.insert(&self.tx, &e[..KEY_BYTES], &e[KEY_BYTES..]);
                    batch.insert(&self.by_client, &client_key(*client, *seq)[..], &client_value(*ts, key)[..]);
                }
                batch.commit().map_err(err)?;
            }
        }
        self.db.persist(fjall::PersistMode::SyncAll).map_err(err)?;
        Ok(0.0)
    }

    fn quiesce(&mut self) -> Res<Duration> {
        // Idle = no flush outstanding and no compaction running, seen 5 times in a row
        // 100 ms apart; the wait counted is up to the first of those 5 observations.
        let started = Instant::now();
        let mut idle_since = None;
        let mut idle = 0;
        while idle < 5 {
            let busy = self.db.outstanding_flushes() > 0 || self.db.active_compactions() > 0;
            if busy {
                idle = 0;
                idle_since = None;
            } else {
                idle += 1;
                idle_since.get_or_insert_with(|| started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(3600) {
                return Err("fjall: background work did not finish within an hour".into());
            }
            if idle < 5 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(idle_since.unwrap_or_default())
    }

    fn get(&self, key: &Key, out: &mut Entry) -> Res<bool> {
        match self.tx.get(key).map_err(|e| format!("fjall get: {e}"))? {
            Some(v) => {
                if v.len() != ENTRY_BYTES - KEY_BYTES {
                    return Err(format!("fjall: value of {} bytes", v.len()));
                }
                out[..KEY_BYTES].copy_from_slice(key);
                out[KEY_BYTES..].copy_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn warm(&self, _key: &Key) {}

    fn layout(&self) -> Value {
        json!({
            "tx_tables": self.tx.table_count(),
            "tx_l0_tables": self.tx.l0_table_count(),
            "by_client_tables": self.by_client.table_count(),
            "compactions_completed": self.db.compactions_completed(),
            "time_compacting_s": self.db.time_compacting().as_secs_f64(),
            "cache_bytes": self.db.cache_size(),
        })
    }
}
