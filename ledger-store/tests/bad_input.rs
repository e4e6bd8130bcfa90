//! Bad input gets a clear, typed error: each test asserts the exact error variant, that
//! the message names the offending path, and that nothing on disk was changed.
//!
//! Some cases need another process: a second process holding the lock, and an
//! unprivileged user (as root, which CI runs as, permission bits do not stop
//! `open`). For those the test binary re-executes itself, running the ignored test
//! `bad_input_child`, which does nothing unless `LEDGER_BAD_INPUT_CHILD_PATHS` is set.

// A test fails by panicking: unwrap is the point here.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ledger_store::format::{
    FORMAT_VERSION, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, SegmentHeader, segment_file_name,
};
use ledger_store::{
    AppendError, HeaderFault, Log, LogOptions, OpenError, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MULTIPLE,
};

/// Set in the child: the paths to open, joined with `std::env::join_paths`.
const CHILD_PATHS_ENV: &str = "LEDGER_BAD_INPUT_CHILD_PATHS";
const CHILD_TEST_NAME: &str = "bad_input_child";
/// The conventional `nobody` / `nogroup`.
const UNPRIVILEGED: u32 = 65534;

const SEGMENT_BYTES: usize = 64 << 10;

/// The tests of this file run one at a time. `run_child` forks (it sets a uid, so std
/// cannot use posix_spawn): between fork and exec the child holds a copy of every open
/// descriptor, a concurrent test's `LOCK` included, and a test that closed a log and
/// reopened it in that window would see the directory `Locked` (seen under load).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn options() -> LogOptions {
    LogOptions::new().segment_bytes(SEGMENT_BYTES)
}

/// The outcome of one `Log::open`, in a form that can cross a process boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// `OpenError` variant name, or `Ok`.
    variant: String,
    /// The `io::ErrorKind` of an `Io` error, or the `HeaderFault` of a `BadSegmentHeader`.
    detail: String,
    /// The path the error carries.
    path: String,
    /// The error's `Display`.
    message: String,
}

impl Outcome {
    fn of(result: Result<Log, OpenError>) -> Outcome {
        let none = String::from("-");
        let (variant, detail, path) = match &result {
            Ok(log) => ("Ok", format!("next_seq={}", log.next_seq()), none),
            Err(OpenError::InvalidOptions { reason }) => ("InvalidOptions", (*reason).to_owned(), none),
            Err(OpenError::NotADirectory { path }) => ("NotADirectory", none, path.display().to_string()),
            Err(OpenError::Locked { path }) => ("Locked", none, path.display().to_string()),
            Err(OpenError::Io { path, source, .. }) => {
                ("Io", format!("{:?}", source.kind()), path.display().to_string())
            }
            Err(OpenError::BadSegmentHeader { path, fault }) => {
                ("BadSegmentHeader", format!("{fault:?}"), path.display().to_string())
            }
            Err(OpenError::Corrupt(c)) => ("Corrupt", format!("{:?}", c.kind), c.segment.display().to_string()),
            Err(other) => ("Unknown", format!("{other:?}"), none),
        };
        let message = match &result {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        Outcome { variant: variant.to_owned(), detail, path, message }
    }

    fn to_line(&self) -> String {
        format!("RESULT\t{}\t{}\t{}\t{}", self.variant, self.detail, self.path, self.message)
    }

    fn from_line(line: &str) -> Option<Outcome> {
        let mut fields = line.strip_prefix("RESULT\t")?.splitn(4, '\t');
        let mut next = || fields.next().map(str::to_owned);
        Some(Outcome { variant: next()?, detail: next()?, path: next()?, message: next()? })
    }

    /// Asserts an error of `variant` (with `detail`, when given) carrying `path` and
    /// naming it in the message.
    fn assert_error(&self, variant: &str, detail: Option<&str>, path: &Path) {
        let path = path.display().to_string();
        assert_eq!(self.variant, variant, "wrong error: {self:?}");
        if let Some(detail) = detail {
            assert_eq!(self.detail, detail, "wrong error detail: {self:?}");
        }
        assert_eq!(self.path, path, "the error carries another path: {self:?}");
        assert!(self.message.contains(&path), "the message does not name {path}: {:?}", self.message);
    }
}

/// The effective user id of this process, from `/proc/self/status` (no libc).
fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    // "Uid:" real effective saved filesystem
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// The child: opens each path it was given and reports the outcome on stdout.
#[test]
#[ignore = "child process of other tests in this file; does nothing unless LEDGER_BAD_INPUT_CHILD_PATHS is set"]
fn bad_input_child() {
    let Some(paths) = std::env::var_os(CHILD_PATHS_ENV) else { return };
    let mut out = std::io::stdout().lock();
    // libtest has printed "test bad_input_child ... " without a newline: start a fresh line.
    writeln!(out, "\nEUID\t{}", euid()).unwrap();
    for path in std::env::split_paths(&paths) {
        writeln!(out, "{}", Outcome::of(Log::open(&path, options())).to_line()).unwrap();
    }
    out.flush().unwrap();
}

/// Runs `bad_input_child` in a new process in `cwd`, as `nobody` when `unprivileged`,
/// opening `paths`. Returns the child's effective uid and one outcome per path.
fn run_child(paths: &[PathBuf], unprivileged: bool, cwd: &Path) -> (u32, Vec<Outcome>) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["--exact", CHILD_TEST_NAME, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_PATHS_ENV, std::env::join_paths(paths).unwrap())
        .current_dir(cwd)
        .stdin(Stdio::null());
    if unprivileged {
        // std drops the supplementary groups too (setgroups(0)) when root sets a uid.
        cmd.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
    }
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if unprivileged && e.kind() == std::io::ErrorKind::PermissionDenied => panic!(
            "cannot run the test binary {} as uid {UNPRIVILEGED}: {e}. The permission-denied test needs it to be \
             reachable and executable by an unprivileged user (every directory on its path needs o+x; a target \
             directory under /root usually is not). Build in a world-traversable directory, e.g. \
             CARGO_TARGET_DIR=/tmp/target.",
            exe.display()
        ),
        Err(e) => panic!("cannot run the test binary {}: {e}", exe.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let euid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("EUID\t"))
        .unwrap_or_else(|| panic!("the child did not report its uid (did the child test run?):\n{stdout}\n{stderr}"))
        .parse()
        .unwrap();
    let outcomes: Vec<Outcome> = stdout.lines().filter_map(Outcome::from_line).collect();
    assert_eq!(outcomes.len(), paths.len(), "the child reported another number of outcomes:\n{stdout}\n{stderr}");
    (euid, outcomes)
}

/// Names of the entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Every file of `dir` with its bytes, sorted by name, to check that nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir).into_iter().map(|name| (name.clone(), fs::read(dir.join(&name)).unwrap())).collect()
}

/// All `(seq, kind, payload)` of a log, from its first frame.
fn frames(log: &Log) -> Vec<(u64, u16, Vec<u8>)> {
    let reader = log.reader();
    let mut cursor = reader.cursor(reader.first_seq()).unwrap();
    let mut out = Vec::new();
    while let Some(frame) = cursor.next() {
        let frame = frame.unwrap();
        out.push((frame.seq, frame.kind, frame.payload.to_vec()));
    }
    out
}

// (a) --------------------------------------------------------------------------------

#[test]
fn regular_file_is_not_a_directory() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-log.txt");
    fs::write(&file, b"just a file").unwrap();

    Outcome::of(Log::open(&file, options())).assert_error("NotADirectory", None, &file);
    assert!(
        matches!(Log::open(&file, options()), Err(OpenError::NotADirectory { ref path }) if *path == file),
        "not the exact variant"
    );
    assert_eq!(fs::read(&file).unwrap(), b"just a file", "the file was changed");
    assert_eq!(listing(tmp.path()), ["not-a-log.txt"], "open created something next to the file");

    // A symbolic link to a regular file is no directory either.
    let link = tmp.path().join("link-to-file");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    Outcome::of(Log::open(&link, options())).assert_error("NotADirectory", None, &link);

    // Not a regular file either, but still no directory.
    Outcome::of(Log::open("/dev/null", options())).assert_error("NotADirectory", None, Path::new("/dev/null"));

    // A dangling symbolic link cannot be made a directory: an I/O error that names it.
    let dangling = tmp.path().join("dangling");
    std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling).unwrap();
    Outcome::of(Log::open(&dangling, options())).assert_error("Io", None, &dangling);
    assert!(!tmp.path().join("nowhere").exists(), "open created the target of a dangling link");

    // A path *below* a regular file cannot be created: an I/O error that names it.
    let below = file.join("log");
    Outcome::of(Log::open(&below, options())).assert_error("Io", Some("NotADirectory"), &below);
    assert_eq!(fs::read(&file).unwrap(), b"just a file", "the file was changed");
}

/// An empty path names no directory: it must be refused, and nothing may be created
/// anywhere (in particular not in the current directory, which `"".join("LOCK")` would
/// hit). Runs in a child whose current directory is an empty temporary one.
#[test]
fn empty_path_is_refused_without_touching_the_current_directory() {
    let _serial = serial();
    let cwd = tempfile::tempdir().unwrap();
    let (_, outcomes) = run_child(&[PathBuf::new()], false, cwd.path());
    let outcome = &outcomes[0];
    println!("Log::open(\"\") -> {outcome:?}");
    assert_ne!(outcome.variant, "Ok", "an empty path was accepted as a log directory: {outcome:?}");
    assert!(
        listing(cwd.path()).is_empty(),
        "Log::open(\"\") created {:?} in the current directory and returned {outcome:?}",
        listing(cwd.path())
    );
}

// (b) --------------------------------------------------------------------------------

/// A directory the user may not write (no LOCK can be created), one the user may not
/// even enter, and a path below the latter: each is `Io` with `PermissionDenied`, naming
/// the path that was refused. As root, the opens run in a child process as `nobody`,
/// since permission bits do not stop root.
#[test]
fn directory_without_permission_is_permission_denied() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    // tempdir makes 0o700; an unprivileged child must be able to traverse it.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let read_only = tmp.path().join("read-only");
    let no_entry = tmp.path().join("no-entry");
    let below_no_entry = no_entry.join("log");
    fs::create_dir(&read_only).unwrap();
    fs::create_dir(&no_entry).unwrap();
    let paths = vec![read_only.clone(), no_entry.clone(), below_no_entry.clone()];

    let as_root = euid() == 0;
    let outcomes = if as_root {
        // Owned by root: r-x for others on one, nothing for others on the other.
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&no_entry, fs::Permissions::from_mode(0o700)).unwrap();
        let (child_euid, outcomes) = run_child(&paths, true, Path::new("/"));
        assert_eq!(child_euid, UNPRIVILEGED, "the child did not drop its privileges");
        outcomes
    } else {
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(&no_entry, fs::Permissions::from_mode(0o000)).unwrap();
        let outcomes = paths.iter().map(|p| Outcome::of(Log::open(p, options()))).collect();
        // Let the temporary directory be removed.
        fs::set_permissions(&read_only, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&no_entry, fs::Permissions::from_mode(0o755)).unwrap();
        outcomes
    };
    println!("running as {}: {outcomes:#?}", if as_root { "root, opens in a child as nobody" } else { "non-root" });

    // The lock file cannot be created in either directory: the error names it.
    outcomes[0].assert_error("Io", Some("PermissionDenied"), &read_only.join("LOCK"));
    outcomes[1].assert_error("Io", Some("PermissionDenied"), &no_entry.join("LOCK"));
    // The path below the unenterable directory cannot even be inspected.
    outcomes[2].assert_error("Io", Some("PermissionDenied"), &below_no_entry);
    for o in &outcomes {
        assert!(o.message.to_lowercase().contains("permission denied"), "the message hides the cause: {o:?}");
    }
    assert!(listing(&read_only).is_empty(), "a refused open created files");
    assert!(listing(&no_entry).is_empty(), "a refused open created files");
}

// (c) --------------------------------------------------------------------------------

#[test]
fn foreign_segment_header_is_refused_and_left_untouched() {
    let _serial = serial();
    // The only segment is a foreign file of a valid segment size.
    let tmp = tempfile::tempdir().unwrap();
    let foreign = tmp.path().join(segment_file_name(1));
    let bytes: Vec<u8> =
        b"NOT A LEDGER SEGMENT, just some file. ".iter().copied().cycle().take(SEGMENT_BYTES).collect();
    fs::write(&foreign, &bytes).unwrap();
    let result = Log::open(tmp.path(), options());
    assert!(
        matches!(&result, Err(OpenError::BadSegmentHeader { path, fault: HeaderFault::ForeignMagic }) if *path == foreign),
        "expected BadSegmentHeader/ForeignMagic for {}: {result:?}",
        foreign.display()
    );
    Outcome::of(result).assert_error("BadSegmentHeader", Some("ForeignMagic"), &foreign);
    assert_eq!(fs::read(&foreign).unwrap(), bytes, "the foreign file was changed");
    let segments: Vec<String> = listing(tmp.path()).into_iter().filter(|n| n.ends_with(".seg")).collect();
    assert_eq!(segments, [segment_file_name(1)], "open created segments next to the foreign file");
    // The refused open released the directory: without the foreign file it opens.
    fs::remove_file(&foreign).unwrap();
    let log = Log::open(tmp.path(), options()).unwrap();
    assert_eq!((log.recovery().frames, log.next_seq()), (0, 1));
    drop(log);

    // A foreign file after the valid segments of a real log: refused, nothing changed.
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(tmp.path(), options()).unwrap();
        log.append(1, b"kept").unwrap();
        log.commit().unwrap();
    }
    let foreign = tmp.path().join(segment_file_name(50));
    fs::write(&foreign, &bytes).unwrap();
    let before = snapshot(tmp.path());
    Outcome::of(Log::open(tmp.path(), options())).assert_error("BadSegmentHeader", Some("ForeignMagic"), &foreign);
    assert_eq!(snapshot(tmp.path()), before, "a refused open changed files");

    // Shorter than a header, and a real header of an unknown format version.
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join(segment_file_name(1));
    fs::write(&short, b"LEDGRLOG").unwrap();
    Outcome::of(Log::open(tmp.path(), options())).assert_error("BadSegmentHeader", Some("TooShort"), &short);
    assert_eq!(fs::read(&short).unwrap(), b"LEDGRLOG", "the short file was changed");

    // A later format, and version 1 (frames without commit-group end marks, whose
    // recovery would cut every group): both refused, untouched.
    for version in [FORMAT_VERSION + 1, 1] {
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join(segment_file_name(1));
        let mut image = vec![0u8; SEGMENT_BYTES];
        image[..SEGMENT_HEADER_BYTES]
            .copy_from_slice(&SegmentHeader { first_seq: 1, segment_bytes: SEGMENT_BYTES as u64 }.encode());
        image[8..12].copy_from_slice(&version.to_le_bytes());
        fs::write(&other, &image).unwrap();
        Outcome::of(Log::open(tmp.path(), options())).assert_error(
            "BadSegmentHeader",
            Some(&format!("UnsupportedVersion({version})")),
            &other,
        );
        assert_eq!(fs::read(&other).unwrap(), image, "the segment of another version was changed");
    }
}

// (d) --------------------------------------------------------------------------------

#[test]
fn locked_directory_in_process_and_across_processes() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut first = Log::open(&dir, options()).unwrap();
    assert_eq!(first.append(1, b"one").unwrap(), 1);
    first.commit().unwrap();

    // Same process.
    let second = Log::open(&dir, options());
    assert!(matches!(&second, Err(OpenError::Locked { path }) if *path == dir), "expected Locked: {second:?}");
    Outcome::of(second).assert_error("Locked", None, &dir);

    // Another process (same user).
    let (_, outcomes) = run_child(std::slice::from_ref(&dir), false, Path::new("/"));
    outcomes[0].assert_error("Locked", None, &dir);

    // The refused opens did not disturb the holder.
    assert_eq!(first.append(1, b"two").unwrap(), 2);
    assert_eq!(first.commit().unwrap(), 2);
    drop(first);

    // Released: this process and another one can open it now, in turn.
    let reopened = Log::open(&dir, options()).unwrap();
    assert_eq!(frames(&reopened), [(1, 1, b"one".to_vec()), (2, 1, b"two".to_vec())]);
    assert_eq!(reopened.recovery().torn_tail, None);
    drop(reopened);
    let (_, outcomes) = run_child(std::slice::from_ref(&dir), false, Path::new("/"));
    assert_eq!(outcomes[0].variant, "Ok", "another process could not open the released log: {:?}", outcomes[0]);
    assert_eq!(outcomes[0].detail, "next_seq=3", "{:?}", outcomes[0]);
}

// (e) --------------------------------------------------------------------------------

#[test]
fn invalid_options_are_refused_before_touching_the_disk() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let cases = [
        (10_000, "multiple of 4096"),
        (SEGMENT_BYTES_MIN + 1, "multiple of 4096"),
        (SEGMENT_BYTES_MIN + SEGMENT_BYTES_MULTIPLE / 2, "multiple of 4096"),
        (SEGMENT_BYTES_MULTIPLE, "below the minimum"),
        (SEGMENT_BYTES_MIN - SEGMENT_BYTES_MULTIPLE, "below the minimum"),
        (0, "below the minimum"),
        (SEGMENT_BYTES_MAX + SEGMENT_BYTES_MULTIPLE, "above the maximum"),
    ];
    for (segment_bytes, why) in cases {
        let result = Log::open(&dir, LogOptions::new().segment_bytes(segment_bytes));
        match result {
            Err(OpenError::InvalidOptions { reason }) => {
                assert!(reason.contains(why), "segment_bytes {segment_bytes}: reason {reason:?} does not say {why:?}");
                assert!(reason.contains("segment_bytes"), "the reason does not name the option: {reason:?}");
            }
            other => panic!("segment_bytes {segment_bytes}: expected InvalidOptions, got {other:?}"),
        }
        assert!(!dir.exists(), "segment_bytes {segment_bytes}: a refused open created the directory");
    }
    // The bounds themselves are accepted.
    let min = Log::open(&dir, LogOptions::new().segment_bytes(SEGMENT_BYTES_MIN)).unwrap();
    assert_eq!(fs::metadata(dir.join(segment_file_name(1))).unwrap().len(), SEGMENT_BYTES_MIN as u64);
    drop(min);
}

// (f) --------------------------------------------------------------------------------

#[test]
fn rejected_appends_change_nothing() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let max = SEGMENT_BYTES - SEGMENT_HEADER_BYTES - FRAME_HEADER_BYTES;
    let big: Vec<u8> = (0..max).map(|i| u8::try_from(i % 251).unwrap()).collect();
    let too_big = vec![7u8; max + 1];
    let segment_count = || listing(dir).iter().filter(|n| n.ends_with(".seg")).count();
    let rejected = |log: &mut Log| {
        let next = log.next_seq();
        assert!(matches!(log.append(0, b"reserved"), Err(AppendError::ReservedKind)), "kind 0 was not refused");
        let mut called = false;
        let in_place = log.append_in_place(0, 4, |_| called = true);
        assert!(matches!(in_place, Err(AppendError::ReservedKind)), "kind 0 was not refused: {in_place:?}");
        assert!(!called, "the fill closure of a refused append ran");
        match log.append(1, &too_big) {
            Err(AppendError::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        for len in [max + 1, usize::MAX] {
            let in_place = log.append_in_place(1, len, |_| unreachable!("fill of a refused append"));
            assert!(matches!(in_place, Err(AppendError::TooLarge { len: l, .. }) if l == len), "{in_place:?}");
        }
        assert_eq!(log.next_seq(), next, "a refused append consumed a sequence number");
    };

    {
        let mut log = Log::open(dir, options()).unwrap();
        assert_eq!(log.payload_bytes_max(), max);
        assert_eq!(log.append(1, b"a").unwrap(), 1);
        rejected(&mut log);
        assert_eq!(segment_count(), 1, "a refused append rolled over");
        assert_eq!(log.commit().unwrap(), 1);
        // Refused appends in the middle of a group do not break it.
        assert_eq!(log.append(2, b"b").unwrap(), 2);
        rejected(&mut log);
        assert_eq!(log.append(3, b"c").unwrap(), 3);
        assert_eq!(log.commit().unwrap(), 3);
        // The largest payload still fits (in a segment of its own).
        assert_eq!(log.append(4, &big).unwrap(), 4);
        rejected(&mut log);
        assert_eq!(log.commit().unwrap(), 4);
        assert_eq!(segment_count(), 2);
        // Refused appends with nothing pending: commit has nothing to do.
        rejected(&mut log);
        assert_eq!(log.commit().unwrap(), 4);
    }
    let log = Log::open(dir, options()).unwrap();
    assert_eq!(log.recovery().torn_tail, None, "{:?}", log.recovery());
    assert_eq!((log.recovery().frames, log.next_seq()), (4, 5));
    let expected = vec![(1, 1, b"a".to_vec()), (2, 2, b"b".to_vec()), (3, 3, b"c".to_vec()), (4, 4, big)];
    assert!(frames(&log) == expected, "the reopened log holds other frames than the accepted ones");
}

// (g) --------------------------------------------------------------------------------

#[test]
fn non_last_segment_of_wrong_length_is_refused_by_name() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let segment_bytes = SEGMENT_BYTES_MIN;
    {
        let mut log = Log::open(dir, LogOptions::new().segment_bytes(segment_bytes)).unwrap();
        let mut seq = 0;
        while listing(dir).iter().filter(|n| n.ends_with(".seg")).count() < 4 {
            seq = log.append(1, &[9u8; 500]).unwrap();
        }
        assert_eq!(log.commit().unwrap(), seq);
    }
    let segments: Vec<PathBuf> = listing(dir).iter().filter(|n| n.ends_with(".seg")).map(|n| dir.join(n)).collect();
    assert_eq!(segments.len(), 4);
    let original = snapshot(dir);

    // Cut short (the first, a middle one), and grown (a middle one): refused by name.
    let cases =
        [(0, 4096), (0, SEGMENT_HEADER_BYTES as u64), (1, segment_bytes as u64 - 16), (2, segment_bytes as u64 + 4096)];
    for (index, len) in cases {
        let victim = &segments[index];
        fs::OpenOptions::new().write(true).open(victim).unwrap().set_len(len).unwrap();
        let damaged = snapshot(dir);
        Outcome::of(Log::open(dir, options())).assert_error("BadSegmentHeader", Some("NameOrSizeMismatch"), victim);
        assert_eq!(snapshot(dir), damaged, "a refused open changed files ({} cut to {len})", victim.display());
        // Put the segment back.
        let bytes = &original.iter().find(|(n, _)| dir.join(n) == *victim).unwrap().1;
        fs::write(victim, bytes).unwrap();
    }
    // Intact again: it opens and holds everything.
    let log = Log::open(dir, options()).unwrap();
    assert_eq!(log.recovery().torn_tail, None);
    assert_eq!(log.recovery().segments, 4);
}
