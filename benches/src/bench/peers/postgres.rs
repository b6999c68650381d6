//! PostgreSQL as a peer: the design's conditional `UPDATE … WHERE on_hand -
//! held >= qty` plus the reservation insert, in one transaction.
//!
//! The server is Debian's (`/usr/lib/postgresql/<v>/bin`, installed with
//! apt when missing), initialised in a temp dir and run as the `postgres`
//! user when the harness runs as root (PostgreSQL refuses root), on a free
//! 127.0.0.1 port, fsync on. Each operation is one call of a PL/pgSQL
//! function, so it is one statement, one transaction and one round trip,
//! the cheapest way a team would write it: `hf_reserve` runs the
//! conditional UPDATE for each line (sorted, so row locks are always taken
//! in one order) and inserts the reservation, raising `HF001` (out of
//! stock) to roll everything back when a line is short. Two systems share
//! the server: `postgres` (`synchronous_commit = on`) and `postgres-async`
//! (`off`, set per connection).
//!
//! Unit of work of [`PgTarget`]: one call on one of [`CONNECTIONS`]
//! connections; caller `i` uses connection `i mod CONNECTIONS`, and
//! tokio-postgres pipelines the calls that share a connection.

use super::{find_or_install, run_bounded, wait_for_port, PeerProcess};
use crate::bench::scenario::{
    Catalogue, Order, FLASH_SKU, FLASH_UNITS, HOT_LOCATION, HOT_SKU, LOCATIONS, UNLIMITED_UNITS,
};
use crate::bench::target::Reply;
use crate::local::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, NoTls, Statement};

/// Connections per system: a pool as a service would size it. More would
/// only add backends competing for the same two cores and row locks.
pub const CONNECTIONS: usize = 64;
/// How long `initdb` may take.
const INITDB_DEADLINE: Duration = Duration::from_secs(120);
/// The SQLSTATE `hf_reserve` raises for a short line.
const OUT_OF_STOCK_SQLSTATE: &str = "HF001";
/// Reservations one sweep expires at most (one transaction each sweep).
pub const SWEEP_ROWS_MAX: i32 = 100;

/// The schema and functions, created once per server.
const SCHEMA: &str = r#"
CREATE TABLE stock (
  sku text NOT NULL, location text NOT NULL,
  on_hand bigint NOT NULL, held bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (sku, location));
CREATE TABLE reservations (
  id text PRIMARY KEY, skus text[] NOT NULL, locations text[] NOT NULL,
  quantities bigint[] NOT NULL, state smallint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL);
CREATE INDEX reservations_due ON reservations (expires_at) WHERE state = 0;

CREATE FUNCTION hf_reserve(p_id text, p_skus text[], p_locations text[],
                           p_quantities bigint[], p_ttl_ms bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. array_length(p_skus, 1) LOOP
    UPDATE stock SET held = held + p_quantities[i]
     WHERE sku = p_skus[i] AND location = p_locations[i]
       AND on_hand - held >= p_quantities[i];
    IF NOT FOUND THEN
      RAISE EXCEPTION 'out of stock: %', p_skus[i] USING ERRCODE = 'HF001';
    END IF;
  END LOOP;
  INSERT INTO reservations (id, skus, locations, quantities, expires_at)
  VALUES (p_id, p_skus, p_locations, p_quantities,
          now() + p_ttl_ms * interval '1 millisecond');
END $$;

-- Resolves one pending reservation: to_state 1 confirmed (the units leave
-- on_hand), 2 released, 3 expired. False if it was not pending.
CREATE FUNCTION hf_resolve(p_id text, p_to smallint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE r reservations%ROWTYPE;
BEGIN
  UPDATE reservations SET state = p_to WHERE id = p_id AND state = 0
  RETURNING * INTO r;
  IF NOT FOUND THEN RETURN false; END IF;
  FOR i IN 1 .. array_length(r.skus, 1) LOOP
    UPDATE stock SET held = held - r.quantities[i],
                     on_hand = on_hand - CASE WHEN p_to = 1 THEN r.quantities[i] ELSE 0 END
     WHERE sku = r.skus[i] AND location = r.locations[i];
  END LOOP;
  RETURN true;
END $$;

CREATE FUNCTION hf_expire_due(p_limit int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE n int := 0; due text;
BEGIN
  FOR due IN SELECT id FROM reservations WHERE state = 0 AND expires_at <= now()
             ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
    IF hf_resolve(due, 3::smallint) THEN n := n + 1; END IF;
  END LOOP;
  RETURN n;
END $$;
"#;

/// A running PostgreSQL server and its data directory.
pub struct Postgres {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    process: Option<PeerProcess>,
    /// Removed after the server has stopped.
    _dir: tempfile::TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stop the server before the temp dir goes.
        self.process.take();
    }
}

/// Newest `/usr/lib/postgresql/<v>/bin` with a `postgres` binary.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The uid and gid to run the server as: the `postgres` user when we are
/// root, else ourselves.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: getpwnam(3) with a valid C string; the harness reads the
    // record at once, from the main thread, before any other lookup.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root and there is no postgres user to run the server as".into());
    }
    // SAFETY: `pw` is non-null and points to the static record just read.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>, dir: &Path) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command.current_dir(dir).env_remove("PGDATA");
}

impl Postgres {
    /// Installs (if allowed and needed), initialises and starts a server,
    /// and creates the schema. Logs go to `log_dir`.
    pub async fn start(install: bool, log_dir: &Path) -> Result<Postgres, String> {
        let bin = find_or_install(&bin_dir, "postgresql", install, log_dir)?;
        let user = server_user()?;
        let dir = tempfile::Builder::new()
            .prefix("holdfast-bench-pg")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        prepare_dirs(dir.path(), &data, user)?;
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "bench",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        as_user(&mut initdb, user, dir.path());
        let status = run_bounded(
            &mut initdb,
            INITDB_DEADLINE,
            Some(&log_dir.join("postgres-initdb.log")),
        )?;
        if !status.success() {
            return Err(format!(
                "initdb failed ({status}); see {}",
                log_dir.join("postgres-initdb.log").display()
            ));
        }
        let port = free_port();
        let mut command = Command::new(bin.join("postgres"));
        command.arg("-D").arg(&data).args(["-p", &port.to_string()]);
        for setting in [
            "listen_addresses=127.0.0.1".to_string(),
            format!("unix_socket_directories={}", data.display()),
            "fsync=on".into(),
            "synchronous_commit=on".into(),
            format!("max_connections={}", 2 * CONNECTIONS + 10),
            "shared_buffers=256MB".into(),
        ] {
            command.args(["-c", &setting]);
        }
        as_user(&mut command, user, dir.path());
        // SIGINT: PostgreSQL's fast shutdown.
        let mut process =
            PeerProcess::spawn(&mut command, &log_dir.join("postgres.log"), libc::SIGINT)?;
        wait_for_port(port, &mut process, "postgres")?;
        let pg = Postgres {
            port,
            process: Some(process),
            _dir: dir,
        };
        let (client, _) = pg.connect(true).await?;
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| format!("schema: {e}"))?;
        Ok(pg)
    }

    async fn connect(
        &self,
        synchronous: bool,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), String> {
        let config = format!(
            "host=127.0.0.1 port={} user=bench dbname=postgres connect_timeout=10",
            self.port
        );
        let mut last = String::new();
        // The server listens a moment before it accepts logins.
        for _ in 0..100 {
            match tokio_postgres::connect(&config, NoTls).await {
                Ok((client, connection)) => {
                    let task = tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    if !synchronous {
                        client
                            .batch_execute("SET synchronous_commit = off")
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    return Ok((client, task));
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("cannot connect to postgres: {last}"))
    }

    /// Stocks the catalogue (every SKU at every location), the hot row and
    /// the flash row.
    pub async fn stock(&self, catalogue: Catalogue) -> Result<(), String> {
        let (client, _) = self.connect(true).await?;
        let locations: Vec<&str> = LOCATIONS.to_vec();
        client
            .execute(
                "INSERT INTO stock (sku, location, on_hand)
                 SELECT 'sku-' || lpad(i::text, 6, '0'), l, $1
                 FROM generate_series(0::bigint, $2::bigint - 1) AS i, unnest($3::text[]) AS l",
                &[&UNLIMITED_UNITS, &i64::from(catalogue.skus), &locations],
            )
            .await
            .map_err(|e| format!("stock: {e}"))?;
        client
            .execute(
                "INSERT INTO stock (sku, location, on_hand) VALUES ($1, $2, $3), ($4, $2, $5)",
                &[
                    &HOT_SKU,
                    &HOT_LOCATION,
                    &UNLIMITED_UNITS,
                    &FLASH_SKU,
                    &FLASH_UNITS,
                ],
            )
            .await
            .map_err(|e| format!("stock: {e}"))?;
        Ok(())
    }

    /// [`CONNECTIONS`] connections, `synchronous_commit` on or off.
    pub async fn target(&self, synchronous: bool) -> Result<PgTarget, String> {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (client, _) = self.connect(synchronous).await?;
            let prepare = |sql: &'static str| client.prepare(sql);
            let reserve = prepare("SELECT hf_reserve($1, $2, $3, $4, $5)")
                .await
                .map_err(|e| e.to_string())?;
            let resolve = prepare("SELECT hf_resolve($1, $2)")
                .await
                .map_err(|e| e.to_string())?;
            let sweep = prepare("SELECT hf_expire_due($1)")
                .await
                .map_err(|e| e.to_string())?;
            let reset =
                prepare("UPDATE stock SET on_hand = $3, held = 0 WHERE sku = $1 AND location = $2")
                    .await
                    .map_err(|e| e.to_string())?;
            conns.push(PgConn {
                client,
                reserve,
                resolve,
                sweep,
                reset,
            });
        }
        Ok(PgTarget {
            conns: Arc::new(conns),
        })
    }
}

/// Makes the temp dir traversable and the data dir the server user's own.
fn prepare_dirs(root: &Path, data: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::create_dir(data).map_err(|e| e.to_string())?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(data, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct PgConn {
    client: Client,
    reserve: Statement,
    resolve: Statement,
    sweep: Statement,
    reset: Statement,
}

/// Calls into one PostgreSQL system (one `synchronous_commit` setting).
#[derive(Clone)]
pub struct PgTarget {
    conns: Arc<Vec<PgConn>>,
}

impl PgTarget {
    fn conn(&self, caller: usize) -> &PgConn {
        &self.conns[caller % self.conns.len()]
    }

    /// Holds `order` under `id`.
    pub async fn reserve(&self, caller: usize, id: &str, order: &Order, ttl_ms: u64) -> Reply {
        let c = self.conn(caller);
        let skus: Vec<&str> = order.iter().map(|l| l.sku.as_str()).collect();
        let locations: Vec<&str> = order.iter().map(|l| l.location).collect();
        let quantities: Vec<i64> = order.iter().map(|l| l.quantity).collect();
        let ttl_ms = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        match c
            .client
            .execute(&c.reserve, &[&id, &skus, &locations, &quantities, &ttl_ms])
            .await
        {
            Ok(_) => Reply::Held(id.to_string()),
            Err(e) if sqlstate(&e) == Some(OUT_OF_STOCK_SQLSTATE) => {
                Reply::Refused { prefilter: false }
            }
            Err(e) => Reply::Error(describe(&e)),
        }
    }

    /// Confirms (`to = 1`) or releases (`to = 2`) reservation `id`.
    pub async fn resolve(&self, caller: usize, id: &str, to: i16) -> Reply {
        let c = self.conn(caller);
        match c.client.query_one(&c.resolve, &[&id, &to]).await {
            Ok(row) => match row.try_get::<_, bool>(0) {
                Ok(true) => Reply::Done,
                Ok(false) => Reply::Refused { prefilter: false },
                Err(e) => Reply::Error(describe(&e)),
            },
            Err(e) => Reply::Error(describe(&e)),
        }
    }

    /// Expires up to [`SWEEP_ROWS_MAX`] due reservations; how many.
    pub async fn sweep(&self) -> Result<u64, String> {
        let c = self.conn(0);
        let row = c
            .client
            .query_one(&c.sweep, &[&SWEEP_ROWS_MAX])
            .await
            .map_err(|e| e.to_string())?;
        row.try_get::<_, i32>(0)
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| e.to_string())
    }

    /// Puts the flash row back to [`FLASH_UNITS`] units, none held.
    pub async fn reset_flash(&self) -> Result<(), String> {
        let c = self.conn(0);
        c.client
            .execute(&c.reset, &[&FLASH_SKU, &HOT_LOCATION, &FLASH_UNITS])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The server's message where there is one ("db error" alone says little).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}
