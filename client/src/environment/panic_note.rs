//! The message of the panic that ends a test, for its environment's event log.
//!
//! A drop during a panic tells rigd the test failed, but rigd cannot see why: without the
//! message, `rig explain` says only `FAILED`. The SDK chains a panic hook (once, when the
//! first environment is created) that keeps the latest panic's `file:line: panicked: message`
//! per thread; the drop that follows on the unwinding thread posts it as a `test.note`.
//! The previous hook still runs, so the test harness prints the panic as before.

use std::cell::{Cell, RefCell};
use std::panic::PanicHookInfo;
use std::sync::Once;

thread_local! {
    /// The latest panic on this thread, as its note.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The next panic on this thread repeats a note already posted (a failed `assert`).
    static NOTED: Cell<bool> = const { Cell::new(false) };
}

/// Installs the recording hook in front of the current one (once per process).
pub(crate) fn install() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            record(info);
            previous(info);
        }));
    });
}

/// Keeps `info` as this thread's latest panic, unless it repeats a posted note.
fn record(info: &PanicHookInfo<'_>) {
    let noted = NOTED.try_with(|n| n.replace(false)).unwrap_or(false);
    let note = (!noted).then(|| note_text(info));
    let _ = LAST.try_with(|last| *last.borrow_mut() = note);
}

/// `file.rs:12: panicked: message`.
fn note_text(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)");
    let text = format!("panicked: {message}");
    match info.location() {
        Some(location) => super::located(location, &text),
        None => text,
    }
}

/// The next panic on this thread reports what was already posted as a note: it adds nothing.
pub(crate) fn already_noted() {
    let _ = NOTED.try_with(|n| n.set(true));
}

/// The note of the panic this thread is unwinding from, if it has one; taken, so it is
/// posted once.
pub(crate) fn take() -> Option<String> {
    LAST.try_with(|last| last.borrow_mut().take())
        .ok()
        .flatten()
}
