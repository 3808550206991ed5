//! Progress on long work, for a person at a terminal: a bar over the scenarios a
//! `scenario` run goes through, a spinner while an image is built. Quiet where
//! nobody watches: when standard error is not a terminal, or `CI` is set (as
//! `.ci/run` sets it); then every bar here is hidden and draws nothing. Bars draw
//! on standard error, so standard output stays the tool's report, each on its own
//! line of one [`MultiProgress`] (an image's spinner under the scenarios' bar).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

/// The lines every bar of this process draws on.
fn lines() -> &'static MultiProgress {
    static LINES: OnceLock<MultiProgress> = OnceLock::new();
    LINES.get_or_init(MultiProgress::new)
}

/// Whether a person is watching: standard error is a terminal and `CI` is unset.
pub fn wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar over `total` steps of `what`, drawn if [`wanted`]; its message names
/// the step under way.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    if !wanted() {
        return ProgressBar::hidden();
    }
    let bar = lines().add(ProgressBar::new(total).with_prefix(what.to_owned()));
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A spinner with the time spent, saying what is being done, drawn if
/// [`wanted`]. Clear it with `finish_and_clear` when the work is done.
pub fn spinner(doing: &str) -> ProgressBar {
    if !wanted() {
        return ProgressBar::hidden();
    }
    let spinner = lines().add(ProgressBar::new_spinner().with_message(doing.to_owned()));
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
