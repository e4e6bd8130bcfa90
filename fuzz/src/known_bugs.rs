//! Known, reported and not yet fixed bugs of the code under test, so that fuzzing
//! (and CI's bounded run) goes on finding new ones instead of re-finding these. Each
//! has an input in `fuzz/known-bugs/<target>/` and a paragraph in `fuzz/README.md`.
//! `LEDGER_FUZZ_KNOWN_BUGS=1` runs such inputs anyway (to check a fix); when a bug is
//! fixed, its entry and gate go, and its input moves to `regressions/<target>/`.

use std::cell::RefCell;
use std::sync::Once;

/// A panic recognised as a known bug: text in its message, the file it is raised in,
/// and what the bug is.
pub type KnownPanic = (&'static str, &'static str, &'static str);

/// Panics that are a known bug wherever they happen. None today: the three found in
/// ledger-core (a commit-time overflow after a record at `u64::MAX`, a snapshot row
/// whose kind did not fit a byte, a damaged snapshot trusted whole) were fixed and their
/// inputs are regressions in `regressions/record_decoder/`.
pub const KNOWN_PANICS: &[KnownPanic] = &[];

/// Whether inputs that reach a known bug run anyway (`LEDGER_FUZZ_KNOWN_BUGS=1`).
pub fn enabled() -> bool {
    std::env::var_os("LEDGER_FUZZ_KNOWN_BUGS").is_some_and(|v| v == "1")
}

thread_local! {
    /// Set while this thread runs inside [`guard`]; the panic it records.
    static GUARDED: RefCell<Option<Option<(String, String)>>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that records the panics of guarded threads and hands
/// every other panic to the hook it replaces (libFuzzer's, which aborts).
fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let guarded = GUARDED.with(|g| g.borrow().is_some());
            if !guarded {
                return previous(info);
            }
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            GUARDED.with(|g| *g.borrow_mut() = Some(Some((message, location))));
        }));
    });
}

/// Runs `f` on this thread; a panic that is one of [`KNOWN_PANICS`] or `also` gives
/// `None` (the input is to be skipped), any other panic goes on as a panic (libFuzzer's
/// crash). Panics of other threads are not affected.
pub fn guard<T>(also: &[KnownPanic], f: impl FnOnce() -> T) -> Option<T> {
    if enabled() {
        return Some(f());
    }
    install_hook();
    GUARDED.with(|g| *g.borrow_mut() = Some(None));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let recorded = GUARDED.with(|g| g.borrow_mut().take()).flatten();
    match result {
        Ok(v) => Some(v),
        Err(_) => {
            let (message, location) = recorded.unwrap_or_default();
            let known =
                KNOWN_PANICS.iter().chain(also).any(|(m, file, _)| message.contains(m) && location.contains(file));
            if known {
                None
            } else {
                panic!("{message} (at {location})");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_panic_is_skipped_and_any_other_goes_on() {
        if enabled() {
            return;
        }
        let here: KnownPanic = ("planted", "known_bugs.rs", "a test");
        assert_eq!(guard(&[here], || 7), Some(7));
        assert_eq!(guard(&[here], || -> i32 { panic!("a planted panic") }), None);
        let other = std::panic::catch_unwind(|| guard(&[here], || -> i32 { panic!("something else") }));
        let message = other.expect_err("an unknown panic goes on").downcast::<String>().expect("a message");
        assert!(message.contains("something else") && message.contains("known_bugs.rs"), "{message}");
    }
}
