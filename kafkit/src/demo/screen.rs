//! How the demo talks to a person: notices as they happen, one live status
//! line, the summary table and what to try next.
//!
//! On a terminal the status line redraws in place and notices are coloured
//! (unless `NO_COLOR` is set); piped into a file, every line is plain text
//! and the status is printed every few seconds, when it changed, instead.

use super::journeys::{Notice, Tally, Topics};
use crate::term::{BOLD, GREEN, RED, Style, YELLOW};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Screen {
    live: bool,
    style: Style,
    status_shown: bool,
    last_plain_status: Option<(Instant, String)>,
}

impl Screen {
    pub fn detect() -> Self {
        let live = std::io::stdout().is_terminal();
        Self {
            live,
            style: Style::stdout(),
            status_shown: false,
            last_plain_status: None,
        }
    }

    pub fn paint(&self, look: anstyle::Style, text: &str) -> String {
        self.style.paint(look, text)
    }

    /// A table of names and counts, indented, each line on its own.
    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        for line in crate::term::table(header, rows, &[1]).lines() {
            self.line(&format!("  {line}"));
        }
    }

    /// A line of its own, above the status line.
    pub fn line(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.live && self.status_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.status_shown = false;
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub fn notice(&mut self, notice: &Notice) {
        let short = |id: &str| id.chars().take(8).collect::<String>();
        let text = match notice {
            Notice::Retrying {
                order_id,
                tier,
                class,
            } => self.paint(
                YELLOW,
                &format!(
                    "↻ order {} failed ({class}), retry tier {tier}",
                    short(order_id)
                ),
            ),
            Notice::Recovered { order_id, retries } => self.paint(
                GREEN,
                &format!(
                    "✓ order {} confirmed after {retries} {}",
                    short(order_id),
                    if *retries == 1 { "retry" } else { "retries" }
                ),
            ),
            Notice::DeadLettered {
                order_id,
                class,
                message,
            } => self.paint(
                RED,
                &format!(
                    "✗ order {} dead-lettered: {class}: {message}",
                    short(order_id)
                ),
            ),
        };
        self.line(&text);
    }

    /// The one-line status: redrawn in place live, every 5 s otherwise.
    pub fn status(&mut self, tally: &Tally, planned: usize) {
        let text = format!(
            "sent {}/{planned} · confirmed {} ({} after retries) · retrying {} · dead-lettered {} · waiting {}",
            tally.sent,
            tally.first_try + tally.after_retries,
            tally.after_retries,
            tally.retrying,
            tally.dead(),
            tally.waiting
        );
        if self.live {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{}", self.paint(BOLD, &text));
            let _ = out.flush();
            self.status_shown = true;
        } else if self
            .last_plain_status
            .as_ref()
            .is_none_or(|(at, last)| *last != text && at.elapsed() >= Duration::from_secs(5))
        {
            self.line(&format!("status: {text}"));
            self.last_plain_status = Some((Instant::now(), text));
        }
    }

    pub fn summary(&mut self, title: &str, tally: &Tally, refused: usize, topics: &Topics) {
        let mut rows = vec![
            ("confirmed on the first try".to_owned(), tally.first_try),
            ("confirmed after retries".to_owned(), tally.after_retries),
            ("dead-lettered".to_owned(), tally.dead()),
        ];
        for (class, count) in &tally.dead_by_class {
            rows.push((format!("  {class}"), *count));
        }
        rows.push(("still retrying".to_owned(), tally.retrying));
        rows.push(("not processed yet".to_owned(), tally.waiting));
        rows.push(("refused by the HTTP API".to_owned(), refused));
        self.line("");
        self.line(&self.paint(BOLD, title));
        let outcomes: Vec<Vec<String>> =
            std::iter::once(("sent (202 Accepted)".to_owned(), tally.sent))
                .chain(rows)
                .map(|(name, count)| vec![name, count.to_string()])
                .collect();
        self.table(&["outcome", "orders"], &outcomes);
        self.line("");
        let records: Vec<Vec<String>> = topics
            .all()
            .into_iter()
            .map(|topic| {
                let count = tally.records.get(&topic).copied().unwrap_or_default();
                vec![topic, count.to_string()]
            })
            .collect();
        self.table(&["topic", "records"], &records);
        self.line("");
    }
}
