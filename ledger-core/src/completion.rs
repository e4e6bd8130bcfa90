//! A one-shot completion the sequencer fills in and a caller waits on, either by
//! blocking (`wait`) or as a `Future` from an async runtime, with no thread per waiter.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct SlotState<T> {
    value: Option<T>,
    /// The completer went away without a value (the sequencer stopped).
    abandoned: bool,
    waker: Option<Waker>,
}

/// The sequencer's end: completes exactly once, or abandons on drop.
#[derive(Debug)]
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

/// The caller's end: resolves to `Some(value)`, or `None` if the completer was dropped.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    slot: Arc<Slot<T>>,
}

pub(crate) fn pair<T>() -> (Completer<T>, Pending<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState { value: None, abandoned: false, waker: None }),
        ready: Condvar::new(),
    });
    (Completer { slot: Some(Arc::clone(&slot)) }, Pending { slot })
}

impl<T> Completer<T> {
    pub(crate) fn complete(mut self, value: T) {
        if let Some(slot) = self.slot.take() {
            Self::finish(&slot, Some(value));
        }
    }

    fn finish(slot: &Slot<T>, value: Option<T>) {
        let waker = {
            let mut state = slot.state.lock();
            match value {
                Some(v) => state.value = Some(v),
                None => state.abandoned = true,
            }
            state.waker.take()
        };
        slot.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Self::finish(&slot, None);
        }
    }
}

impl<T> Pending<T> {
    /// Blocks the calling thread until the value is there.
    pub(crate) fn wait(self) -> Option<T> {
        let mut state = self.slot.state.lock();
        loop {
            if let Some(value) = state.value.take() {
                return Some(value);
            }
            if state.abandoned {
                return None;
            }
            self.slot.ready.wait(&mut state);
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.state.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(Some(value));
        }
        if state.abandoned {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_wait_gets_the_value_from_another_thread() {
        let (done, pending) = pair();
        let t = std::thread::spawn(move || done.complete(42));
        assert_eq!(pending.wait(), Some(42));
        t.join().expect("join");
    }

    #[test]
    fn a_dropped_completer_abandons() {
        let (done, pending) = pair::<u8>();
        drop(done);
        assert_eq!(pending.wait(), None);
    }

    #[test]
    fn the_future_wakes_its_task() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let (done, mut pending) = pair();
        assert_eq!(Pin::new(&mut pending).poll(&mut cx), Poll::Pending);
        done.complete("v");
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "completion woke the task");
        assert_eq!(Pin::new(&mut pending).poll(&mut cx), Poll::Ready(Some("v")));
    }
}
