//! \[P\] The timeline picture (`timeline.svg`): one row per client group (the clients of one
//! resolver, labelled with the node it asks first), time from left to right, and in each
//! time slot the shares of the group's queries sent to each POP, stacked in the POPs'
//! colours; failed queries (no answer) in black. A slot with a wrong answer (a POP unusable
//! for the node that answered) is outlined in red; an orange strip under a row marks when
//! the node it asks first answered local-only. Events are dashed vertical lines with their
//! names. Hand-written SVG: a few hundred rectangles need no plotting library.

use std::fmt::Write as _;
use std::time::Duration;

use super::plan::Plan;
use super::report::{QueryRecord, Sample, is_wrong};
use crate::folder::Sim;
use crate::scenario::Scenario;

const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const ROW: f64 = 22.0;
const GAP: f64 = 4.0;
const WIDTH: f64 = 1100.0;
/// Time slots across the picture.
const SLOTS: usize = 100;

/// The colour of POP `i`: a fixed palette for the first ten, then evenly spread hues.
fn colour(i: usize) -> String {
    const PALETTE: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    PALETTE.get(i).map_or_else(
        || format!("hsl({}, 60%, 55%)", (i * 137) % 360),
        |c| (*c).to_owned(),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The picture of a run.
pub fn timeline(
    scenario: &Scenario,
    sim: &Sim,
    plan: &Plan,
    records: &[QueryRecord],
    samples: &[Sample],
) -> String {
    let groups = plan.resolvers.len();
    let pops = sim.pops.len();
    let height = TOP + groups as f64 * ROW + 60.0 + (pops as f64 / 8.0).ceil() * 18.0;
    let plot = WIDTH - LEFT - RIGHT;
    let total = plan.duration.as_secs_f64().max(0.001);
    let x_of = |t: Duration| LEFT + plot * (t.as_secs_f64() / total).min(1.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{} — POP each client group was sent to over time</text>"#,
        escape(&scenario.name)
    );
    // Counts per group, slot and POP (the last column: no answer).
    let mut counts = vec![vec![vec![0u32; pops + 1]; SLOTS]; groups];
    let mut wrong = vec![vec![false; SLOTS]; groups];
    for r in records {
        let g = plan.clients[r.client].resolver;
        let slot = ((r.at.as_secs_f64() / total) * SLOTS as f64) as usize;
        let slot = slot.min(SLOTS - 1);
        counts[g][slot][r.pop.unwrap_or(pops)] += 1;
        wrong[g][slot] |= is_wrong(plan, r);
    }
    let slot_w = plot / SLOTS as f64;
    for (g, rows) in counts.iter().enumerate() {
        let y = TOP + g as f64 * ROW;
        let r = &plan.resolvers[g];
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">r{g:02}{}, asks {}</text>"#,
            LEFT - 6.0,
            y + ROW / 2.0 + 4.0,
            if r.ecs { " ecs" } else { "" },
            escape(&sim.pops[r.primary].name)
        );
        for (s, c) in rows.iter().enumerate() {
            let sum: u32 = c.iter().sum();
            if sum == 0 {
                continue;
            }
            let mut y0 = y;
            let h = ROW - GAP;
            for (p, &k) in c.iter().enumerate().filter(|&(_, &k)| k > 0) {
                let part = h * f64::from(k) / f64::from(sum);
                let fill = if p == pops {
                    "#000".to_owned()
                } else {
                    colour(p)
                };
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{part:.1}" fill="{fill}"/>"#,
                    LEFT + s as f64 * slot_w,
                    slot_w + 0.2
                );
                y0 += part;
            }
            if wrong[g][s] {
                let _ = writeln!(
                    out,
                    r##"<rect class="wrong" x="{:.1}" y="{y:.1}" width="{slot_w:.1}" height="{:.1}" fill="none" stroke="#c00" stroke-width="1.5"/>"##,
                    LEFT + s as f64 * slot_w,
                    ROW - GAP
                );
            }
        }
        for (from, to) in local_only_spans(samples, r.primary, plan.duration) {
            let _ = writeln!(
                out,
                r##"<rect class="local-only" x="{:.1}" y="{:.1}" width="{:.1}" height="{GAP}" fill="#f5a623"/>"##,
                x_of(from),
                y + ROW - GAP,
                x_of(to) - x_of(from)
            );
        }
    }
    let bottom = TOP + groups as f64 * ROW;
    // The time axis, every tenth of the run.
    for k in 0..=10 {
        let t = Duration::from_secs_f64(total * f64::from(k) / 10.0);
        let x = x_of(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{:.0} s</text>"##,
            bottom + 4.0,
            bottom + 16.0,
            t.as_secs_f64()
        );
    }
    for (k, step) in plan.steps.iter().enumerate() {
        let x = x_of(step.at);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{bottom}" stroke="#c00" stroke-dasharray="4,3"/>"##,
            TOP - 8.0
        );
        // Labels alternate between two lines so that close events stay readable.
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{}" fill="#c00" transform="rotate(-20 {x:.1} {})">{}</text>"##,
            TOP - 12.0 - (k % 2) as f64 * 14.0,
            TOP - 12.0 - (k % 2) as f64 * 14.0,
            escape(&step.name())
        );
    }
    let mut y = bottom + 36.0;
    let mut x = LEFT;
    for (i, p) in sim.pops.iter().enumerate().chain(std::iter::once((
        pops,
        &sim.pops[0], // placeholder for the "no answer" key, its name is not used
    ))) {
        let (fill, label) = if i == pops {
            ("#000".to_owned(), "no answer".to_owned())
        } else {
            (colour(i), p.name.clone())
        };
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{}" width="12" height="12" fill="{fill}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 10.0,
            x + 16.0,
            escape(&label)
        );
        x += 110.0;
        if x > WIDTH - 110.0 {
            x = LEFT;
            y += 18.0;
        }
    }
    // The marks' keys, after the POPs'.
    let _ = writeln!(
        out,
        r##"<rect x="{x:.1}" y="{}" width="12" height="12" fill="none" stroke="#c00" stroke-width="1.5"/><text x="{:.1}" y="{y:.1}">wrong answer</text>"##,
        y - 10.0,
        x + 16.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{}" width="12" height="4" fill="#f5a623"/><text x="{:.1}" y="{y:.1}">first node local-only</text>"##,
        x + 110.0,
        y - 6.0,
        x + 126.0
    );
    out.push_str("</svg>\n");
    out
}

/// When `node` answered local-only, as `(from, to)` spans of its status samples (a span
/// ends at the next sample that says otherwise, or at `end`).
fn local_only_spans(samples: &[Sample], node: usize, end: Duration) -> Vec<(Duration, Duration)> {
    let mut spans = Vec::new();
    let mut open: Option<Duration> = None;
    for s in samples.iter().filter(|s| s.node == node) {
        match (open, s.local_only) {
            (None, true) => open = Some(s.at),
            (Some(from), false) => {
                spans.push((from, s.at));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(from) = open {
        spans.push((from, end));
    }
    spans
}
