//! Terminal manners shared by the commands: colour only where anstream
//! says a person reads it (a terminal, `NO_COLOR` unset, `CLICOLOR_FORCE`
//! to force it), progress bars only on a terminal, tables laid out by
//! comfy-table to their content, so piped output stays plain text that
//! scripts can read.

use anstyle::{AnsiColor, Style as Look};
use std::io::{IsTerminal, Write};

pub const GREEN: Look = AnsiColor::Green.on_default();
pub const YELLOW: Look = AnsiColor::Yellow.on_default();
pub const RED: Look = AnsiColor::Red.on_default();
pub const BOLD: Look = Look::new().bold();
pub const DIM: Look = Look::new().dimmed();

/// Colours for one output stream.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Colour when anstream would colour stdout: a terminal, `NO_COLOR`
    /// unset or empty, `TERM` not `dumb`; or `CLICOLOR_FORCE` set.
    pub fn stdout() -> Self {
        let choice = anstream::AutoStream::choice(&std::io::stdout());
        Self {
            colour: choice != anstream::ColorChoice::Never,
        }
    }

    pub fn plain() -> Self {
        Self { colour: false }
    }

    pub fn paint(self, look: Look, text: &str) -> String {
        if self.colour {
            format!("{look}{text}{look:#}")
        } else {
            text.to_owned()
        }
    }
}

/// Rows under a header, each column as wide as its widest cell, two spaces
/// apart, no borders; the columns in `right` aligned right (numbers).
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for row in rows {
        table.add_row(row.iter().map(String::as_str));
    }
    for index in right {
        if let Some(column) = table.column_mut(*index) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
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
        assert_eq!(
            Style { colour: true }.paint(RED, "dead"),
            "\x1b[31mdead\x1b[0m"
        );
    }

    #[test]
    fn tables_fit_their_longest_cell_and_align_numbers_right() {
        let long = "orders-with-a-rather-long-name.retry.1".to_owned();
        let text = table(
            &["topic", "records"],
            &[
                vec!["orders".into(), "7".into()],
                vec![long.clone(), "1234".into()],
            ],
            &[1],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("topic "), "{text}");
        // Every row's number ends in the same column, after the long name.
        let ends: Vec<usize> = lines.iter().map(|l| l.len()).collect();
        assert!(ends.iter().all(|e| *e == ends[0]), "{text}");
        assert!(
            lines[2].starts_with(&long) && lines[1].ends_with(" 7"),
            "{text}"
        );
    }
}
