//! The console's pages, server-rendered HTML (maud escapes every value),
//! readable without JavaScript.

use super::index::{Overview, PAGE, Page, Query};
use crate::dlq::record::DeadLetter;
use crate::dlq::resolved::Resolution;
use crate::dlq::when;
use maud::{DOCTYPE, Markup, html};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.num{text-align:right}code,pre{background:#f6f6f6;padding:.1rem .3rem}\
pre{padding:.8rem;overflow:auto}.class{color:#a00;font-weight:600}form{margin:1rem 0}\
form label{margin-right:1rem}nav a{margin-right:1rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · kafkit console" }
                style { (STYLE) }
            }
            body {
                nav { a href="/" { "Dead-letter topics" } }
                h1 { (title) }
                (body)
            }
        }
    }
}

/// The filters `query` sets, as form fields (the page aside).
fn filters(query: &Query) -> Vec<(&'static str, String)> {
    [
        ("status", query.status.clone()),
        ("class", query.class.clone()),
        ("key", query.key.clone()),
        ("partition", query.partition.map(|p| p.to_string())),
        ("after_ms", query.after_ms.map(|t| t.to_string())),
        ("before_ms", query.before_ms.map(|t| t.to_string())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.filter(|v| !v.is_empty()).map(|v| (name, v)))
    .collect()
}

/// `/dlq/<topic><action>?page=..&<filters>`: a topic's list (`action`
/// empty) or its replay preview (`/replay`), keeping `query`'s filters.
fn filtered_link(topic: &str, action: &str, query: &Query, page: usize) -> String {
    let params: Vec<String> = std::iter::once(format!("page={page}"))
        .chain(
            filters(query)
                .into_iter()
                .map(|(name, value)| format!("{name}={}", urlencode(&value))),
        )
        .collect();
    format!("/dlq/{}{action}?{}", urlencode(topic), params.join("&"))
}

fn list_link(topic: &str, query: &Query, page: usize) -> String {
    filtered_link(topic, "", query, page)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn overview(topics: &[Overview]) -> Markup {
    layout(
        "Dead-letter topics",
        html! {
            @for topic in topics {
                section {
                    h2 { a href=(list_link(&topic.topic, &Query::default(), 0)) { (topic.topic) } }
                    p {
                        strong { (topic.total) } " dead letters, "
                        a href=(list_link(&topic.topic, &Query { status: Some("open".into()), ..Query::default() }, 0)) { strong.open { (topic.open) } " open" }
                        @if let (Some(oldest), Some(newest)) = (topic.oldest_ms, topic.newest_ms) {
                            ", oldest " (when(Some(oldest))) ", newest " (when(Some(newest)))
                        }
                    }
                    @if !topic.classes.is_empty() {
                        table {
                            thead { tr { th { "error class" } th.num { "count" } } }
                            tbody {
                                @for (class, count) in &topic.classes {
                                    tr {
                                        td { a.class href=(list_link(&topic.topic, &Query { class: Some(class.clone()), ..Query::default() }, 0)) { (class) } }
                                        td.num { (count) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn list(topic: &str, query: &Query, page: &Page) -> Markup {
    let pages = page.matching.div_ceil(PAGE).max(1);
    layout(
        topic,
        html! {
            form method="get" action={ "/dlq/" (urlencode(topic)) } {
                label { "status " select name="status" {
                    @for (value, label) in [("", "all"), ("open", "open"), ("resolved", "resolved"), ("discarded", "discarded"), ("replayed", "replayed")] {
                        option value=(value) selected[query.status.as_deref().unwrap_or("") == value] { (label) }
                    }
                } }
                label { "class " input name="class" value=[query.class.as_deref()]; }
                label { "key " input name="key" value=[query.key.as_deref()]; }
                label { "origin partition " input name="partition" size="4" value=[query.partition]; }
                label { "after (ms) " input name="after_ms" size="14" value=[query.after_ms]; }
                label { "before (ms) " input name="before_ms" size="14" value=[query.before_ms]; }
                button type="submit" { "Filter" }
            }
            p.count { (page.matching) " matching, page " (page.page + 1) " of " (pages) }
            p { a.replay href=(filtered_link(topic, "/replay", query, 0)) { "Replay the open ones this filter selects… (preview first)" } }
            table {
                thead { tr { th { "died" } th { "dead letter" } th { "from" } th.num { "attempt" } th { "class" } th { "key" } th { "message" } } }
                tbody {
                    @for letter in &page.letters {
                        (row(letter))
                    }
                }
            }
            // New dead letters appear on top as they arrive (without
            // JavaScript, a reload shows them).
            script { (maud::PreEscaped(LIVE)) }
            nav {
                @if page.page > 0 { a rel="prev" href=(list_link(topic, query, page.page - 1)) { "← newer" } }
                @if page.page + 1 < pages { a rel="next" href=(list_link(topic, query, page.page + 1)) { "older →" } }
            }
        },
    )
}

/// Puts each dead letter the server sends on top of the list.
const LIVE: &str = "const live=new EventSource(location.pathname+'/events');\
live.addEventListener('dead-letter',e=>{document.querySelector('tbody').insertAdjacentHTML('afterbegin',e.data)});";

/// One dead letter as a row of the list.
pub fn row(letter: &DeadLetter) -> Markup {
    html! {
        tr {
            td { (when(letter.dead_at_ms)) }
            td { a href=(detail_link(letter)) { (letter.dlq_partition) "/" (letter.dlq_offset) } }
            td { (origin(letter)) }
            td.num { (letter.attempt.map_or("-".into(), |a| a.to_string())) }
            td.class { (letter.error_class) }
            td { code { (letter.key_text.as_deref().unwrap_or("-")) } }
            td { (letter.error_message) }
        }
    }
}

pub(crate) fn detail_link(letter: &DeadLetter) -> String {
    format!(
        "/dlq/{}/{}/{}",
        urlencode(&letter.dlq_topic),
        letter.dlq_partition,
        letter.dlq_offset
    )
}

fn origin(letter: &DeadLetter) -> String {
    format!(
        "{}[{}]@{}",
        letter.original_topic.as_deref().unwrap_or("?"),
        letter
            .original_partition
            .map_or("?".into(), |p| p.to_string()),
        letter.original_offset.map_or("?".into(), |o| o.to_string())
    )
}

/// One dead letter: why it died, where from, its payload decoded through
/// the registry, every header; the trace id links to `trace_url` when given
/// (`{trace_id}` in it is replaced).
pub fn detail(
    letter: &DeadLetter,
    value: &serde_json::Value,
    state: Option<&Resolution>,
    edited: Option<(&str, &[crate::dlq::edit::FieldError])>,
    trace_url: Option<&str>,
) -> Markup {
    let editable = value
        .get("json")
        .map(|json| serde_json::to_string_pretty(json).unwrap_or_default());
    let title = format!(
        "{}/{}/{}",
        letter.dlq_topic, letter.dlq_partition, letter.dlq_offset
    );
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    layout(
        &title,
        html! {
            table {
                tr { th { "died" } td { (when(letter.dead_at_ms)) } }
                tr { th { "from" } td { (origin(letter)) " (" (format!("{:?}", letter.convention)) " headers)" } }
                tr { th { "attempt" } td { (letter.attempt.map_or("-".into(), |a| a.to_string())) } }
                tr { th { "error class" } td.class { (letter.error_class) } }
                tr { th { "message" } td { (letter.error_message) } }
                tr { th { "key" } td { code { (letter.key_text.as_deref().unwrap_or("-")) } } }
                @if let Some(trace_id) = &letter.trace_id {
                    tr { th { "trace" } td {
                        @if let Some(url) = trace_url {
                            a href=(url.replace("{trace_id}", trace_id)) { code { (trace_id) } }
                        } @else {
                            code { (trace_id) }
                        }
                    } }
                }
                @if let Some(from) = &letter.replayed_from {
                    tr { th { "replayed from" } td { (from) " (died again after a replay)" } }
                }
            }
            h2 { "State" }
            @match state {
                Some(state) => p.state { strong { (state.status.as_str()) } " " (when(Some(state.at_ms))) ": " (state.reason) },
                None => {
                    p.state { strong { "open" } }
                    form method="post" action={ (detail_link(letter)) "/replay" } {
                        button type="submit" { "Replay to " (letter.original_topic.as_deref().unwrap_or("?")) }
                    }
                    form method="post" action={ (detail_link(letter)) "/resolve" } {
                        label { "reason " input name="reason" required size="50"; }
                        button type="submit" name="status" value="resolved" { "Mark resolved" }
                        button type="submit" name="status" value="discarded" { "Discard" }
                    }
                    @if let Some(json) = editable.as_deref() {
                        h2 { "Edit and replay" }
                        @if let Some((_, errors)) = edited {
                            ul.errors {
                                @for error in errors {
                                    li { @if !error.field.is_empty() { code { (error.field) } ": " } (error.message) }
                                }
                            }
                        }
                        form method="post" action={ (detail_link(letter)) "/edit" } {
                            textarea name="json" rows="16" cols="90" { (edited.map_or(json, |(text, _)| text)) }
                            br;
                            button type="submit" { "Re-encode against the latest schema and replay" }
                        }
                    }
                },
            }
            h2 { "Payload" }
            pre.payload { (pretty) }
            h2 { "Headers" }
            table.headers {
                @for (name, value) in &letter.headers {
                    tr { th { code { (name) } } td { code { (String::from_utf8_lossy(value)) } } }
                }
            }
        },
    )
}

/// What a replay of `query`'s open dead letters would send, and the form
/// that sends it (the same filter, posted).
pub fn replay_preview(topic: &str, query: &Query, letters: &[DeadLetter]) -> Markup {
    layout(
        &format!("Replay from {topic}"),
        html! {
            p.count { (letters.len()) " open dead letters would be sent back" }
            table {
                thead { tr { th { "dead letter" } th { "class" } th { "key" } th { "to" } } }
                tbody {
                    @for letter in letters {
                        tr {
                            td { a href=(detail_link(letter)) { (letter.dlq_partition) "/" (letter.dlq_offset) } }
                            td.class { (letter.error_class) }
                            td { code { (letter.key_text.as_deref().unwrap_or("-")) } }
                            td { (letter.original_topic.as_deref().unwrap_or("(no original topic: cannot)")) }
                        }
                    }
                }
            }
            @if !letters.is_empty() {
                form method="post" {
                    @for (name, value) in filters(query) {
                        input type="hidden" name=(name) value=(value);
                    }
                    button type="submit" { "Send these " (letters.len()) " back" }
                }
            }
        },
    )
}

/// What a replay did, one line per dead letter.
pub fn replayed(topic: &str, outcomes: &[(String, Result<String, String>)]) -> Markup {
    let sent = outcomes.iter().filter(|(_, o)| o.is_ok()).count();
    layout(
        &format!("Replayed from {topic}"),
        html! {
            p.count { (sent) " sent back, " (outcomes.len() - sent) " failed" }
            ul {
                @for (id, outcome) in outcomes {
                    @match outcome {
                        Ok(to) => li { (id) " → " (to) },
                        Err(why) => li.failed { (id) ": " (why) },
                    }
                }
            }
            p { a href={ "/dlq/" (urlencode(topic)) } { "Back to " (topic) } }
        },
    )
}
