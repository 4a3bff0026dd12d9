//! A progress bar on stderr for the long commands (replay): redrawn in place on a terminal, a line every few
//! seconds otherwise (logs).

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

pub struct ProgressBar {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    drawn: Instant,
    terminal: bool,
    silent: bool,
}

const WIDTH: u64 = 30;

impl ProgressBar {
    pub fn new(label: &str, total: u64) -> Self {
        let now = Instant::now();
        Self {
            label: label.to_owned(),
            total,
            done: 0,
            started: now,
            drawn: now,
            terminal: std::io::stderr().is_terminal(),
            silent: false,
        }
    }

    /// Draws nothing (tests, JSON output).
    pub fn silence(&mut self) {
        self.silent = true;
    }

    /// The total may grow (the stream grows while it is replayed).
    pub fn set_total(&mut self, total: u64) {
        self.total = total.max(self.done);
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        self.total = self.total.max(self.done);
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if self.drawn.elapsed() >= every {
            self.draw(false);
        }
    }

    pub fn finish(&mut self) {
        self.draw(true);
    }

    pub fn line(&self) -> String {
        let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} [{}{}] {}/{} ({:.0}/s)",
            self.label,
            "#".repeat(filled as usize),
            "-".repeat((WIDTH - filled.min(WIDTH)) as usize),
            self.done,
            self.total,
            rate
        )
    }

    fn draw(&mut self, last: bool) {
        self.drawn = Instant::now();
        if self.silent {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{}{}", self.line(), if last { "\n" } else { "" })
        } else {
            writeln!(err, "{}", self.line())
        };
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion() {
        let mut bar = ProgressBar::new("replay", 10);
        bar.terminal = true;
        bar.done = 5;
        assert!(bar.line().starts_with("replay [###############---------------] 5/10"), "{}", bar.line());
        bar.set_total(2);
        assert_eq!(bar.total, 5, "never below what is done");
    }
}
