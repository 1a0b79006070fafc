//! Startup: the wall time of running `true` under each wrapper, and bare.
//!
//! The lock is always free here, so this is what a wrapper adds to every
//! command it runs: its own exec and start-up, opening the lock file,
//! flock(2), starting the command and waiting for it. Bare `true` is the
//! floor both stand on.

use std::time::Instant;

use anyhow::Result;

use crate::rig::{self, Rig, Wrapper};

/// Wall times in milliseconds, one per run.
#[derive(Debug, Default)]
pub struct Startup {
    pub withlock: Vec<f64>,
    pub flock: Vec<f64>,
    pub bare: Vec<f64>,
}

/// What one startup run runs.
#[derive(Debug, Clone, Copy)]
enum Subject {
    Locked(Wrapper),
    Bare,
}

const SUBJECTS: [Subject; 3] = [
    Subject::Locked(Wrapper::Withlock),
    Subject::Locked(Wrapper::Flock),
    Subject::Bare,
];

/// `runs` runs of each subject, interleaved: every round runs all three, in
/// an order that rotates from round to round so none is always first after
/// the benchmark's own bookkeeping.
pub fn measure(rig: &Rig, runs: usize) -> Result<Startup> {
    eprintln!("startup: {runs} runs each of withlock, flock(1) and bare true");
    // One untimed run each, to fault the binaries into the page cache and
    // create the lock files.
    for subject in SUBJECTS {
        time(rig, subject)?;
    }
    let mut startup = Startup::default();
    for round in 0..runs {
        let mut order = SUBJECTS;
        order.rotate_left(round % SUBJECTS.len());
        for subject in order {
            let ms = time(rig, subject)?;
            startup.samples(subject).push(ms);
        }
    }
    Ok(startup)
}

impl Startup {
    fn samples(&mut self, subject: Subject) -> &mut Vec<f64> {
        match subject {
            Subject::Locked(Wrapper::Withlock) => &mut self.withlock,
            Subject::Locked(Wrapper::Flock) => &mut self.flock,
            Subject::Bare => &mut self.bare,
        }
    }
}

/// One run, in milliseconds from spawn to exit status.
fn time(rig: &Rig, subject: Subject) -> Result<f64> {
    let mut command = match subject {
        Subject::Locked(wrapper) => rig.locked(wrapper, "startup", &["true"]),
        Subject::Bare => rig.bare(&["true"]),
    };
    let started = Instant::now();
    rig::run_checked(&mut command)?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}
