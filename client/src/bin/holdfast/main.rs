//! `holdfast`: the command line of a Holdfast cluster, on the client
//! library (so it routes to shard leaders, retries with the same request
//! id, and reports typed errors with distinct exit codes).
//!
//! `holdfast --nodes 127.0.0.1:7401,127.0.0.1:7402 reserve --sku SKU-1
//! --qty 2 --location berlin`; `holdfast --help` lists every subcommand
//! and the exit codes.

mod exit;
mod output;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use holdfast_client::{
    AdjustStock, Client, ClientOptions, Confirm, Consistency, Error, EventKind, Extend, Fill,
    LimitChange, Line, ListReservations, Party, Release, ReservationPage, ReservationState,
    Reserve, RowKey, SetPolicy, UpsertLocation, WatchEvents, RESERVE_TTL_MS_DEFAULT,
};
use output::Render;
use std::process::ExitCode;
use std::time::Duration;
use tokio_stream::StreamExt;

#[derive(Parser, Debug)]
#[command(
    name = "holdfast",
    version,
    about = "Reserve, confirm and release stock on a Holdfast cluster, and look at it"
)]
struct Cli {
    /// Nodes to talk to, host:port, comma-separated: any subset of the
    /// cluster (the others are found through it).
    #[arg(
        long,
        env = "HOLDFAST_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:7400",
        global = true
    )]
    nodes: Vec<String>,
    /// Print JSON (the answer, or {"error": {...}}) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of the call in ms, retries included.
    #[arg(long, global = true, default_value_t = 10_000)]
    deadline_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold stock: one line with --sku/--qty[/--location], or several with
    /// --line.
    Reserve(ReserveArgs),
    /// Turn a pending reservation into a sale (all units, or --qty per
    /// allocation).
    Confirm {
        /// The reservation id printed by `reserve`.
        reservation_id: String,
        /// Units to confirm of each allocation, in order (repeat the
        /// flag); the rest is released. Default: everything.
        #[arg(long = "qty")]
        quantities: Vec<i64>,
        #[command(flatten)]
        id: RequestIdArg,
    },
    /// Give a pending reservation's units back.
    Release {
        /// The reservation id.
        reservation_id: String,
        #[command(flatten)]
        id: RequestIdArg,
    },
    /// Move a pending reservation's expiry to now + --ttl-ms.
    Extend {
        /// The reservation id.
        reservation_id: String,
        /// New hold duration from now, ms (1,000..=86,400,000).
        #[arg(long)]
        ttl_ms: u64,
        #[command(flatten)]
        id: RequestIdArg,
    },
    /// Read one reservation: state, lines, times (linearizable unless
    /// --stale).
    Get {
        /// The reservation id.
        reservation_id: String,
        /// Read the answering node's applied state (cheaper, may lag).
        #[arg(long)]
        stale: bool,
    },
    /// Read availability of rows (linearizable unless --stale).
    Availability {
        /// SKUs to read (every location of each, or --location).
        #[arg(long, required_unless_present = "row")]
        sku: Vec<String>,
        /// Only this location of the --sku values.
        #[arg(long)]
        location: Option<String>,
        /// Rows as sku[@location] (repeat the flag).
        #[arg(long)]
        row: Vec<String>,
        /// Read the answering node's applied state (cheaper, may lag).
        #[arg(long)]
        stale: bool,
    },
    /// Receive (+), count or write off (-) stock of one row.
    Adjust {
        /// Product code.
        #[arg(long)]
        sku: String,
        /// An existing location.
        #[arg(long)]
        location: String,
        /// Units to add (negative: remove).
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
        /// Apply only if on hand is exactly this now.
        #[arg(long)]
        expected_on_hand: Option<i64>,
        #[command(flatten)]
        id: RequestIdArg,
    },
    /// Create or change a location (on every shard).
    Location {
        /// Location name.
        name: String,
        /// Region, for nearest-region allocation.
        #[arg(long)]
        region: String,
        /// Allocation rank: lower is preferred.
        #[arg(long, default_value_t = 0)]
        priority: u32,
        #[command(flatten)]
        id: RequestIdArg,
    },
    /// Set a row's safety stock / backorder allowance, or the SKU's
    /// per-customer limit.
    Policy(PolicyArgs),
    /// List an owner's or a customer's reservations: every page, or one
    /// with --page-size / --page-token.
    List {
        /// Cart or order id.
        #[arg(
            long,
            conflicts_with = "customer",
            required_unless_present = "customer"
        )]
        owner: Option<String>,
        /// Customer id.
        #[arg(long)]
        customer: Option<String>,
        /// Only this state: pending, confirmed, released or expired.
        #[arg(long, value_parser = parse_state)]
        state: Option<ReservationState>,
        /// One page of at most this many (1..=1,000).
        #[arg(long)]
        page_size: Option<u32>,
        /// One page, from a previous page's next_page_token.
        #[arg(long)]
        page_token: Option<String>,
        /// Read the answering nodes' applied state (cheaper, may lag).
        #[arg(long)]
        stale: bool,
    },
    /// Stream change events (one line each; JSON lines with --json),
    /// resuming on another node if the one streaming fails.
    Watch {
        /// Only this shard (repeat the flag); default every shard.
        #[arg(long = "shard")]
        shards: Vec<u32>,
        /// Resume after shard:index:seq (repeat per shard).
        #[arg(long, value_parser = parse_cursor)]
        after: Vec<(u32, u64, u32)>,
        /// Shards without --after start at the next event, not the oldest
        /// kept.
        #[arg(long)]
        from_latest: bool,
        /// Only events of SKUs with this prefix.
        #[arg(long, default_value = "")]
        sku_prefix: String,
        /// Only these kinds (repeat): held, confirmed, released, expired,
        /// extended, adjusted, location_upserted, row_policy_set,
        /// customer_limit_set.
        #[arg(long = "kind", value_parser = parse_kind)]
        kinds: Vec<EventKind>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Cluster introspection.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Every node's view: members, and per shard the leader, term, commit
    /// and applied index.
    Status {
        /// Also each shard's state digest (replicas that applied the same
        /// log have equal digests).
        #[arg(long)]
        digest: bool,
    },
}

#[derive(Args, Debug)]
struct RequestIdArg {
    /// Idempotency key (1..=128 bytes); default: a new random one. Repeat a
    /// call with the same id to retry it safely.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Args, Debug)]
struct ReserveArgs {
    /// Product code of a single line.
    #[arg(long, requires = "qty", conflicts_with = "line")]
    sku: Option<String>,
    /// Units of the single line.
    #[arg(long, requires = "sku")]
    qty: Option<i64>,
    /// Location of the single line (default: the allocation policy picks).
    #[arg(long, requires = "sku")]
    location: Option<String>,
    /// A line as sku:qty[@location] (repeat the flag for several).
    #[arg(long, required_unless_present = "sku")]
    line: Vec<String>,
    /// Cart or order that owns the hold.
    #[arg(long, default_value = "holdfast-cli")]
    owner: String,
    /// Customer (for per-customer limits).
    #[arg(long, default_value = "holdfast-cli")]
    customer: String,
    /// Hold duration, ms.
    #[arg(long, default_value_t = RESERVE_TTL_MS_DEFAULT)]
    ttl_ms: u64,
    /// Hold what is available of each line instead of all or nothing.
    #[arg(long)]
    partial: bool,
    /// Allow a line to be taken from several locations.
    #[arg(long)]
    allow_split: bool,
    /// Ship-to region (its locations are preferred).
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    id: RequestIdArg,
}

#[derive(Args, Debug)]
struct PolicyArgs {
    /// Product code.
    #[arg(long)]
    sku: String,
    /// The row's location (needed for --safety-stock and --backorder).
    #[arg(long)]
    location: Option<String>,
    /// Units never promised.
    #[arg(long)]
    safety_stock: Option<i64>,
    /// Units promisable beyond on hand.
    #[arg(long)]
    backorder: Option<i64>,
    /// Per-customer limit of the SKU, units.
    #[arg(long, conflicts_with = "clear_limit")]
    limit: Option<u64>,
    /// Campaign of --limit (a new number restarts every count).
    #[arg(long, default_value_t = 0, requires = "limit")]
    campaign: u32,
    /// Remove the SKU's per-customer limit.
    #[arg(long)]
    clear_limit: bool,
    #[command(flatten)]
    id: RequestIdArg,
}

/// `sku:qty[@location]`.
fn parse_line(spec: &str) -> Result<Line, String> {
    let (head, location) = match spec.rsplit_once('@') {
        Some((h, l)) => (h, Some(l.to_string())),
        None => (spec, None),
    };
    let (sku, qty) = head
        .rsplit_once(':')
        .ok_or_else(|| format!("--line {spec:?} is not sku:qty[@location]"))?;
    let quantity = qty
        .parse()
        .map_err(|_| format!("--line {spec:?}: {qty:?} is not a quantity"))?;
    Ok(Line {
        sku: sku.to_string(),
        quantity,
        location,
    })
}

/// `pending`, `confirmed`, `released` or `expired`.
fn parse_state(s: &str) -> Result<ReservationState, String> {
    Ok(match s {
        "pending" => ReservationState::Pending,
        "confirmed" => ReservationState::Confirmed,
        "released" => ReservationState::Released,
        "expired" => ReservationState::Expired,
        _ => {
            return Err(format!(
                "{s:?} is not pending, confirmed, released or expired"
            ))
        }
    })
}

/// `shard:index:seq`.
fn parse_cursor(s: &str) -> Result<(u32, u64, u32), String> {
    let bad = || format!("{s:?} is not shard:index:seq");
    let mut parts = s.split(':');
    let (Some(shard), Some(index), Some(seq), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok((
        shard.parse().map_err(|_| bad())?,
        index.parse().map_err(|_| bad())?,
        seq.parse().map_err(|_| bad())?,
    ))
}

/// `held`, `confirmed`, ... (the proto's names, lower case, no prefix).
fn parse_kind(s: &str) -> Result<EventKind, String> {
    EventKind::from_str_name(&format!("EVENT_KIND_{}", s.to_ascii_uppercase()))
        .filter(|k| *k != EventKind::Unspecified)
        .ok_or_else(|| format!("{s:?} is not an event kind"))
}

/// `sku[@location]`.
fn parse_row(spec: &str) -> RowKey {
    match spec.rsplit_once('@') {
        Some((sku, location)) => RowKey::at(sku, location),
        None => RowKey::sku(spec),
    }
}

fn reserve_request(a: ReserveArgs) -> Result<Reserve, String> {
    let mut r = Reserve::new(a.owner, a.customer).ttl_ms(a.ttl_ms);
    if let (Some(sku), Some(qty)) = (a.sku, a.qty) {
        r.lines.push(Line {
            sku,
            quantity: qty,
            location: a.location,
        });
    }
    for spec in &a.line {
        r.lines.push(parse_line(spec)?);
    }
    r.fill = if a.partial {
        Fill::Partial
    } else {
        Fill::AllOrNothing
    };
    r.allow_split = a.allow_split;
    r.region = a.region;
    r.request_id = a.id.request_id;
    Ok(r)
}

fn policy_request(a: PolicyArgs) -> SetPolicy {
    SetPolicy {
        request_id: a.id.request_id,
        sku: a.sku,
        location: a.location,
        safety_stock: a.safety_stock,
        backorder_allowance: a.backorder,
        customer_limit: match (a.limit, a.clear_limit) {
            (Some(max_units), _) => LimitChange::Set {
                max_units,
                campaign: a.campaign,
            },
            (None, true) => LimitChange::Clear,
            (None, false) => LimitChange::Keep,
        },
    }
}

/// What one command printed, or the error it ended with.
type Outcome = Result<Box<dyn Printable>, Error>;

/// `Render` made object-safe for the dispatcher.
trait Printable {
    fn json(&self) -> String;
    fn table(&self) -> String;
}

impl<T: Render> Printable for T {
    fn json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"encode_error\": \"{e}\"}}"))
    }
    fn table(&self) -> String {
        Render::table(self)
    }
}

fn boxed<T: Render + 'static>(r: Result<T, Error>) -> Outcome {
    r.map(|v| Box::new(v) as Box<dyn Printable>)
}

async fn run(client: Client, command: Command) -> Result<Outcome, String> {
    Ok(match command {
        Command::Reserve(a) => boxed(client.reserve(reserve_request(a)?).await),
        Command::Confirm {
            reservation_id,
            quantities,
            id,
        } => {
            let mut c = Confirm::partly(reservation_id, quantities);
            c.request_id = id.request_id;
            boxed(client.confirm(c).await)
        }
        Command::Release { reservation_id, id } => {
            let mut r = Release::new(reservation_id);
            r.request_id = id.request_id;
            boxed(client.release(r).await)
        }
        Command::Extend {
            reservation_id,
            ttl_ms,
            id,
        } => {
            let mut e = Extend::new(reservation_id, ttl_ms);
            e.request_id = id.request_id;
            boxed(client.extend(e).await)
        }
        Command::Get {
            reservation_id,
            stale,
        } => {
            let consistency = if stale {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            };
            boxed(client.get_reservation(&reservation_id, consistency).await)
        }
        Command::Availability {
            sku,
            location,
            row,
            stale,
        } => {
            let mut rows: Vec<RowKey> = sku
                .into_iter()
                .map(|s| RowKey {
                    sku: s,
                    location: location.clone(),
                })
                .collect();
            rows.extend(row.iter().map(|r| parse_row(r)));
            let consistency = if stale {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            };
            boxed(client.get_availability(rows, consistency).await)
        }
        Command::Adjust {
            sku,
            location,
            delta,
            expected_on_hand,
            id,
        } => {
            let mut a = AdjustStock::new(sku, location, delta);
            a.expected_on_hand = expected_on_hand;
            a.request_id = id.request_id;
            boxed(client.adjust_stock(a).await)
        }
        Command::Location {
            name,
            region,
            priority,
            id,
        } => {
            let mut u = UpsertLocation::new(name, region, priority);
            u.request_id = id.request_id;
            boxed(client.upsert_location(u).await)
        }
        Command::Policy(a) => boxed(client.set_policy(policy_request(a)).await),
        Command::List {
            owner,
            customer,
            state,
            page_size,
            page_token,
            stale,
        } => {
            let party = match (owner, customer) {
                (Some(owner), _) => Party::Owner(owner),
                (None, Some(customer)) => Party::Customer(customer),
                (None, None) => return Err("give --owner or --customer".into()),
            };
            let mut request = ListReservations::of(party);
            request.state = state;
            if stale {
                request.consistency = Consistency::Stale;
            }
            if page_size.is_some() || page_token.is_some() {
                request.page_size = page_size.unwrap_or(0);
                request.page_token = page_token;
                boxed(client.list_reservations(request).await)
            } else {
                boxed(
                    client
                        .list_all_reservations(request)
                        .await
                        .map(|reservations| ReservationPage {
                            reservations,
                            next_page_token: None,
                        }),
                )
            }
        }
        Command::Watch { .. } => return Err("watch streams; it is run by watch()".into()),
        Command::Cluster {
            command: ClusterCommand::Status { digest },
        } => boxed(Ok(client.cluster_status(digest).await)),
    })
}

/// `holdfast watch`: prints events as they come until --count, --seconds,
/// or the stream fails for good (then its error, as any command's).
async fn watch(client: Client, command: Command, json: bool) -> Result<(), Error> {
    let Command::Watch {
        shards,
        after,
        from_latest,
        sku_prefix,
        kinds,
        count,
        seconds,
    } = command
    else {
        return Ok(());
    };
    let mut stream = client.watch_events(WatchEvents {
        shards,
        after,
        from_latest,
        sku_prefix,
        kinds,
    });
    let stop = tokio::time::sleep(seconds.map_or(Duration::MAX, Duration::from_secs));
    tokio::pin!(stop);
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = &mut stop => break,
        };
        match event {
            Some(Ok(event)) => {
                seen += 1;
                println!("{}", output::event_line(&event, json));
            }
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(())
}

fn report_error(e: &Error, json: bool) {
    if json {
        let body = serde_json::json!({ "error": e, "exit_code": exit::code(e) });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return;
    }
    eprintln!("holdfast: {e}");
    if let Error::DeadlineExceeded {
        request_id: Some(id),
        ..
    } = e
    {
        eprintln!("holdfast: it may have applied; repeat with --request-id {id} to find out");
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().after_help(exit::help()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("holdfast: cannot start: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let options = ClientOptions {
        deadline: Duration::from_millis(cli.deadline_ms),
        ..ClientOptions::default()
    };
    let json = cli.json;
    let outcome = runtime.block_on(async move {
        let client = Client::connect(&cli.nodes, options).await.map_err(Ok)?;
        if matches!(cli.command, Command::Watch { .. }) {
            watch(client, cli.command, json).await.map_err(Ok)?;
            return Ok(boxed(Ok(output::Nothing)));
        }
        run(client, cli.command).await.map_err(Err)
    });
    match outcome {
        Ok(Ok(printable)) => {
            if json {
                println!("{}", printable.json());
            } else {
                print!("{}", printable.table());
            }
            ExitCode::from(exit::OK)
        }
        Ok(Err(e)) | Err(Ok(e)) => {
            report_error(&e, json);
            ExitCode::from(exit::code(&e))
        }
        Err(Err(usage)) => {
            eprintln!("holdfast: {usage}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_and_without_location() {
        assert_eq!(
            parse_line("SKU-1:3@berlin"),
            Ok(Line {
                sku: "SKU-1".into(),
                quantity: 3,
                location: Some("berlin".into())
            })
        );
        assert_eq!(
            parse_line("a:b:2").map(|l| (l.sku, l.quantity)),
            Ok(("a:b".into(), 2))
        );
        assert!(parse_line("SKU-1").is_err());
        assert!(parse_line("SKU-1:x").is_err());
        assert_eq!(parse_row("S@l"), RowKey::at("S", "l"));
        assert_eq!(parse_row("S"), RowKey::sku("S"));
    }

    #[test]
    fn watch_and_list_arguments_parse() {
        assert_eq!(parse_cursor("3:120:0"), Ok((3, 120, 0)));
        assert!(parse_cursor("3:120").is_err());
        assert!(parse_cursor("3:120:0:1").is_err());
        assert!(parse_cursor("a:1:2").is_err());
        assert_eq!(parse_kind("held"), Ok(EventKind::Held));
        assert_eq!(parse_kind("Row_Policy_Set"), Ok(EventKind::RowPolicySet));
        assert!(parse_kind("unspecified").is_err());
        assert!(parse_kind("sold").is_err());
        assert_eq!(parse_state("expired"), Ok(ReservationState::Expired));
        assert!(parse_state("gone").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "holdfast",
            "--nodes",
            "a:1,b:2",
            "adjust",
            "--sku",
            "S",
            "--location",
            "l",
            "--delta",
            "-5",
        ])
        .expect("parses");
        assert_eq!(cli.nodes, ["a:1", "b:2"]);
        assert!(matches!(cli.command, Command::Adjust { delta: -5, .. }));
    }
}
