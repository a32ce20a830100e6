//! A [`Reporter`] for the command-line tools: progress bars and messages on stderr,
//! bars only when stderr is a terminal, nothing at all with `--quiet`.

use crate::Reporter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// Progress bars and messages on stderr.
pub struct TermReporter {
    quiet: bool,
    bar: Mutex<Option<(String, ProgressBar)>>,
}

impl TermReporter {
    /// `quiet` silences steps and progress; warnings are always shown.
    pub fn new(quiet: bool) -> TermReporter {
        TermReporter {
            quiet,
            bar: Mutex::new(None),
        }
    }

    fn clear(&self) {
        if let Some((_, bar)) = self.bar.lock().expect("reporter lock").take() {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for TermReporter {
    fn step(&self, message: &str) {
        self.clear();
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    fn warn(&self, message: &str) {
        self.clear();
        eprintln!("warning: {message}");
    }

    fn progress(&self, label: &str, done: u64, total: u64) {
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let mut guard = self.bar.lock().expect("reporter lock");
        let same = matches!(&*guard, Some((l, _)) if l == label);
        if !same {
            if let Some((_, old)) = guard.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            *guard = Some((label.to_string(), bar));
        }
        if let Some((_, bar)) = guard.as_ref() {
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
                *guard = None;
            }
        }
    }
}

impl Drop for TermReporter {
    fn drop(&mut self) {
        self.clear();
    }
}
