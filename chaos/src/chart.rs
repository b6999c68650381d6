//! A run's timeline as one self-contained SVG picture, so a person can see
//! at a glance what a chaos run did: which fault hit which node when, which
//! node led each shard, and what the clients got each second.
//!
//! The unit is a [`Chart`]: the fault windows and per-second answer counts
//! taken from the history, plus leader samples the harness polled during
//! the run (`leaders.jsonl`, [`LeaderSample`]). [`Chart::render_svg`] writes
//! it by hand as SVG text (no scripts, nothing fetched): x is time since
//! the run started; rows, top to bottom:
//!
//! 1. one lane per node with its fault windows, coloured by kind (a
//!    partition is drawn on the nodes it cut off: the first side, and for a
//!    bridge both outer sides);
//! 2. one lane per shard, coloured by the node that led it;
//! 3. successful operations per second, and refusals per second (the
//!    ledger's answers such as `OUT_OF_STOCK`, and requests refused before
//!    the log such as `INVALID_ARGUMENT`);
//! 4. errors per second: attempts without an answer (`unknown`) and
//!    refusals that leave the outcome open (`UNAVAILABLE`, `ABORTED`, …).
//!
//! Fault windows are also shaded faintly across the plots below, so a dip
//! lines up with its cause. Every mark carries a `<title>` (a tooltip in a
//! browser) with its exact times.

use crate::codes::{classify, CodeClass};
use crate::history::{Entry, FaultPhase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Picture width, px: wide enough to tell seconds apart in a 3-minute run.
const WIDTH_PX: f64 = 1200.0;
/// Left margin for lane labels, px.
const LABEL_PX: f64 = 110.0;
/// Right margin, px.
const RIGHT_PX: f64 = 20.0;
/// Height of one lane (node or shard), px.
const LANE_PX: f64 = 16.0;
/// Space between lanes, px.
const LANE_GAP_PX: f64 = 3.0;
/// Height of one per-second plot, px.
const PLOT_PX: f64 = 110.0;
/// Height of a section heading, px.
const HEADING_PX: f64 = 22.0;
/// A window shorter than this is drawn this wide, so an instant shows.
const MARK_MIN_PX: f64 = 2.0;
/// Time axis ticks at most: more would overlap their labels.
const TICKS_MAX: u64 = 15;
/// Candidate tick steps, seconds.
const TICK_STEPS_S: [u64; 11] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
/// Fill per fault kind; anything else is grey.
const FAULT_COLOURS: [(&str, &str); 5] = [
    ("kill", "#d62728"),
    ("pause", "#ff7f0e"),
    ("partition", "#9467bd"),
    ("restart", "#1f77b4"),
    ("wipe", "#8c564b"),
];
/// Fill per leader node id (id modulo the palette); 0 means no leader.
const NODE_COLOURS: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#17becf",
];
/// Fill of a shard while no node reported a leader.
const NO_LEADER_COLOUR: &str = "#dddddd";

/// Who led one shard from `time_us` on, as the harness saw it: the leader
/// with the highest term any answering node reported (`leader` 0: none
/// known). One line of `leaders.jsonl`, written when it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderSample {
    /// When it was seen, µs on the history's clock.
    pub time_us: u64,
    /// The shard.
    pub shard: u32,
    /// The leader's node id, 0 if no node knew one.
    pub leader: u64,
    /// Its term (0 with no leader).
    pub term: u64,
}

/// One fault from its start to its end (or the end of the history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultWindow {
    /// `kill`, `pause`, `partition`, ...
    pub kind: String,
    /// The nodes hit, as the history names them (`n2`, `n1|n2,n3`).
    pub target: String,
    /// Start, µs.
    pub start_us: u64,
    /// End, µs (equal to the start for an instant fault).
    pub end_us: u64,
}

/// What the clients got in one second of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    /// Attempts answered with success.
    pub ok: u64,
    /// Attempts refused with a definite answer: by the ledger (out of
    /// stock, not pending, ...) or before the log (a bad argument).
    pub refused: u64,
    /// Attempts without an answer, or refused leaving the outcome open.
    pub errors: u64,
}

/// Everything the picture shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chart {
    /// Heading (for example the checker's summary line).
    pub title: String,
    /// The last time stamp, µs: the right edge.
    pub end_us: u64,
    /// Fault windows in start order.
    pub faults: Vec<FaultWindow>,
    /// Leader samples in time order.
    pub leaders: Vec<LeaderSample>,
    /// Index `i` covers `[i s, i+1 s)`.
    pub seconds: Vec<Second>,
}

impl Chart {
    /// The chart of a recorded history and the leader samples polled
    /// during it.
    pub fn from_run(title: &str, entries: &[Entry], mut leaders: Vec<LeaderSample>) -> Chart {
        let end_us = entries
            .iter()
            .map(Entry::time_us)
            .chain(leaders.iter().map(|l| l.time_us))
            .max()
            .unwrap_or(0);
        leaders.sort_by_key(|l| (l.time_us, l.shard));
        Chart {
            title: title.to_string(),
            end_us,
            faults: fault_windows(entries, end_us),
            leaders,
            seconds: per_second(entries, end_us),
        }
    }

    /// The picture as SVG text.
    pub fn render_svg(&self) -> String {
        let mut svg = Svg::new(self.end_us.max(1));
        let nodes = self.node_lanes();
        let shards: Vec<u32> = {
            let mut s: Vec<u32> = self.leaders.iter().map(|l| l.shard).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        svg.text(8.0, 18.0, "title", &self.title);
        let mut y = 30.0;
        y = svg.heading(y, "faults");
        let lanes_top = y;
        for node in &nodes {
            svg.lane_label(y, node);
            for f in &self.faults {
                if fault_lanes(&f.target).iter().any(|l| l == node) {
                    svg.fault(y, f);
                }
            }
            y += LANE_PX + LANE_GAP_PX;
        }
        y = svg.heading(y, "shard leaders");
        for &shard in &shards {
            svg.lane_label(y, &format!("shard {shard}"));
            self.leader_lane(&mut svg, y, shard);
            y += LANE_PX + LANE_GAP_PX;
        }
        y = svg.heading(y, "per second: ok (green), refused (grey)");
        let ok: Vec<u64> = self.seconds.iter().map(|s| s.ok).collect();
        let refused: Vec<u64> = self.seconds.iter().map(|s| s.refused).collect();
        svg.plot(
            y,
            &[("ok", "#2ca02c", &ok), ("refused", "#999999", &refused)],
        );
        y += PLOT_PX + 8.0;
        y = svg.heading(
            y,
            "per second: errors (no answer, or a refusal that leaves the outcome open)",
        );
        let errors: Vec<u64> = self.seconds.iter().map(|s| s.errors).collect();
        svg.plot(y, &[("errors", "#d62728", &errors)]);
        y += PLOT_PX;
        // Faint bands under the plots, from the first lane to the axis.
        for f in &self.faults {
            svg.band(lanes_top, y, f);
        }
        y = svg.axis(y);
        y = svg.legend(y + 8.0);
        svg.finish(y + 8.0)
    }

    /// Node lanes: every name the fault targets and leader samples use,
    /// in node order (`n2` before `n10`).
    fn node_lanes(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .faults
            .iter()
            .flat_map(|f| all_names(&f.target))
            .chain(
                self.leaders
                    .iter()
                    .filter(|l| l.leader != 0)
                    .map(|l| format!("n{}", l.leader)),
            )
            .collect();
        names.sort_by_key(|n| (trailing_number(n), n.clone()));
        names.dedup();
        names
    }

    /// One shard's leader segments: each sample holds until the next one
    /// of that shard (or the end).
    fn leader_lane(&self, svg: &mut Svg, y: f64, shard: u32) {
        let samples: Vec<&LeaderSample> =
            self.leaders.iter().filter(|l| l.shard == shard).collect();
        for (i, s) in samples.iter().enumerate() {
            let until = samples.get(i + 1).map_or(self.end_us, |n| n.time_us);
            svg.leader(y, shard, s, until);
        }
    }
}

/// Pairs fault starts with their ends by kind and target; a start without
/// an end lasts to `end_us`, an end without a start is ignored.
pub fn fault_windows(entries: &[Entry], end_us: u64) -> Vec<FaultWindow> {
    let mut open: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let mut windows: Vec<FaultWindow> = Vec::new();
    for entry in entries {
        let Entry::Fault {
            time_us,
            kind,
            target,
            phase,
        } = entry
        else {
            continue;
        };
        let key = (kind.clone(), target.clone());
        match phase {
            FaultPhase::Start => {
                open.entry(key).or_default().push(windows.len());
                windows.push(FaultWindow {
                    kind: kind.clone(),
                    target: target.clone(),
                    start_us: *time_us,
                    end_us: end_us.max(*time_us),
                });
            }
            FaultPhase::End => {
                if let Some(i) = open.get_mut(&key).and_then(|starts| starts.pop()) {
                    windows[i].end_us = (*time_us).max(windows[i].start_us);
                }
            }
        }
    }
    windows
}

/// Counts each completion in its second.
fn per_second(entries: &[Entry], end_us: u64) -> Vec<Second> {
    let mut seconds = vec![Second::default(); (end_us / 1_000_000 + 1) as usize];
    for entry in entries {
        let (at, slot): (u64, fn(&mut Second)) = match entry {
            Entry::Ok { time_us, .. } => (*time_us, |s| s.ok += 1),
            Entry::Unknown { time_us, .. } => (*time_us, |s| s.errors += 1),
            Entry::Refused {
                time_us,
                code,
                metadata,
                ..
            } => match classify(code, metadata) {
                CodeClass::Decided | CodeClass::IdTaken | CodeClass::NotApplied => {
                    (*time_us, |s| s.refused += 1)
                }
                CodeClass::Open => (*time_us, |s| s.errors += 1),
            },
            Entry::Invoke { .. } | Entry::Fault { .. } => continue,
        };
        if let Some(s) = seconds.get_mut((at / 1_000_000) as usize) {
            slot(s);
        }
    }
    seconds
}

/// The nodes a fault is drawn on: the target itself (`n2`); for a
/// partition `a|b`, side `a` (the side cut off); for a bridge `a|m|b`,
/// both outer sides.
pub fn fault_lanes(target: &str) -> Vec<String> {
    let sides: Vec<&str> = target.split('|').collect();
    let hit: Vec<&str> = match sides.as_slice() {
        [left, _, right] => vec![left, right],
        [first, ..] => vec![first],
        [] => Vec::new(),
    };
    hit.iter()
        .flat_map(|side| side.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every node name in a target, whichever side.
fn all_names(target: &str) -> Vec<String> {
    target
        .split(['|', ','])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `n12` → 12; names without a number sort last.
fn trailing_number(name: &str) -> u64 {
    let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    digits.parse().unwrap_or(u64::MAX)
}

fn fault_colour(kind: &str) -> &'static str {
    FAULT_COLOURS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("#7f7f7f", |(_, c)| c)
}

fn node_colour(leader: u64) -> &'static str {
    if leader == 0 {
        NO_LEADER_COLOUR
    } else {
        NODE_COLOURS[(leader as usize - 1) % NODE_COLOURS.len()]
    }
}

fn seconds(us: u64) -> String {
    format!("{:.3}", us as f64 / 1e6)
}

/// Escapes text for SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// SVG text under construction, with the time scale.
struct Svg {
    body: String,
    end_us: u64,
}

impl Svg {
    fn new(end_us: u64) -> Svg {
        Svg {
            body: String::new(),
            end_us,
        }
    }

    fn x(&self, us: u64) -> f64 {
        LABEL_PX
            + (WIDTH_PX - LABEL_PX - RIGHT_PX) * us.min(self.end_us) as f64 / self.end_us as f64
    }

    /// `x` and width of `[start, end]`, at least `MARK_MIN_PX` wide.
    fn span(&self, start_us: u64, end_us: u64) -> (f64, f64) {
        let x = self.x(start_us);
        (x, (self.x(end_us) - x).max(MARK_MIN_PX))
    }

    fn text(&mut self, x: f64, y: f64, class: &str, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text class="{class}" x="{x:.1}" y="{y:.1}">{}</text>"#,
            escape(text)
        );
    }

    fn heading(&mut self, y: f64, text: &str) -> f64 {
        self.text(8.0, y + 15.0, "heading", text);
        y + HEADING_PX
    }

    fn lane_label(&mut self, y: f64, label: &str) {
        self.text(8.0, y + LANE_PX - 4.0, "lane", label);
        let _ = writeln!(
            self.body,
            r##"<rect class="lane" x="{LABEL_PX}" y="{y:.1}" width="{:.1}" height="{LANE_PX}" fill="#f6f6f6"/>"##,
            WIDTH_PX - LABEL_PX - RIGHT_PX
        );
    }

    fn fault(&mut self, y: f64, f: &FaultWindow) {
        let (x, w) = self.span(f.start_us, f.end_us);
        let _ = writeln!(
            self.body,
            r#"<rect class="fault {kind}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{LANE_PX}" fill="{colour}"><title>{kind} {target} {from}–{to} s</title></rect>"#,
            kind = escape(&f.kind),
            target = escape(&f.target),
            colour = fault_colour(&f.kind),
            from = seconds(f.start_us),
            to = seconds(f.end_us),
        );
    }

    fn band(&mut self, top: f64, bottom: f64, f: &FaultWindow) {
        let (x, w) = self.span(f.start_us, f.end_us);
        let _ = writeln!(
            self.body,
            r#"<rect class="band" x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" fill="{}" fill-opacity="0.08"/>"#,
            bottom - top,
            fault_colour(&f.kind),
        );
    }

    fn leader(&mut self, y: f64, shard: u32, s: &LeaderSample, until_us: u64) {
        let (x, w) = self.span(s.time_us, until_us);
        let who = if s.leader == 0 {
            "no leader".to_string()
        } else {
            format!("n{} (term {})", s.leader, s.term)
        };
        let _ = writeln!(
            self.body,
            r#"<rect class="leader" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{LANE_PX}" fill="{}"><title>shard {shard}: {who} {}–{} s</title></rect>"#,
            node_colour(s.leader),
            seconds(s.time_us),
            seconds(until_us),
        );
        if s.leader != 0 && w >= 24.0 {
            self.text(
                x + 3.0,
                y + LANE_PX - 4.0,
                "on-leader",
                &format!("n{}", s.leader),
            );
        }
    }

    /// Per-second series as lines sharing one y scale, with their maximum.
    fn plot(&mut self, top: f64, series: &[(&str, &str, &[u64])]) {
        let max = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        let bottom = top + PLOT_PX;
        let _ = writeln!(
            self.body,
            r##"<rect class="plot" x="{LABEL_PX}" y="{top:.1}" width="{:.1}" height="{PLOT_PX}" fill="none" stroke="#cccccc"/>"##,
            WIDTH_PX - LABEL_PX - RIGHT_PX
        );
        self.text(8.0, top + 12.0, "lane", &format!("{max}/s"));
        self.text(8.0, bottom, "lane", "0");
        for (name, colour, values) in series {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let x = self.x(i as u64 * 1_000_000 + 500_000);
                    let y = bottom - PLOT_PX * v as f64 / max as f64;
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                self.body,
                r#"<polyline class="series {name}" fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
        }
    }

    /// The time axis under the plots; returns the y below it.
    fn axis(&mut self, y: f64) -> f64 {
        let end_s = self.end_us / 1_000_000;
        let step = TICK_STEPS_S
            .iter()
            .copied()
            .find(|s| end_s / s <= TICKS_MAX)
            .unwrap_or(3600);
        let mut t = 0;
        while t <= end_s {
            let x = self.x(t * 1_000_000);
            let _ = writeln!(
                self.body,
                r##"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#666666"/>"##,
                y + 4.0
            );
            self.text(x - 6.0, y + 16.0, "tick", &format!("{t}s"));
            t += step;
        }
        y + 20.0
    }

    fn legend(&mut self, y: f64) -> f64 {
        let mut x = LABEL_PX;
        for (kind, colour) in FAULT_COLOURS {
            let _ = writeln!(
                self.body,
                r#"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" fill="{colour}"/>"#
            );
            self.text(x + 16.0, y + 11.0, "lane", kind);
            x += 90.0;
        }
        y + 16.0
    }

    fn finish(self, height: f64) -> String {
        let mut out = String::with_capacity(self.body.len() + 512);
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height:.0}" viewBox="0 0 {WIDTH_PX} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        out.push_str(
            "<style>.title{font-size:13px;font-weight:bold}.heading{font-weight:bold}.on-leader{fill:#fff;font-size:10px}</style>\n",
        );
        let _ = writeln!(
            out,
            r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
        );
        out.push_str(&self.body);
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, OpResult};

    fn fault(time_us: u64, kind: &str, target: &str, phase: FaultPhase) -> Entry {
        Entry::Fault {
            time_us,
            kind: kind.into(),
            target: target.into(),
            phase,
        }
    }

    fn read(process: u64, time_us: u64) -> Entry {
        Entry::Invoke {
            process,
            time_us,
            op: Op::ReadAvailability {
                sku: "A".into(),
                location: "L".into(),
                stale: false,
            },
        }
    }

    fn history() -> Vec<Entry> {
        vec![
            read(1, 100),
            Entry::Ok {
                process: 1,
                time_us: 200,
                result: OpResult::NoRow {},
            },
            fault(5_000_000, "kill", "n2", FaultPhase::Start),
            fault(8_000_000, "kill", "n2", FaultPhase::End),
            fault(10_000_000, "partition", "n1|n2,n3", FaultPhase::Start),
            fault(12_500_000, "partition", "n1|n2,n3", FaultPhase::End),
            fault(14_000_000, "partition", "n1|n3|n2", FaultPhase::Start),
            read(1, 14_100_000),
            Entry::Unknown {
                process: 1,
                time_us: 17_100_000,
                error: "deadline <exceeded>".into(),
            },
            read(2, 17_200_000),
            Entry::Refused {
                process: 2,
                time_us: 17_300_000,
                code: "FAILED_PRECONDITION".into(),
                reason: "OUT_OF_STOCK".into(),
                metadata: BTreeMap::new(),
            },
        ]
    }

    #[test]
    fn faults_pair_starts_with_ends_and_open_ones_last_to_the_end() {
        let windows = fault_windows(&history(), 17_300_000);
        let spans: Vec<(&str, &str, u64, u64)> = windows
            .iter()
            .map(|w| (w.kind.as_str(), w.target.as_str(), w.start_us, w.end_us))
            .collect();
        assert_eq!(
            spans,
            [
                ("kill", "n2", 5_000_000, 8_000_000),
                ("partition", "n1|n2,n3", 10_000_000, 12_500_000),
                ("partition", "n1|n3|n2", 14_000_000, 17_300_000),
            ]
        );
    }

    #[test]
    fn a_partition_is_drawn_on_the_nodes_it_cuts_off() {
        assert_eq!(fault_lanes("n2"), ["n2"]);
        assert_eq!(fault_lanes("n1|n2,n3"), ["n1"]);
        assert_eq!(fault_lanes("n1,n4|n2,n3,n5"), ["n1", "n4"]);
        assert_eq!(fault_lanes("n1|n3|n2"), ["n1", "n2"]);
    }

    #[test]
    fn answers_are_counted_in_their_second() {
        let chart = Chart::from_run("t", &history(), Vec::new());
        assert_eq!(chart.end_us, 17_300_000);
        assert_eq!(chart.seconds.len(), 18);
        assert_eq!(chart.seconds[0].ok, 1);
        assert_eq!(chart.seconds[17].errors, 1);
        assert_eq!(chart.seconds[17].refused, 1);
        let total: u64 = chart
            .seconds
            .iter()
            .map(|s| s.ok + s.refused + s.errors)
            .sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn the_svg_shows_every_fault_window_on_its_node_and_every_leader() {
        let leaders = vec![
            LeaderSample {
                time_us: 1_000_000,
                shard: 0,
                leader: 1,
                term: 2,
            },
            LeaderSample {
                time_us: 10_600_000,
                shard: 0,
                leader: 3,
                term: 3,
            },
            LeaderSample {
                time_us: 1_000_000,
                shard: 1,
                leader: 0,
                term: 0,
            },
        ];
        let svg = Chart::from_run("chaos: <run> & more", &history(), leaders).render_svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script"), "no scripts");
        assert!(
            svg.contains("chaos: &lt;run&gt; &amp; more"),
            "escaped title"
        );
        // Each window once per node lane it is drawn on.
        let marks = |title: &str| svg.matches(&format!("<title>{title}</title>")).count();
        assert_eq!(marks("kill n2 5.000–8.000 s"), 1);
        assert_eq!(marks("partition n1|n2,n3 10.000–12.500 s"), 1);
        assert_eq!(marks("partition n1|n3|n2 14.000–17.300 s"), 2);
        assert_eq!(svg.matches(r#"<rect class="fault kill""#).count(), 1);
        assert_eq!(svg.matches(r#"<rect class="band""#).count(), 3);
        // The kill sits on n2's lane: the second node lane.
        // The lane label's text sits `LANE_PX - 4` below the lane's top.
        let lane_y = |label: &str| -> f64 {
            let line = svg
                .lines()
                .find(|l| {
                    l.starts_with(r#"<text class="lane""#)
                        && l.ends_with(&format!(">{label}</text>"))
                })
                .expect("a lane label");
            let y = line.split("y=\"").nth(1).and_then(|r| r.split('"').next());
            y.and_then(|y| y.parse::<f64>().ok()).expect("a y") - (LANE_PX - 4.0)
        };
        let kill = svg
            .lines()
            .find(|l| l.contains(r#"class="fault kill""#))
            .unwrap();
        assert!(
            kill.contains(&format!(r#"y="{:.1}""#, lane_y("n2"))),
            "{kill}"
        );
        // Leaders: one segment per sample, the last to the end.
        assert!(svg.contains("<title>shard 0: n1 (term 2) 1.000–10.600 s</title>"));
        assert!(svg.contains("<title>shard 0: n3 (term 3) 10.600–17.300 s</title>"));
        assert!(svg.contains("<title>shard 1: no leader 1.000–17.300 s</title>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
    }

    #[test]
    fn an_empty_history_still_draws() {
        let svg = Chart::from_run("empty", &[], Vec::new()).render_svg();
        assert!(svg.contains("</svg>"));
        assert!(!svg.contains("NaN"));
    }
}
