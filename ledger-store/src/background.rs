//! Background threads that must not slow the foreground.
//!
//! The engine's foreground is one thread (the sequencer) whose every call a client waits
//! for; its background (checkpoints, run merges, zero-filling the next log segment) has
//! all the time between checkpoints to finish. On a machine with few cores both kinds
//! share a core now and then, and the scheduler, seeing equal priorities, gives the
//! background its full share in the middle of a client's call; and the background's
//! writes queue on the disk in front of the log's sync. [`lower_priority`] marks the
//! calling thread as background for both: a nice value of [`BACKGROUND_NICE`] (the CPU
//! goes to the foreground when both want it, as RocksDB does for its compaction
//! threads) and the lowest best-effort I/O priority (schedulers that honour priorities,
//! such as mq-deadline and BFQ, serve the log's writes first). Neither starves the
//! background: an idle core or disk still runs it at full speed, and a ledger whose hot
//! tier is full waits for its checkpoint, which then has the machine to itself.

/// The nice value background threads run at (0 is the default; 19 the lowest).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU and I/O priority (see the module). Returns what could
/// not be done, for the caller to report; both are best effort (a container may forbid
/// them) and change nothing about correctness.
pub fn lower_priority() -> Result<(), String> {
    imp::lower_priority()
}

#[cfg(target_os = "linux")]
mod imp {
    /// `ioprio_set`'s constants (linux/ioprio.h): who = a thread, class best-effort,
    /// level 7 (the lowest of its class).
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    const IOPRIO_LOWEST_LEVEL: libc::c_long = 7;

    pub(super) fn lower_priority() -> Result<(), String> {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let mut failed = Vec::new();
        // PRIO_PROCESS with a thread id sets that thread's nice value alone (Linux's
        // threads are scheduled as tasks of their own).
        let id = libc::id_t::try_from(tid).unwrap_or(0);
        // A process already started nicer than that keeps its own value (raising a
        // priority again needs a privilege).
        let nice = current_nice().max(super::BACKGROUND_NICE);
        // SAFETY: plain system call on this thread's id; no memory is passed.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, id, nice) } != 0 {
            failed.push(format!("nice {nice}: {}", std::io::Error::last_os_error()));
        }
        let value = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | IOPRIO_LOWEST_LEVEL;
        // SAFETY: ioprio_set(which, who, ioprio) takes three integers; no memory is passed.
        if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, libc::c_long::from(tid), value) } != 0 {
            failed.push(format!("I/O priority: {}", std::io::Error::last_os_error()));
        }
        if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
    }

    /// The calling thread's nice value.
    pub(super) fn current_nice() -> i32 {
        // SAFETY: errno is this thread's; it is cleared first because -1 is also a
        // valid answer. `who` 0 with PRIO_PROCESS is the calling thread on Linux.
        unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn lower_priority() -> Result<(), String> {
        Err("thread priorities are only set on Linux".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_background_thread_runs_niced_and_the_rest_of_the_process_does_not() {
        let before = imp::current_nice();
        let background = std::thread::spawn(|| {
            lower_priority().expect("lowering one's own priority is always allowed");
            imp::current_nice()
        });
        let nice = background.join().expect("thread ran");
        assert_eq!(nice, before.max(BACKGROUND_NICE));
        // Only the calling thread was lowered.
        assert_eq!(imp::current_nice(), before);
        let io = std::thread::spawn(|| {
            lower_priority().expect("lowering one's own priority is always allowed");
            // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, 0) reads the calling thread's value.
            unsafe { libc::syscall(libc::SYS_ioprio_get, 1, 0) }
        });
        assert_eq!(io.join().expect("thread ran"), (2 << 13) | 7, "best effort, level 7");
    }
}
