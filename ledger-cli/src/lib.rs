//! The operators' tools behind the `ledger` command (`../shared/design/cli-contract.md`),
//! also used by other programs of the workspace: portal-svc's whole-service backup
//! takes its ledger's part with [`backup::backup`].

pub mod backup;
pub mod dump;
pub mod inspect;
mod json;
mod progress;
pub mod verify;

/// How `dump` writes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

/// Exit statuses of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success; verify: clean.
    Ok = 0,
    /// verify: damage found; inspect --tx: not found; restore: refused; a damaged
    /// directory elsewhere.
    Found = 1,
    /// Usage error or unreadable directory.
    Usage = 2,
}

/// A failure to report on stderr with its exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status it maps to.
    pub status: Status,
    /// What to print.
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { status: Status::Usage, message: message.into() }
    }

    pub fn found(message: impl Into<String>) -> Failure {
        Failure { status: Status::Found, message: message.into() }
    }

    /// Classifies why a ledger view could not be built: damage is 1, an unreadable or
    /// foreign directory is 2.
    pub fn from_view(error: ledger_core::inspect::ViewError) -> Failure {
        use ledger_core::inspect::ViewError;
        use ledger_store::inspect::InspectError;
        match error {
            ViewError::Log(InspectError::Io { .. } | InspectError::NoSegments { .. }) => {
                Failure::usage(error.to_string())
            }
            other => Failure::found(format!("{other} (run `ledger verify` for a full report)")),
        }
    }
}
