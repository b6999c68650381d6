//! The node's TOML configuration file.
//!
//! Operators keep a cluster's membership and tuning in one file per node
//! and start every node the same way (`holdfast-server --config FILE`).
//! Every key is optional: a key the file leaves out keeps its built-in
//! default, and a command-line flag or `HOLDFAST_*` variable given at start
//! overrides the file (flags > environment > file > defaults). Unknown keys
//! are refused, so a misspelt setting never silently keeps its default.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7401"
//! data_dir = "/var/lib/holdfast"
//! shards = 8
//! cluster_id = 1
//! metrics_listen = "127.0.0.1:9401"
//! log_format = "json"
//!
//! [peers]
//! 1 = "127.0.0.1:7401"
//! 2 = "127.0.0.1:7402"
//! 3 = "127.0.0.1:7403"
//!
//! [raft]
//! tick_ms = 30
//! election_ticks = 10
//! heartbeat_ticks = 3
//! max_size_per_msg = 1048576
//! max_inflight_msgs = 256
//! max_uncommitted_size = 33554432
//! expire_tick_ms = 100
//! snapshot_every_entries = 50000
//! snapshot_log_margin_entries = 5000
//! event_retention_entries = 100000
//!
//! [ledger]
//! dedup_window_ms = 3600000
//! dedup_entries_max = 1000000
//! scarce_units = 100
//! ```

use crate::config::{NodeConfig, SHARDS_DEFAULT};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Listen address when neither flag, variable nor file sets one.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7400";
/// Data directory when neither flag, variable nor file sets one.
pub const DATA_DIR_DEFAULT: &str = "./holdfast-data";
/// Node id and cluster id when nothing sets them.
pub const ID_DEFAULT: u64 = 1;

/// How log lines are written to stderr.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (time, level, target, fields).
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What a node serves and how, once flags, environment, file and defaults
/// are merged and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node's configuration (identity, membership, storage, tuning).
    pub node: NodeConfig,
    /// gRPC listen address (clients and peers).
    pub listen: SocketAddr,
    /// Prometheus HTTP listen address; `None`: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format.
    pub log_format: LogFormat,
}

/// What the command line (flags, or the `HOLDFAST_*` variables clap reads
/// for them) set; `None`: not given there.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--id`.
    pub id: Option<u64>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--peers`, already parsed.
    pub peers: Option<BTreeMap<u64, String>>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--shards`.
    pub shards: Option<u32>,
    /// `--cluster-id`.
    pub cluster_id: Option<u64>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

/// The file's address under `key`, parsed; `None` when the file has none.
fn file_addr(key: &str, value: &Option<String>) -> Result<Option<SocketAddr>, String> {
    value
        .as_deref()
        .map(|v| {
            v.parse()
                .map_err(|_| format!("config file: {key} {v:?} is not host:port"))
        })
        .transpose()
}

/// The node's settings: `overrides` over `file` over the defaults, then
/// validated.
pub fn resolve(overrides: &Overrides, file: &FileConfig) -> Result<Settings, String> {
    let listen = match overrides.listen {
        Some(l) => l,
        None => file_addr("listen", &file.listen)?
            .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("valid default")),
    };
    let metrics_listen = match overrides.metrics_listen {
        Some(l) => Some(l),
        None => file_addr("metrics_listen", &file.metrics_listen)?,
    };
    if metrics_listen == Some(listen) {
        return Err(format!(
            "metrics_listen {listen} is the gRPC listen address; give it its own port"
        ));
    }
    let id = overrides.id.or(file.id).unwrap_or(ID_DEFAULT);
    let data_dir = overrides
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT));
    let mut config = NodeConfig::single(id, listen.to_string(), data_dir);
    file.apply_tuning(&mut config);
    if let Some(peers) = &overrides.peers {
        config.peers = peers.clone();
    } else if let Some(peers) = file.peer_map()? {
        config.peers = peers;
    }
    config.shards = overrides.shards.or(file.shards).unwrap_or(SHARDS_DEFAULT);
    config.cluster_id = overrides
        .cluster_id
        .or(file.cluster_id)
        .unwrap_or(ID_DEFAULT);
    config.validate()?;
    Ok(Settings {
        node: config,
        listen,
        metrics_listen,
        log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
    })
}

/// The file's contents: every setting optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// This node's id.
    pub id: Option<u64>,
    /// gRPC listen address (`host:port`).
    pub listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Number of shards.
    pub shards: Option<u32>,
    /// Cluster id.
    pub cluster_id: Option<u64>,
    /// Every member: node id (as a TOML key) → `host:port`.
    pub peers: Option<BTreeMap<String, String>>,
    /// Prometheus metrics HTTP listen address (`host:port`); absent: off.
    pub metrics_listen: Option<String>,
    /// Log line format: `"pretty"` or `"json"`.
    pub log_format: Option<LogFormat>,
    /// Raft tuning.
    #[serde(default)]
    pub raft: RaftSection,
    /// Ledger settings (equal on every node).
    #[serde(default)]
    pub ledger: LedgerSection,
}

/// `[raft]`: see `crate::config` for each default and why.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    /// Driver tick, ms.
    pub tick_ms: Option<u64>,
    /// Election timeout, ticks.
    pub election_ticks: Option<usize>,
    /// Heartbeat interval, ticks.
    pub heartbeat_ticks: Option<usize>,
    /// Bytes of entries per append message.
    pub max_size_per_msg: Option<u64>,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: Option<usize>,
    /// Uncommitted bytes a leader accepts.
    pub max_uncommitted_size: Option<u64>,
    /// How often leaders propose expiry, ms.
    pub expire_tick_ms: Option<u64>,
    /// Applied entries between snapshots.
    pub snapshot_every_entries: Option<u64>,
    /// Log entries kept behind a snapshot when compacting.
    pub snapshot_log_margin_entries: Option<u64>,
    /// Applied entries whose change events are kept (0: none).
    pub event_retention_entries: Option<u64>,
}

/// `[ledger]`: the engine's settings.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// Minimum log time a request id is remembered, ms.
    pub dedup_window_ms: Option<u64>,
    /// Request ids remembered at most per shard.
    pub dedup_entries_max: Option<usize>,
    /// Rows with at most this many available units go on the stock board.
    pub scarce_units: Option<i64>,
}

impl FileConfig {
    /// Reads and parses `path`; the error names the file and, for a syntax
    /// or type error, the line and key.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        FileConfig::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The peers with numeric ids; a key that is not a node id is an error.
    pub fn peer_map(&self) -> Result<Option<BTreeMap<u64, String>>, String> {
        let Some(peers) = &self.peers else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (id, addr) in peers {
            let id: u64 = id
                .parse()
                .map_err(|_| format!("[peers] key {id:?} is not a node id"))?;
            out.insert(id, addr.clone());
        }
        Ok(Some(out))
    }

    /// Writes the file's tuning (raft and ledger sections) over `config`.
    /// Identity and membership are merged by the caller, which knows which
    /// of them the command line overrides.
    pub fn apply_tuning(&self, config: &mut NodeConfig) {
        let r = &self.raft;
        let set = |slot: &mut u64, v: Option<u64>| *slot = v.unwrap_or(*slot);
        let set_usize = |slot: &mut usize, v: Option<usize>| *slot = v.unwrap_or(*slot);
        set(&mut config.raft.tick_ms, r.tick_ms);
        set_usize(&mut config.raft.election_ticks, r.election_ticks);
        set_usize(&mut config.raft.heartbeat_ticks, r.heartbeat_ticks);
        set(&mut config.raft.max_size_per_msg, r.max_size_per_msg);
        set_usize(&mut config.raft.max_inflight_msgs, r.max_inflight_msgs);
        set(
            &mut config.raft.max_uncommitted_size,
            r.max_uncommitted_size,
        );
        set(&mut config.expire_tick_ms, r.expire_tick_ms);
        set(&mut config.snapshot_every_entries, r.snapshot_every_entries);
        set(
            &mut config.snapshot_log_margin_entries,
            r.snapshot_log_margin_entries,
        );
        set(
            &mut config.event_retention_entries,
            r.event_retention_entries,
        );
        let l = &self.ledger;
        set(&mut config.engine.dedup.window_ms, l.dedup_window_ms);
        set_usize(&mut config.engine.dedup.entries_max, l.dedup_entries_max);
        if let Some(units) = l.scarce_units {
            config.engine.scarce_units = units;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_applies() {
        let file = FileConfig::parse(
            r#"
            id = 2
            listen = "127.0.0.1:7402"
            data_dir = "/tmp/n2"
            shards = 4
            cluster_id = 9
            [peers]
            1 = "127.0.0.1:7401"
            2 = "127.0.0.1:7402"
            3 = "127.0.0.1:7403"
            [raft]
            tick_ms = 50
            election_ticks = 12
            snapshot_every_entries = 1000
            [ledger]
            dedup_entries_max = 500
            scarce_units = 7
            "#,
        )
        .expect("valid file");
        assert_eq!(file.id, Some(2));
        assert_eq!(file.shards, Some(4));
        let peers = file.peer_map().expect("ids").expect("peers");
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&3], "127.0.0.1:7403");
        let mut config = NodeConfig::single(2, "x".into(), "/tmp".into());
        file.apply_tuning(&mut config);
        assert_eq!(config.raft.tick_ms, 50);
        assert_eq!(config.raft.election_ticks, 12);
        assert_eq!(
            config.raft.heartbeat_ticks,
            crate::config::HEARTBEAT_TICKS_DEFAULT
        );
        assert_eq!(config.snapshot_every_entries, 1000);
        assert_eq!(config.engine.dedup.entries_max, 500);
        assert_eq!(config.engine.scarce_units, 7);
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        let file = FileConfig::parse("").expect("empty is valid");
        assert_eq!(file, FileConfig::default());
        let mut config = NodeConfig::single(1, "x".into(), "/tmp".into());
        let before = format!("{config:?}");
        file.apply_tuning(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }

    #[test]
    fn a_misspelt_key_is_refused_by_name() {
        let e = FileConfig::parse("[raft]\ntick_msec = 10\n").expect_err("unknown key");
        assert!(e.contains("tick_msec"), "{e}");
        let e = FileConfig::parse("shard = 3\n").expect_err("unknown key");
        assert!(e.contains("shard"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_refused_with_its_key() {
        let e = FileConfig::parse("shards = \"eight\"\n").expect_err("wrong type");
        assert!(e.contains("shards"), "{e}");
        let e = FileConfig::parse("shards = -1\n").expect_err("negative");
        assert!(e.contains("shards"), "{e}");
    }

    #[test]
    fn a_peer_key_must_be_a_node_id() {
        let file = FileConfig::parse("[peers]\none = \"127.0.0.1:1\"\n").expect("parses");
        let e = file.peer_map().expect_err("not an id");
        assert!(e.contains("one"), "{e}");
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let file = FileConfig::parse(
            "id = 2\nlisten = \"127.0.0.1:7402\"\nshards = 4\n[peers]\n1 = \"a:1\"\n2 = \"b:2\"\n3 = \"c:3\"\n",
        )
        .expect("valid");
        let settings = resolve(&Overrides::default(), &file).expect("valid");
        let (config, listen) = (settings.node, settings.listen);
        assert_eq!((config.id, config.shards), (2, 4));
        assert_eq!(listen.to_string(), "127.0.0.1:7402");
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.cluster_id, ID_DEFAULT);
        assert_eq!(config.data_dir, PathBuf::from(DATA_DIR_DEFAULT));
        let flags = Overrides {
            id: Some(3),
            listen: Some("127.0.0.1:9999".parse().expect("addr")),
            shards: Some(16),
            cluster_id: Some(5),
            ..Overrides::default()
        };
        let settings = resolve(&flags, &file).expect("valid");
        let (config, listen) = (settings.node, settings.listen);
        assert_eq!((config.id, config.shards, config.cluster_id), (3, 16, 5));
        assert_eq!(listen.to_string(), "127.0.0.1:9999");
        assert_eq!(config.peers[&3], "c:3", "peers still from the file");
    }

    #[test]
    fn nothing_given_is_a_one_node_cluster_on_defaults() {
        let settings = resolve(&Overrides::default(), &FileConfig::default()).expect("ok");
        assert_eq!(settings.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(settings.node.peers.len(), 1);
        assert_eq!(settings.node.peers[&ID_DEFAULT], LISTEN_DEFAULT);
        assert_eq!(settings.metrics_listen, None, "metrics are off by default");
        assert_eq!(settings.log_format, LogFormat::Pretty);
    }

    #[test]
    fn metrics_listen_and_log_format_come_from_the_file_unless_flags_say_otherwise() {
        let file =
            FileConfig::parse("metrics_listen = \"127.0.0.1:9401\"\nlog_format = \"json\"\n")
                .expect("valid");
        assert_eq!(file.log_format, Some(LogFormat::Json));
        let settings = resolve(&Overrides::default(), &file).expect("valid");
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9401".parse().expect("addr"))
        );
        assert_eq!(settings.log_format, LogFormat::Json);
        let flags = Overrides {
            metrics_listen: Some("127.0.0.1:9999".parse().expect("addr")),
            log_format: Some(LogFormat::Pretty),
            ..Overrides::default()
        };
        let settings = resolve(&flags, &file).expect("valid");
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9999".parse().expect("addr"))
        );
        assert_eq!(settings.log_format, LogFormat::Pretty);
    }

    #[test]
    fn a_bad_metrics_listen_or_log_format_is_refused_by_name() {
        let file = FileConfig::parse("metrics_listen = \"nine\"\n").expect("a string parses");
        let e = resolve(&Overrides::default(), &file).expect_err("not host:port");
        assert!(e.contains("metrics_listen") && e.contains("nine"), "{e}");
        let e = FileConfig::parse("log_format = \"xml\"\n").expect_err("unknown format");
        assert!(e.contains("log_format") || e.contains("xml"), "{e}");
    }

    #[test]
    fn metrics_on_the_grpc_port_is_refused() {
        let flags = Overrides {
            metrics_listen: Some(LISTEN_DEFAULT.parse().expect("addr")),
            ..Overrides::default()
        };
        let e = resolve(&flags, &FileConfig::default()).expect_err("same port");
        assert!(e.contains("metrics_listen"), "{e}");
    }

    #[test]
    fn a_file_whose_members_miss_this_node_is_refused() {
        let file = FileConfig::parse("id = 4\n[peers]\n1 = \"a:1\"\n2 = \"b:2\"\n3 = \"c:3\"\n")
            .expect("parses");
        let e = resolve(&Overrides::default(), &file).expect_err("4 is not a member");
        assert!(e.contains('4'), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = FileConfig::load(Path::new("/nonexistent/holdfast.toml")).expect_err("missing");
        assert!(e.contains("/nonexistent/holdfast.toml"), "{e}");
    }
}
