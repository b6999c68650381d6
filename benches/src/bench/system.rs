//! The systems a report can compare, by name.

/// One system of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SystemId {
    /// A 1-node Holdfast cluster (real process, fsync on).
    Holdfast1,
    /// A 3-node Holdfast cluster.
    Holdfast3,
    /// PostgreSQL, `synchronous_commit = on` (fsync on).
    Postgres,
    /// PostgreSQL, `synchronous_commit = off`.
    PostgresAsync,
    /// Redis + Lua, `appendfsync always`.
    RedisAlways,
    /// Redis + Lua, `appendfsync everysec`.
    RedisEverysec,
    /// The no-op gRPC floor.
    Floor,
}

impl SystemId {
    /// Every system, in the order each level runs them.
    pub const ALL: [SystemId; 7] = [
        SystemId::Floor,
        SystemId::Holdfast1,
        SystemId::Holdfast3,
        SystemId::Postgres,
        SystemId::PostgresAsync,
        SystemId::RedisAlways,
        SystemId::RedisEverysec,
    ];

    /// Name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            SystemId::Holdfast1 => "holdfast-1n",
            SystemId::Holdfast3 => "holdfast-3n",
            SystemId::Postgres => "postgres",
            SystemId::PostgresAsync => "postgres-async",
            SystemId::RedisAlways => "redis-always",
            SystemId::RedisEverysec => "redis-everysec",
            SystemId::Floor => "floor",
        }
    }

    /// The system of a name.
    pub fn parse(name: &str) -> Result<SystemId, String> {
        crate::bench::by_name(&SystemId::ALL, SystemId::name, "system", name)
    }

    /// Whether it is Holdfast (the numerator of every ratio).
    pub fn is_holdfast(self) -> bool {
        matches!(self, SystemId::Holdfast1 | SystemId::Holdfast3)
    }

    /// Whether it is one of the peers (optional in CI).
    pub fn is_peer(self) -> bool {
        !self.is_holdfast() && self != SystemId::Floor
    }
}
