//! Making sure a signal that arrives while a lock is waited for reaches the
//! wait's interrupt check ([`crate::WaitHooks::interrupted`]), whatever
//! moment it lands at.
//!
//! Linux only. A blocked `flock()`, `fcntl(F_OFD_SETLKW)` or `poll()`
//! returns `EINTR` when a handled signal arrives, and the wait then asks its
//! hooks whether to stop. A signal that lands just before the thread enters
//! the call is handled in user space instead (Python's handler only notes
//! it) and the thread then sleeps until the lock is released: the signal is
//! lost. The wait asks the hooks before each blocking call, which leaves
//! only the few instructions between that check and the call; this module
//! closes them.
//!
//! [`wake_waits_on_handled_signals`] wraps every signal handler installed
//! at the time in a relay that runs the original handler, then arms a
//! per-wait POSIX timer (`SIGEV_THREAD_ID`) of each wait in progress, which
//! sends [`crate::timer_signal`] to its thread every millisecond until the
//! wait has run its interrupt check again. So a signal handled anywhere
//! during a wait, on any thread, interrupts that wait within a millisecond;
//! a wait that sees no signal is never woken. Nothing happens until a
//! program opts in (the Python binding does, before each wait); a handler
//! installed later replaces the relay until the next call re-wraps it.
//! Signals that report faults (`SIGSEGV`, `SIGBUS`, ...) are left alone.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::timer_signal::{
    install_noop_handler, set_signal_blocked, timer_for_this_thread, timer_signal, timespec,
};

/// Signal numbers that can be caught are below this (Linux's `_NSIG`).
const SIGNALS: usize = 65;

/// How many waits, across threads, can be woken at once; a wait beyond
/// that falls back on its check before each blocking call.
const SLOTS: usize = 64;

/// How often a woken wait's timer fires until the wait disarms it.
const REFIRE: Duration = Duration::from_millis(1);

/// The handler each relayed signal had before, as an address (0: none).
static PREVIOUS: [AtomicUsize; SIGNALS] = [const { AtomicUsize::new(0) }; SIGNALS];

/// A slot holds nothing, or a wait's timer id plus one (the kernel counts
/// ids from 0); [`BUSY`] while the relay arms it, so that the wait does not
/// delete the timer meanwhile.
static WAITS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(EMPTY) }; SLOTS];
const EMPTY: usize = 0;
const BUSY: usize = usize::MAX;

/// Serialises the wrapping of handlers.
static WRAPPING: Mutex<()> = Mutex::new(());

/// Wraps every handler now installed (not `SIG_DFL` or `SIG_IGN`), but
/// those of fault signals and [`crate::timer_signal`], so that a signal
/// handled during a wait interrupts the wait however close to its blocking
/// call it lands. Call it before waiting, each time (it is cheap): a
/// handler installed since replaced the relay.
pub fn wake_waits_on_handled_signals() {
    let _wrapping = WRAPPING.lock().unwrap_or_else(|e| e.into_inner());
    install_noop_handler();
    for signal in 1..SIGNALS as i32 {
        if !relayable(signal) {
            continue;
        }
        // SAFETY: an all-zero sigaction is valid; sigaction only reads `new`
        // and writes `old`, both valid for the call.
        unsafe {
            let mut old: libc::sigaction = MaybeUninit::zeroed().assume_init();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handler = old.sa_sigaction;
            if handler == libc::SIG_DFL
                || handler == libc::SIG_IGN
                || handler == relay as *const () as usize
            {
                continue;
            }
            PREVIOUS[signal as usize].store(handler, Ordering::SeqCst);
            let mut new = old;
            new.sa_sigaction = relay as *const () as libc::sighandler_t;
            new.sa_flags |= libc::SA_SIGINFO;
            libc::sigaction(signal, &new, std::ptr::null_mut());
        }
    }
}

fn relayable(signal: i32) -> bool {
    let faults = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGABRT,
    ];
    !faults.contains(&signal) && signal != timer_signal()
}

/// Runs the signal's previous handler, then arms every registered wait's
/// timer. Only async-signal-safe calls: atomics and `timer_settime`.
extern "C" fn relay(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS
        .get(signal as usize)
        .map_or(0, |p| p.load(Ordering::SeqCst));
    if previous != 0 {
        // SAFETY: `previous` is the address of the handler this signal had;
        // called with the three arguments an SA_SIGINFO handler takes, which
        // a one-argument handler ignores under the C calling convention.
        unsafe {
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(previous);
            handler(signal, info, context);
        }
    }
    let spec = libc::itimerspec {
        it_interval: timespec(REFIRE),
        it_value: timespec(REFIRE),
    };
    for slot in &WAITS {
        let held = slot.load(Ordering::SeqCst);
        if held == EMPTY || held == BUSY {
            continue;
        }
        if slot
            .compare_exchange(held, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let id = (held - 1) as libc::timer_t;
            // SAFETY: the wait deletes its timer only after taking it back
            // from the slot, which it cannot while the slot is BUSY.
            unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) };
            slot.store(held, Ordering::SeqCst);
        }
    }
}

/// One wait's timer, registered for [`relay`] to arm; none until a program
/// has called [`wake_waits_on_handled_signals`].
pub(crate) struct Wake {
    registered: Option<Registered>,
}

struct Registered {
    id: libc::timer_t,
    slot: usize,
    signal_was_blocked: bool,
}

impl Wake {
    /// Registers a timer that signals the calling thread; call before the
    /// first interrupt check of a wait, so a signal after it is not missed.
    pub(crate) fn register() -> io::Result<Wake> {
        if PREVIOUS.iter().all(|p| p.load(Ordering::SeqCst) == 0) {
            return Ok(Wake { registered: None });
        }
        let (id, signal_was_blocked) = timer_for_this_thread()?;
        let slot = WAITS.iter().position(|slot| {
            slot.compare_exchange(EMPTY, id as usize + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        let Some(slot) = slot else {
            // SAFETY: the timer was just created and is known to nobody else.
            unsafe { libc::timer_delete(id) };
            if signal_was_blocked {
                let _ = set_signal_blocked(timer_signal(), true);
            }
            return Ok(Wake { registered: None });
        };
        Ok(Wake {
            registered: Some(Registered {
                id,
                slot,
                signal_was_blocked,
            }),
        })
    }

    /// Stops the timer; call before each interrupt check, so that a signal
    /// handled after the check arms it again.
    pub(crate) fn disarm(&self) {
        if let Some(registered) = &self.registered {
            let stop: libc::itimerspec = libc::itimerspec {
                it_interval: timespec(Duration::ZERO),
                it_value: timespec(Duration::ZERO),
            };
            // SAFETY: the timer is ours and not yet deleted.
            unsafe { libc::timer_settime(registered.id, 0, &stop, std::ptr::null_mut()) };
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        let Some(registered) = self.registered.take() else {
            return;
        };
        let slot = &WAITS[registered.slot];
        while slot
            .compare_exchange(
                registered.id as usize + 1,
                EMPTY,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_err()
        {
            // The relay is arming it, on another thread, for microseconds.
            std::hint::spin_loop();
        }
        // SAFETY: the timer is out of the slot, so no relay can touch it.
        unsafe { libc::timer_delete(registered.id) };
        if registered.signal_was_blocked {
            let _ = set_signal_blocked(timer_signal(), true);
        }
    }
}
