//! Terminal manners shared by the commands: colour only on a terminal (and
//! never with `NO_COLOR`), progress bars only on a terminal, so piped output
//! stays plain text that scripts can read.

use std::io::{IsTerminal, Write};

pub const GREEN: &str = "32";
pub const YELLOW: &str = "33";
pub const RED: &str = "31";
pub const BOLD: &str = "1";
pub const DIM: &str = "2";

/// Colours for one output stream.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn stdout() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && no_color_unset(),
        }
    }

    pub fn plain() -> Self {
        Self { colour: false }
    }

    pub fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

fn no_color_unset() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    live: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        Self {
            label: label.into(),
            total,
            done: 0,
            live: std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self) {
        self.done += 1;
        if self.live {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", bar(&self.label, self.done, self.total));
            let _ = err.flush();
        }
    }

    /// Clears the bar, leaving the line for what comes next.
    pub fn finish(&mut self) {
        if self.live && self.done > 0 {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// `label [#######.............] 7/20`
pub fn bar(label: &str, done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    format!(
        "{label} [{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_proportion_and_survive_a_zero_total() {
        assert_eq!(
            bar("replay", 1, 3),
            format!("replay [{}{}] 1/3", "#".repeat(10), ".".repeat(20))
        );
        assert!(bar("replay", 0, 0).contains(&"#".repeat(30)));
        assert!(bar("x", 9, 3).contains(&"#".repeat(30)), "never overflows");
        assert_eq!(Style::plain().paint(RED, "dead"), "dead");
    }
}
