//! Progress of one job, shared by the parser threads (which count) and one ticker task (which reports): at
//! most one `analysis_progress` event per interval, and only when something moved; plus a one-line progress
//! bar when stderr is a terminal.

use std::{
    io::{IsTerminal, Write},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};

use serde_json::{json, Value};

/// The steps of a job, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Discover,
    Parse,
    Resolve,
    Write,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Discover => "discover",
            Phase::Parse => "parse",
            Phase::Resolve => "resolve",
            Phase::Write => "write",
            Phase::Done => "done",
        }
    }
}

#[derive(Debug)]
pub struct Progress {
    pub total_files: usize,
    files_done: AtomicUsize,
    ops_done: AtomicUsize,
    ops_total: AtomicUsize,
    state: Mutex<(Phase, String)>,
}

/// One reading of [`Progress`].
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub phase: Phase,
    pub files_done: usize,
    pub total_files: usize,
    pub current_file: String,
    pub percent: u32,
}

impl Progress {
    pub fn new(total_files: usize) -> Self {
        Self {
            total_files,
            files_done: AtomicUsize::new(0),
            ops_done: AtomicUsize::new(0),
            ops_total: AtomicUsize::new(0),
            state: Mutex::new((Phase::Discover, String::new())),
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.state.lock().expect("progress lock").0 = phase;
    }

    /// A file was parsed (called from parser threads; `done` only grows per job).
    pub fn file_done(&self, done: usize, path: &str) {
        self.files_done.fetch_max(done, Ordering::Relaxed);
        if let Ok(mut s) = self.state.try_lock() {
            s.1.clear();
            s.1.push_str(path);
        }
    }

    pub fn ops(&self, done: usize, total: usize) {
        self.ops_total.store(total, Ordering::Relaxed);
        self.ops_done.store(done, Ordering::Relaxed);
    }

    pub fn read(&self) -> Reading {
        let (phase, current_file) = self.state.lock().expect("progress lock").clone();
        let files_done = self.files_done.load(Ordering::Relaxed).min(self.total_files);
        let frac = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let percent = match phase {
            Phase::Discover => 0.0,
            Phase::Parse => 5.0 + 60.0 * frac(files_done, self.total_files),
            Phase::Resolve => 65.0,
            Phase::Write => {
                70.0 + 30.0 * frac(self.ops_done.load(Ordering::Relaxed), self.ops_total.load(Ordering::Relaxed))
            }
            Phase::Done => 100.0,
        };
        let files_done = if phase >= Phase::Resolve { self.total_files } else { files_done };
        Reading { phase, files_done, total_files: self.total_files, current_file, percent: percent as u32 }
    }
}

impl Reading {
    pub fn event_data(&self, job_id: &str) -> Value {
        json!({
            "job_id": job_id,
            "files_done": self.files_done,
            "total_files": self.total_files,
            "current_file": self.current_file,
            "phase": self.phase.as_str(),
            "percent": self.percent,
        })
    }
}

/// A one-line bar on stderr, drawn only when stderr is a terminal.
pub struct TerminalBar {
    enabled: bool,
}

impl TerminalBar {
    pub fn new() -> Self {
        Self { enabled: std::io::stderr().is_terminal() }
    }

    pub fn draw(&self, r: &Reading) {
        if !self.enabled {
            return;
        }
        const WIDTH: usize = 30;
        let filled = (r.percent as usize * WIDTH / 100).min(WIDTH);
        let mut file = r.current_file.clone();
        if file.len() > 40 {
            file = format!("…{}", &file[file.len() - 39..].trim_start_matches(|c: char| !c.is_ascii()));
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}{}] {:>3}% {:<8} {}/{} {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            r.percent,
            r.phase.as_str(),
            r.files_done,
            r.total_files,
            file
        );
        let _ = err.flush();
    }

    pub fn finish(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

impl Default for TerminalBar {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_counts_only_grow_through_the_phases() {
        let p = Progress::new(4);
        let mut last = p.read();
        let mut check = |p: &Progress| {
            let r = p.read();
            assert!(r.percent >= last.percent && r.files_done >= last.files_done, "{last:?} → {r:?}");
            last = r;
        };
        p.set_phase(Phase::Parse);
        check(&p);
        for i in 1..=4 {
            p.file_done(i, "a.py");
            check(&p);
        }
        p.file_done(2, "late.py");
        check(&p);
        p.set_phase(Phase::Resolve);
        check(&p);
        p.set_phase(Phase::Write);
        p.ops(0, 10);
        check(&p);
        p.ops(10, 10);
        check(&p);
        p.set_phase(Phase::Done);
        check(&p);
        assert_eq!(p.read().percent, 100);
    }
}
