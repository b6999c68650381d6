//! Redis as a peer: the atomic Lua check-and-decrement a team would write
//! on Redis, with the append-only file on (`appendfsync always`: fsync
//! before each reply batch, as durable as one disk; `everysec`: up to a
//! second of acknowledged writes lost on a crash).
//!
//! One `redis-server` per fsync setting (installed with apt when missing),
//! each on a free 127.0.0.1 port with its data in a temp dir. A row is a
//! hash `r:<sku>:<location>` with `on_hand` and `held`; a reservation is a
//! hash `res:<id>` (state, row keys, quantities) and an entry of the sorted
//! set `exp` by expiry. Each operation is one script call, so it is atomic
//! and one round trip. The resolve and sweep scripts touch row keys they
//! read from the reservation (fine on one server, not on Redis Cluster).
//!
//! Unit of work of [`RedisTarget`]: one script call on one of
//! [`CONNECTIONS`] multiplexed connections (caller `i` uses `i mod
//! CONNECTIONS`).

use super::{find_or_install, on_path, wait_for_port, PeerProcess};
use crate::bench::closed_loop::CALL_TIMEOUT;
use crate::bench::scenario::{
    Catalogue, Order, FLASH_SKU, FLASH_UNITS, HOT_LOCATION, HOT_SKU, LOCATIONS, UNLIMITED_UNITS,
};
use crate::bench::target::Reply;
use crate::local::free_port;
use redis::aio::MultiplexedConnection;
use redis::Script;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Multiplexed connections per system: enough that one connection's
/// reader task is not the bottleneck.
pub const CONNECTIONS: usize = 8;
/// Rows written per pipeline while stocking.
const STOCK_PIPELINE_ROWS: u32 = 5_000;
/// Reservations one sweep expires at most.
pub const SWEEP_ROWS_MAX: u32 = 100;

/// Shared by the scripts that resolve a reservation.
const RESOLVE_FN: &str = r#"
local function resolve(id, to)
  local key = 'res:' .. id
  local r = redis.call('HMGET', key, 'state', 'rows', 'qtys')
  if r[1] ~= 'pending' then return 0 end
  local qs = {}
  for q in string.gmatch(r[3], '[^,]+') do qs[#qs + 1] = tonumber(q) end
  local i = 0
  for row in string.gmatch(r[2], '[^,]+') do
    i = i + 1
    redis.call('HINCRBY', row, 'held', -qs[i])
    if to == 'confirmed' then redis.call('HINCRBY', row, 'on_hand', -qs[i]) end
  end
  redis.call('HSET', key, 'state', to)
  redis.call('ZREM', 'exp', id)
  return 1
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// KEYS: the rows; ARGV: their quantities, then the id and the TTL in ms.
const RESERVE_LUA: &str = r#"
local n = #KEYS
for i = 1, n do
  local row = redis.call('HMGET', KEYS[i], 'on_hand', 'held')
  if (tonumber(row[1]) or 0) - (tonumber(row[2]) or 0) < tonumber(ARGV[i]) then
    return 0
  end
end
local qs = {}
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'held', ARGV[i])
  qs[i] = ARGV[i]
end
local id = ARGV[n + 1]
redis.call('HSET', 'res:' .. id, 'state', 'pending',
           'rows', table.concat(KEYS, ','), 'qtys', table.concat(qs, ','))
redis.call('ZADD', 'exp', now_ms() + tonumber(ARGV[n + 2]), id)
return 1
"#;

/// ARGV: the id and `confirmed` or `released`.
const RESOLVE_LUA: &str = "return resolve(ARGV[1], ARGV[2])";

/// ARGV: the most reservations to expire.
const SWEEP_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', 'exp', '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do resolve(id, 'expired') end
return #due
"#;

fn row_key(sku: &str, location: &str) -> String {
    format!("r:{sku}:{location}")
}

/// A running `redis-server` and its data directory.
pub struct Redis {
    /// Where it listens on 127.0.0.1.
    pub port: u16,
    process: Option<PeerProcess>,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Stop the server before the temp dir goes.
        self.process.take();
    }
}

impl Redis {
    /// Installs (if allowed and needed) and starts a server with the
    /// append-only file on and `appendfsync` = `fsync` (`always` or
    /// `everysec`); no RDB snapshots.
    pub fn start(fsync: &str, install: bool, log_dir: &Path) -> Result<Redis, String> {
        let binary = find_or_install(
            &|| on_path("redis-server"),
            "redis-server",
            install,
            log_dir,
        )?;
        let dir = tempfile::Builder::new()
            .prefix("holdfast-bench-redis")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--save", "", "--protected-mode", "yes"])
            .args(["--appendonly", "yes", "--appendfsync", fsync])
            .arg("--dir")
            .arg(dir.path());
        // SIGTERM: Redis's clean shutdown.
        let mut process = PeerProcess::spawn(
            &mut command,
            &log_dir.join(format!("redis-{fsync}.log")),
            libc::SIGTERM,
        )?;
        wait_for_port(port, &mut process, "redis-server")?;
        Ok(Redis {
            port,
            process: Some(process),
            _dir: dir,
        })
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        // The crate's default answer timeout (500 ms) would turn a slow
        // answer under load into an error; the loops bound calls themselves.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(CALL_TIMEOUT));
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .map_err(|e| e.to_string())?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())
    }

    /// Stocks the catalogue, the hot row and the flash row.
    pub async fn stock(&self, catalogue: Catalogue) -> Result<(), String> {
        let mut conn = self.connect().await?;
        let rows = (0..catalogue.skus).flat_map(|i| {
            LOCATIONS
                .iter()
                .map(move |l| (row_key(&Catalogue::sku(i), l), UNLIMITED_UNITS))
        });
        let extra = [
            (row_key(HOT_SKU, HOT_LOCATION), UNLIMITED_UNITS),
            (row_key(FLASH_SKU, HOT_LOCATION), FLASH_UNITS),
        ];
        let mut pipe = redis::pipe();
        let mut queued = 0;
        for (key, units) in rows.chain(extra) {
            pipe.hset_multiple(&key, &[("on_hand", units), ("held", 0)])
                .ignore();
            queued += 1;
            if queued == STOCK_PIPELINE_ROWS {
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| format!("stock: {e}"))?;
                pipe = redis::pipe();
                queued = 0;
            }
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("stock: {e}"))
    }

    /// [`CONNECTIONS`] connections with the scripts loaded.
    pub async fn target(&self) -> Result<RedisTarget, String> {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            conns.push(self.connect().await?);
        }
        let scripts = Scripts {
            reserve: Script::new(&format!("{RESOLVE_FN}{RESERVE_LUA}")),
            resolve: Script::new(&format!("{RESOLVE_FN}{RESOLVE_LUA}")),
            sweep: Script::new(&format!("{RESOLVE_FN}{SWEEP_LUA}")),
        };
        for script in [&scripts.reserve, &scripts.resolve, &scripts.sweep] {
            script
                .prepare_invoke()
                .load_async(&mut conns[0])
                .await
                .map_err(|e| format!("script: {e}"))?;
        }
        Ok(RedisTarget {
            conns: Arc::new(conns),
            scripts: Arc::new(scripts),
        })
    }
}

struct Scripts {
    reserve: Script,
    resolve: Script,
    sweep: Script,
}

/// Calls into one Redis system.
#[derive(Clone)]
pub struct RedisTarget {
    conns: Arc<Vec<MultiplexedConnection>>,
    scripts: Arc<Scripts>,
}

impl RedisTarget {
    fn conn(&self, caller: usize) -> MultiplexedConnection {
        self.conns[caller % self.conns.len()].clone()
    }

    /// Holds `order` under `id`.
    pub async fn reserve(&self, caller: usize, id: &str, order: &Order, ttl_ms: u64) -> Reply {
        let mut invocation = self.scripts.reserve.prepare_invoke();
        for line in order {
            invocation.key(row_key(&line.sku, line.location));
        }
        for line in order {
            invocation.arg(line.quantity);
        }
        invocation.arg(id).arg(ttl_ms);
        match invocation.invoke_async::<i64>(&mut self.conn(caller)).await {
            Ok(1) => Reply::Held(id.to_string()),
            Ok(_) => Reply::Refused { prefilter: false },
            Err(e) => Reply::Error(e.to_string()),
        }
    }

    /// Resolves reservation `id` `to` `confirmed` or `released`.
    pub async fn resolve(&self, caller: usize, id: &str, to: &str) -> Reply {
        let mut invocation = self.scripts.resolve.prepare_invoke();
        invocation.arg(id).arg(to);
        match invocation.invoke_async::<i64>(&mut self.conn(caller)).await {
            Ok(1) => Reply::Done,
            Ok(_) => Reply::Refused { prefilter: false },
            Err(e) => Reply::Error(e.to_string()),
        }
    }

    /// Expires up to [`SWEEP_ROWS_MAX`] due reservations; how many.
    pub async fn sweep(&self) -> Result<u64, String> {
        let mut invocation = self.scripts.sweep.prepare_invoke();
        invocation.arg(SWEEP_ROWS_MAX);
        invocation
            .invoke_async::<u64>(&mut self.conn(0))
            .await
            .map_err(|e| e.to_string())
    }
}
