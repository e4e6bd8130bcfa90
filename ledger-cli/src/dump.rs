//! `ledger dump DIR [--from SEQ] [--to SEQ] [--format jsonl|csv]`: the committed
//! records in seq order, read from the log as it stands (a group still being written
//! is not committed and not printed).

use std::io::{BufWriter, ErrorKind, Write};
use std::path::Path;

use ledger_core::inspect::{decode_record, scan_log};

use crate::{Failure, Format, Status, json, progress};

/// Prints records `from..=to`; `from` defaults to the first seq the log holds (older
/// segments may have been removed once a kept checkpoint covered them), `to` to the last
/// committed.
pub fn run(dir: &Path, from: Option<u64>, to: Option<u64>, format: Format) -> Result<Status, Failure> {
    let (image, outcome) = scan_log(dir).map_err(Failure::from_view)?;
    let to = to.unwrap_or(outcome.last_seq).min(outcome.last_seq);
    let first = image.segments().first().map_or(1, |s| s.first_seq);
    let from = from.unwrap_or(first);
    if from < first && from <= to {
        return Err(Failure::found(format!(
            "{}: the log starts at seq {first}; seqs from {from} are no longer in it",
            dir.display()
        )));
    }
    let bar = progress::bar(to.saturating_sub(from).saturating_add(1), "dump", false);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = (|| -> Result<(), Stop> {
        if format == Format::Csv {
            writeln!(out, "{}", json::CSV_HEADER)?;
        }
        for frame in image.frames(&outcome, from) {
            let frame = frame.map_err(|(path, offset)| {
                Stop::Damage(format!("{}: frame at byte {offset} changed while it was read", path.display()))
            })?;
            if frame.seq > to {
                break;
            }
            let record = decode_record(frame.seq, frame.kind, frame.payload).map_err(|e| {
                Stop::Damage(format!(
                    "{}: record {} at byte {} does not decode: {e}",
                    frame.segment.display(),
                    frame.seq,
                    frame.offset
                ))
            })?;
            match format {
                Format::Jsonl => writeln!(out, "{}", json::log_record(&record))?,
                Format::Csv => writeln!(out, "{}", json::csv_row(&record))?,
            }
            bar.inc(1);
        }
        Ok(out.flush()?)
    })();
    bar.finish_and_clear();
    match written {
        Ok(()) => Ok(Status::Ok),
        // A reader that stopped early (`| head`) is not a failure of the dump.
        Err(Stop::Write(e)) if e.kind() == ErrorKind::BrokenPipe => Ok(Status::Ok),
        Err(Stop::Write(e)) => Err(Failure::usage(format!("writing the dump to stdout: {e}"))),
        Err(Stop::Damage(message)) => Err(Failure::found(message)),
    }
}

/// Why a dump stopped early.
#[derive(Debug)]
enum Stop {
    /// Writing to stdout failed.
    Write(std::io::Error),
    /// A record could not be read: damage.
    Damage(String),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Write(e)
    }
}
