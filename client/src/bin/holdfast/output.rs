//! What the CLI prints: a table for people, or JSON (`--json`) for
//! scripts. JSON is the library's types serialised as they are.

use holdfast_client::{
    ClusterStatus, Confirmed, Event, EventKind, Extended, LocationUpserted, PolicySet, Released,
    Reservation, ReservationPage, ReservationView, RowAvailability, StockAdjusted,
};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Something the CLI can print both ways.
pub trait Render: Serialize {
    /// The human form.
    fn table(&self) -> String;
}

/// Columns aligned to their widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `key  value` lines.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// `1766400000000 (in 600 s)`.
fn at_ms(ms: u64) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i128)
        .unwrap_or(0);
    let delta_s = (ms as i128 - now_ms) / 1_000;
    if delta_s >= 0 {
        format!("{ms} (in {delta_s} s)")
    } else {
        format!("{ms} ({} s ago)", -delta_s)
    }
}

impl Render for Reservation {
    fn table(&self) -> String {
        let mut s = fields(&[
            ("reservation_id", self.reservation_id.clone()),
            ("expires_at_ms", at_ms(self.expires_at_ms)),
            ("request_id", self.request_id.clone()),
        ]);
        s.push('\n');
        let rows: Vec<Vec<String>> = self
            .allocations
            .iter()
            .map(|a| {
                vec![
                    a.sku.clone(),
                    a.location.clone(),
                    a.quantity.to_string(),
                    a.available_after.to_string(),
                ]
            })
            .collect();
        s + &table(&["SKU", "LOCATION", "HELD", "AVAILABLE_AFTER"], &rows)
    }
}

impl Render for ReservationView {
    fn table(&self) -> String {
        let mut s = fields(&[
            ("reservation_id", self.reservation_id.clone()),
            ("state", format!("{:?}", self.state).to_lowercase()),
            ("owner_id", self.owner_id.clone()),
            ("customer_id", self.customer_id.clone()),
            ("created_at_ms", at_ms(self.created_at_ms)),
            ("expires_at_ms", at_ms(self.expires_at_ms)),
            ("as_of_index", self.as_of_index.to_string()),
        ]);
        s.push('\n');
        let rows: Vec<Vec<String>> = self
            .lines
            .iter()
            .map(|l| {
                vec![
                    l.sku.clone(),
                    l.location.clone(),
                    l.quantity.to_string(),
                    l.confirmed.to_string(),
                ]
            })
            .collect();
        s + &table(&["SKU", "LOCATION", "HELD", "CONFIRMED"], &rows)
    }
}

impl Render for ReservationPage {
    fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .reservations
            .iter()
            .map(|r| {
                vec![
                    r.reservation_id.clone(),
                    format!("{:?}", r.state).to_lowercase(),
                    r.owner_id.clone(),
                    r.customer_id.clone(),
                    r.lines.iter().map(|l| l.quantity).sum::<i64>().to_string(),
                    r.expires_at_ms.to_string(),
                ]
            })
            .collect();
        let mut s = table(
            &[
                "RESERVATION",
                "STATE",
                "OWNER",
                "CUSTOMER",
                "UNITS",
                "EXPIRES_AT_MS",
            ],
            &rows,
        );
        if let Some(token) = &self.next_page_token {
            s.push_str(&format!("next_page_token  {token}\n"));
        }
        s
    }
}

/// Prints nothing: a command whose output was already streamed.
#[derive(Serialize)]
pub struct Nothing;

impl Render for Nothing {
    fn table(&self) -> String {
        String::new()
    }
}

/// One streamed event: a line of text, or one JSON object per line.
pub fn event_line(e: &Event, json: bool) -> String {
    let (shard, index, seq) = e
        .cursor
        .as_ref()
        .map_or((0, 0, 0), |c| (c.shard, c.index, c.seq));
    let kind = EventKind::try_from(e.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| e.kind.to_string());
    if json {
        return serde_json::json!({
            "shard": shard, "index": index, "seq": seq, "at_ms": e.at_ms, "kind": kind,
            "reservation_id": e.reservation_id, "sku": e.sku, "location": e.location,
            "quantity": e.quantity, "available_after": e.available_after,
            "on_hand_after": e.on_hand_after, "expires_at_ms": e.expires_at_ms,
        })
        .to_string();
    }
    let mut line = format!("{shard}:{index}:{seq}  {}  {kind}", e.at_ms);
    for (name, value) in [
        ("reservation", e.reservation_id.clone()),
        ("sku", e.sku.clone()),
        ("location", e.location.clone()),
    ] {
        if !value.is_empty() {
            line.push_str(&format!("  {name}={value}"));
        }
    }
    if e.quantity != 0 {
        line.push_str(&format!("  qty={}", e.quantity));
    }
    line
}

impl Render for Confirmed {
    fn table(&self) -> String {
        fields(&[
            ("reservation_id", self.reservation_id.clone()),
            ("units_confirmed", self.units_confirmed.to_string()),
            ("units_released", self.units_released.to_string()),
            ("request_id", self.request_id.clone()),
        ])
    }
}

impl Render for Released {
    fn table(&self) -> String {
        fields(&[
            ("reservation_id", self.reservation_id.clone()),
            ("units_released", self.units_released.to_string()),
            ("request_id", self.request_id.clone()),
        ])
    }
}

impl Render for Extended {
    fn table(&self) -> String {
        fields(&[
            ("reservation_id", self.reservation_id.clone()),
            ("expires_at_ms", at_ms(self.expires_at_ms)),
            ("request_id", self.request_id.clone()),
        ])
    }
}

impl Render for StockAdjusted {
    fn table(&self) -> String {
        fields(&[
            ("on_hand", self.on_hand.to_string()),
            ("available", self.available.to_string()),
            ("request_id", self.request_id.clone()),
        ])
    }
}

impl Render for LocationUpserted {
    fn table(&self) -> String {
        fields(&[
            ("created", self.created.to_string()),
            ("request_id", self.request_id.clone()),
        ])
    }
}

impl Render for PolicySet {
    fn table(&self) -> String {
        fields(&[("request_id", self.request_id.clone())])
    }
}

impl Render for Vec<RowAvailability> {
    fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|r| {
                vec![
                    r.sku.clone(),
                    r.location.clone(),
                    r.on_hand.to_string(),
                    r.held.to_string(),
                    r.available.to_string(),
                    r.as_of_index.to_string(),
                ]
            })
            .collect();
        table(
            &[
                "SKU",
                "LOCATION",
                "ON_HAND",
                "HELD",
                "AVAILABLE",
                "AS_OF_INDEX",
            ],
            &rows,
        )
    }
}

impl Render for ClusterStatus {
    fn table(&self) -> String {
        let nodes: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.node_id.map_or("?".into(), |id| id.to_string()),
                    n.address.clone(),
                    match &n.error {
                        None => "up".into(),
                        Some(e) => format!("no answer: {e}"),
                    },
                ]
            })
            .collect();
        let mut shards: Vec<Vec<String>> = Vec::new();
        for n in &self.nodes {
            for s in &n.shards {
                shards.push(vec![
                    s.shard.to_string(),
                    n.node_id.map_or("?".into(), |id| id.to_string()),
                    s.leader.map_or("none".into(), |l| l.to_string()),
                    s.term.to_string(),
                    s.commit.to_string(),
                    s.applied.to_string(),
                    s.reservations.to_string(),
                    s.digest.clone().unwrap_or_default(),
                ]);
            }
        }
        shards.sort_by(|a, b| {
            let key = |r: &Vec<String>| (r[0].parse::<u32>().ok(), r[1].clone());
            key(a).cmp(&key(b))
        });
        let with_digest = shards.iter().any(|r| !r[7].is_empty());
        let mut headers = vec![
            "SHARD",
            "NODE",
            "LEADER",
            "TERM",
            "COMMIT",
            "APPLIED",
            "RESERVATIONS",
        ];
        if with_digest {
            headers.push("DIGEST");
        } else {
            for r in &mut shards {
                r.truncate(7);
            }
        }
        table(&["NODE", "ADDRESS", "STATUS"], &nodes) + "\n" + &table(&headers, &shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONG_HEADER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        assert_eq!(t, "A          LONG_HEADER\nwide cell  x\ny          z\n");
    }
}
