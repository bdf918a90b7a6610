//! The archive: every message in SQL, one table `chat_message` (DESIGN.md,
//! "Storage tiers"). MySQL/MariaDB, PostgreSQL or SQLite, chosen by the URL
//! scheme; the same statements run on all three, built with sqlx's
//! `QueryBuilder` so each gets its own placeholders.
//!
//! Inserts are upserts on the primary key `(conv, seq)`: a batch delivered
//! twice changes nothing. The only columns that ever change after the first
//! insert move one way (`played` 0 -> 1), and an upsert keeps the greater
//! value, so writes of the same row in any order converge.
//!
//! Nothing here spans conversations except the point lookups by message id
//! (`played` names a message by id only): the table shards by `conv`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row};
use tokio::sync::OnceCell;

use crate::protocol::{Kind, Media, Message};
use crate::store::StoreError;

/// Which SQL engine an archive URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Engine {
    /// `mysql://` (MySQL or MariaDB, and engines speaking their protocol).
    Mysql,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite://<file>` (created when missing): one node only.
    Sqlite,
}

impl Engine {
    /// The engine of `url`, from its scheme (the rule the operator checks
    /// `spec.archive` by: `parley_cluster::archive::Database::of_url`).
    pub fn of(url: &str) -> Result<Engine, ArchiveError> {
        use parley_cluster::archive::Database;
        match Database::of_url(url) {
            Some(Database::MySql) => Ok(Engine::Mysql),
            Some(Database::Postgres) => Ok(Engine::Postgres),
            Some(Database::Sqlite) => Ok(Engine::Sqlite),
            None => Err(ArchiveError::Url(
                "must start with mysql://, postgres:// or sqlite://".into(),
            )),
        }
    }
}

/// An archive failure.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive URL {0}")]
    Url(String),
    /// The database could not be reached, or refused the statement.
    #[error("archive unavailable: {0}")]
    Unavailable(String),
    /// A row the code cannot read back.
    #[error("archive row unreadable: {0}")]
    Corrupt(String),
    /// The database refused the data itself (SQLSTATE class 22, a data
    /// exception: a value its column cannot hold): trying the same rows
    /// again cannot help.
    #[error("archive refused the data: {0}")]
    Refused(String),
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. } => ArchiveError::Corrupt(e.to_string()),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                ArchiveError::Refused(e.to_string())
            }
            e => ArchiveError::Unavailable(e.to_string()),
        }
    }
}

impl From<ArchiveError> for StoreError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Corrupt(m) => StoreError::Corrupt(m),
            e => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// The archive is down while its migrations cannot run.
fn unmigrated(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Unavailable(format!("migrations: {e}"))
}

/// [`MYSQL_MIGRATION_LOCK`] as a literal, for `concat!` (sqlx takes only
/// static SQL without a wrapper that vouches for it).
macro_rules! mysql_migration_lock {
    () => {
        "CONCAT('parley_migrations:', SHA1(DATABASE()))"
    };
}

/// The name of the MySQL user lock every parley node takes around the
/// migrations of its database (`GET_LOCK`; the server drops it with the
/// connection), as an SQL expression. User locks are named per server, so
/// the name carries the database's (hashed: a name may have 64 characters,
/// a database name alone as many): clusters archiving to other databases of
/// the same server migrate without waiting for each other.
pub const MYSQL_MIGRATION_LOCK: &str = mysql_migration_lock!();

/// Runs the MySQL/MariaDB migrations, first forgetting any a migrator left
/// half done. DDL there commits by itself, so sqlx records a migration
/// (`success = FALSE`) before running it and marks it done after: a node
/// killed in between, or a server that died under it, leaves a row every
/// later run refuses with "partially applied", and the archive stays down
/// until someone edits `_sqlx_migrations` by hand. While this node holds
/// the lock no other node is migrating, so such a row is a dead
/// migrator's, and every MySQL migration here is written to run again
/// safely (`IF NOT EXISTS`, `MODIFY` to its final type): the row is
/// deleted and the migration runs again. The lock's connection is detached
/// from the pool, so a caller that gives up mid-way closes it and the
/// server frees the lock; the migrator runs on another of the pool's.
async fn migrate_mysql(pool: &sqlx::MySqlPool) -> Result<(), ArchiveError> {
    use sqlx::migrate::Migrate;
    let mut lock = pool.acquire().await.map_err(unmigrated)?.detach();
    // A timeout in seconds, a day: MariaDB answers a negative one (MySQL's
    // "for ever", what sqlx's own migration lock asks for) with NULL and
    // takes no lock, so on MariaDB sqlx's lock alone lets nodes migrate
    // together (one reads the other's unfinished row as half done).
    let (name, taken): (Option<String>, Option<i64>) = sqlx::query_as(concat!(
        "SELECT ",
        mysql_migration_lock!(),
        ", GET_LOCK(",
        mysql_migration_lock!(),
        ", 86400)"
    ))
    .fetch_one(&mut lock)
    .await
    .map_err(unmigrated)?;
    if taken != Some(1) {
        return Err(unmigrated(format_args!(
            "the lock {name:?} was not taken (GET_LOCK gave {taken:?}; is a database named in the URL?)"
        )));
    }
    lock.ensure_migrations_table("_sqlx_migrations")
        .await
        .map_err(unmigrated)?;
    let forgotten = sqlx::query("DELETE FROM _sqlx_migrations WHERE success = FALSE")
        .execute(&mut lock)
        .await
        .map_err(unmigrated)?
        .rows_affected();
    if forgotten > 0 {
        tracing::warn!(
            forgotten,
            "archive: a migration was left half done (its migrator died); running it again"
        );
    }
    sqlx::migrate!("migrations/mysql")
        .run(pool)
        .await
        .map_err(unmigrated)?;
    sqlx::query(concat!(
        "SELECT RELEASE_LOCK(",
        mysql_migration_lock!(),
        ")"
    ))
    .execute(&mut lock)
    .await
    .map_err(unmigrated)?;
    Ok(())
}

enum Pools {
    Mysql(sqlx::MySqlPool),
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// Runs `$body` with `$pool` bound to the archive's pool and `$db` naming
/// its sqlx database type, for each engine.
macro_rules! with_pool {
    ($archive:expr, |$pool:ident, $db:ident| $body:expr) => {
        match &$archive.pools {
            Pools::Mysql($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::MySql;
                $body
            }
            Pools::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
            Pools::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
        }
    };
}

/// The columns every read selects, in [`decode`]'s order.
const COLUMNS: &str = "conv, seq, id, sender_id, receiver_id, msg, msg_type, chat_time, \
     media_url, media_cover_url, media_width, media_height, media_duration_s, played, \
     receiver_type, sys_event, recalled";

/// `receiver_type` of a one-to-one message.
const RECEIVER_USER: i16 = 1;
/// `receiver_type` of a group message (`receiver_id` is the group id).
const RECEIVER_GROUP: i16 = 2;

/// Most rows one statement carries (bind parameters stay far below every
/// engine's limit: 15 per row).
pub const MAX_BATCH: usize = 1000;

/// Longest an archive call (its statements) may take before it gives
/// `Unavailable`; each statement also waits at most the pool's timeout for
/// a connection.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection pool onto the archive, connected lazily: a node starts
/// while the database is down, and the schema is migrated on first use.
pub struct Archive {
    engine: Engine,
    pools: Pools,
    migrated: OnceCell<()>,
}

impl Archive {
    /// Prepares the pool for `url`; nothing is connected yet. Each statement
    /// waits at most `timeout` for a connection.
    pub fn connect_lazy(url: &str, timeout: Duration) -> Result<Archive, ArchiveError> {
        let engine = Engine::of(url)?;
        let bad = |e: sqlx::Error| ArchiveError::Url(e.to_string());
        let pools = match engine {
            Engine::Mysql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let opts = MySqlConnectOptions::from_str(&url)
                    .map_err(bad)?
                    .charset("utf8mb4");
                Pools::Mysql(
                    MySqlPoolOptions::new()
                        .max_connections(8)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(opts),
                )
            }
            Engine::Postgres => {
                let opts = PgConnectOptions::from_str(url).map_err(bad)?;
                Pools::Postgres(
                    PgPoolOptions::new()
                        .max_connections(8)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(opts),
                )
            }
            Engine::Sqlite => {
                // WAL with NORMAL sync: a committed transaction survives the
                // process being killed (it is in the log); only a power loss
                // may take the last ones.
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(bad)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(timeout);
                Pools::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(opts),
                )
            }
        };
        Ok(Archive {
            engine,
            pools,
            migrated: OnceCell::new(),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Every statement ends within [`STATEMENT_TIMEOUT`]: a database that
    /// stops answering (a lock wait, a black-holed network) gives
    /// `Unavailable` instead of holding its caller (a send, a history page,
    /// the archiver) for ever. The public methods check what needs no
    /// database, then run the migrations ([`Archive::ready`], once, not
    /// bounded), then their `*_untimed` statements through this.
    async fn timed<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ArchiveError>>,
    ) -> Result<T, ArchiveError> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(ArchiveError::Unavailable(format!(
                "{what}: no answer within {} s",
                STATEMENT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), ArchiveError> {
        self.ready().await?;
        self.timed("ping", self.ping_untimed()).await
    }

    /// Stores messages, each once (see `insert_untimed`).
    pub async fn insert(&self, msgs: &[Message]) -> Result<(), ArchiveError> {
        self.ready().await?;
        self.timed("insert", self.insert_untimed(msgs)).await
    }

    /// The messages of `conv` with `lo <= seq < hi`, ascending (every one: seqs are gap-free).
    pub async fn range(&self, conv: &str, lo: u64, hi: u64) -> Result<Vec<Message>, ArchiveError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        self.ready().await?;
        self.timed("range", self.range_untimed(conv, lo, hi)).await
    }

    /// The messages with these `(conv, seq)` keys that exist, in any order.
    pub async fn by_keys(&self, keys: &[(String, u64)]) -> Result<Vec<Message>, ArchiveError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.ready().await?;
        self.timed("by_keys", self.by_keys_untimed(keys)).await
    }

    /// The messages with these ids that exist, in any order.
    pub async fn by_ids(&self, ids: &[&str]) -> Result<Vec<Message>, ArchiveError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.ready().await?;
        self.timed("by_ids", self.by_ids_untimed(ids)).await
    }

    /// The newest `seq` archived for `conv` (0 when none).
    pub async fn last_seq(&self, conv: &str) -> Result<u64, ArchiveError> {
        self.ready().await?;
        self.timed("last_seq", self.last_seq_untimed(conv)).await
    }

    /// Marks the voice message `id` played.
    pub async fn mark_played(&self, id: &str) -> Result<(), ArchiveError> {
        self.ready().await?;
        self.timed("mark_played", self.mark_played_untimed(id))
            .await
    }

    /// Takes the content of message `id` away for good (recall).
    pub async fn recall(&self, id: &str) -> Result<(), ArchiveError> {
        self.ready().await?;
        self.timed("recall", self.recall_untimed(id)).await
    }

    /// How many messages the archive holds, and how many distinct ids.
    pub async fn count(&self) -> Result<(u64, u64), ArchiveError> {
        self.ready().await?;
        self.timed("count", self.count_untimed()).await
    }

    /// Every message id the archive holds (tests compare them).
    pub async fn all_ids(&self) -> Result<Vec<String>, ArchiveError> {
        self.ready().await?;
        self.timed("all_ids", self.all_ids_untimed()).await
    }

    /// Applies the migrations once per process (each engine's migrator
    /// takes a lock, so nodes starting together do not race).
    pub async fn ready(&self) -> Result<(), ArchiveError> {
        self.migrated
            .get_or_try_init(|| async {
                match &self.pools {
                    Pools::Mysql(p) => migrate_mysql(p).await,
                    Pools::Postgres(p) => sqlx::migrate!("migrations/postgres")
                        .run(p)
                        .await
                        .map_err(unmigrated),
                    Pools::Sqlite(p) => sqlx::migrate!("migrations/sqlite")
                        .run(p)
                        .await
                        .map_err(unmigrated),
                }
            })
            .await
            .map(|_| ())
    }

    /// Answers when the database does.
    async fn ping_untimed(&self) -> Result<(), ArchiveError> {
        with_pool!(self, |pool, Db| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Stores messages, each once: a row already there keeps its columns,
    /// except `played` and `recalled`, which become the greater of the two
    /// (and a recalled row loses its content), so writes of one message in
    /// any order converge.
    async fn insert_untimed(&self, msgs: &[Message]) -> Result<(), ArchiveError> {
        // MySQL evaluates the assignments in order: content before `recalled`.
        let upsert = match self.engine {
            Engine::Mysql => {
                " ON DUPLICATE KEY UPDATE played = GREATEST(played, VALUES(played)), \
                 msg = IF(COALESCE(VALUES(recalled), 0) = 1, '', msg), \
                 media_url = IF(COALESCE(VALUES(recalled), 0) = 1, NULL, media_url), \
                 media_cover_url = IF(COALESCE(VALUES(recalled), 0) = 1, NULL, media_cover_url), \
                 recalled = GREATEST(COALESCE(recalled, 0), COALESCE(VALUES(recalled), 0))"
            }
            Engine::Postgres => {
                " ON CONFLICT (conv, seq) DO UPDATE SET played = GREATEST(chat_message.played, EXCLUDED.played), \
                 msg = CASE WHEN COALESCE(EXCLUDED.recalled, 0) = 1 THEN '' ELSE chat_message.msg END, \
                 media_url = CASE WHEN COALESCE(EXCLUDED.recalled, 0) = 1 THEN NULL ELSE chat_message.media_url END, \
                 media_cover_url = CASE WHEN COALESCE(EXCLUDED.recalled, 0) = 1 THEN NULL ELSE chat_message.media_cover_url END, \
                 recalled = GREATEST(COALESCE(chat_message.recalled, 0), COALESCE(EXCLUDED.recalled, 0))"
            }
            Engine::Sqlite => {
                " ON CONFLICT (conv, seq) DO UPDATE SET played = MAX(chat_message.played, excluded.played), \
                 msg = CASE WHEN COALESCE(excluded.recalled, 0) = 1 THEN '' ELSE chat_message.msg END, \
                 media_url = CASE WHEN COALESCE(excluded.recalled, 0) = 1 THEN NULL ELSE chat_message.media_url END, \
                 media_cover_url = CASE WHEN COALESCE(excluded.recalled, 0) = 1 THEN NULL ELSE chat_message.media_cover_url END, \
                 recalled = MAX(COALESCE(chat_message.recalled, 0), COALESCE(excluded.recalled, 0))"
            }
        };
        for chunk in msgs.chunks(MAX_BATCH) {
            with_pool!(self, |pool, Db| {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO chat_message (conv, seq, id, sender_id, receiver_id, receiver_type, \
                     msg, msg_type, chat_time, media_url, media_cover_url, media_width, \
                     media_height, media_duration_s, played, sys_event, recalled) ",
                );
                q.push_values(chunk, |mut row, m| {
                    let media = m.media.as_ref();
                    let (receiver, receiver_type) = match &m.group {
                        Some(g) => (g.as_str(), RECEIVER_GROUP),
                        None => (m.to.as_str(), RECEIVER_USER),
                    };
                    let system = m
                        .system
                        .as_ref()
                        .and_then(|s| serde_json::to_string(s).ok());
                    row.push_bind(m.conv.as_str())
                        .push_bind(m.seq as i64)
                        .push_bind(m.id.as_str())
                        .push_bind(m.from.as_str())
                        .push_bind(receiver)
                        .push_bind(receiver_type)
                        .push_bind(m.body.as_str())
                        .push_bind(m.kind.as_str())
                        .push_bind(m.ts as i64)
                        .push_bind(media.map(|x| x.url.as_str()))
                        .push_bind(media.and_then(|x| x.cover_url.as_deref()))
                        .push_bind(media.and_then(|x| x.width).map(i64::from))
                        .push_bind(media.and_then(|x| x.height).map(i64::from))
                        .push_bind(media.and_then(|x| x.duration_s).map(i64::from))
                        .push_bind(m.played.map(i16::from))
                        .push_bind(system)
                        .push_bind(m.recalled.map(i16::from));
                });
                q.push(upsert);
                q.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// The messages of `conv` with `lo <= seq < hi`, ascending: every one of
    /// them, since seqs are gap-free; a missing one is `Corrupt`.
    async fn range_untimed(
        &self,
        conv: &str,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<Message>, ArchiveError> {
        with_pool!(self, |pool, Db| {
            let mut q = QueryBuilder::<Db>::new(format!(
                "SELECT {COLUMNS} FROM chat_message WHERE conv = "
            ));
            q.push_bind(conv)
                .push(" AND seq >= ")
                .push_bind(lo as i64)
                .push(" AND seq < ")
                .push_bind(hi as i64)
                .push(" ORDER BY seq");
            let rows = q.build().fetch_all(pool).await?;
            let msgs = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
            if msgs.len() as u64 != hi - lo {
                return Err(ArchiveError::Corrupt(format!(
                    "the archive lacks messages {lo}..{hi} of {conv}"
                )));
            }
            Ok(msgs)
        })
    }

    /// The messages with these `(conv, seq)` keys that exist, in any order.
    async fn by_keys_untimed(&self, keys: &[(String, u64)]) -> Result<Vec<Message>, ArchiveError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH) {
            with_pool!(self, |pool, Db| {
                let mut q = QueryBuilder::<Db>::new(format!(
                    "SELECT {COLUMNS} FROM chat_message WHERE (conv, seq) IN "
                ));
                q.push_tuples(chunk, |mut t, (conv, seq)| {
                    t.push_bind(conv.as_str()).push_bind(*seq as i64);
                });
                for row in q.build().fetch_all(pool).await? {
                    out.push(decode(&row)?);
                }
            });
        }
        Ok(out)
    }

    /// The messages with these ids that exist, in any order.
    async fn by_ids_untimed(&self, ids: &[&str]) -> Result<Vec<Message>, ArchiveError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_BATCH) {
            with_pool!(self, |pool, Db| {
                let mut q = QueryBuilder::<Db>::new(format!(
                    "SELECT {COLUMNS} FROM chat_message WHERE id IN ("
                ));
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                for row in q.build().fetch_all(pool).await? {
                    out.push(decode(&row)?);
                }
            });
        }
        Ok(out)
    }

    /// The newest `seq` archived for `conv` (0 when none).
    async fn last_seq_untimed(&self, conv: &str) -> Result<u64, ArchiveError> {
        let last: Option<i64> = with_pool!(self, |pool, Db| {
            let mut q = QueryBuilder::<Db>::new("SELECT MAX(seq) FROM chat_message WHERE conv = ");
            q.push_bind(conv);
            q.build().fetch_one(pool).await?.try_get(0)?
        });
        Ok(last.unwrap_or(0).max(0) as u64)
    }

    /// Marks the voice message `id` played.
    async fn mark_played_untimed(&self, id: &str) -> Result<(), ArchiveError> {
        with_pool!(self, |pool, Db| {
            let mut q = QueryBuilder::<Db>::new("UPDATE chat_message SET played = 1 WHERE id = ");
            q.push_bind(id).push(" AND msg_type = 'voice'");
            q.build().execute(pool).await?;
        });
        Ok(())
    }

    /// Takes the content of message `id` away for good (recall).
    async fn recall_untimed(&self, id: &str) -> Result<(), ArchiveError> {
        with_pool!(self, |pool, Db| {
            let mut q = QueryBuilder::<Db>::new(
                "UPDATE chat_message SET msg = '', media_url = NULL, media_cover_url = NULL, \
                 recalled = 1 WHERE id = ",
            );
            q.push_bind(id);
            q.build().execute(pool).await?;
        });
        Ok(())
    }

    /// How many messages the archive holds, and how many distinct ids (the
    /// same when nothing is stored twice): for tests and benchmarks.
    async fn count_untimed(&self) -> Result<(u64, u64), ArchiveError> {
        let (rows, ids): (i64, i64) = with_pool!(self, |pool, Db| {
            let row = sqlx::query("SELECT COUNT(*), COUNT(DISTINCT id) FROM chat_message")
                .fetch_one(pool)
                .await?;
            (row.try_get(0)?, row.try_get(1)?)
        });
        Ok((rows as u64, ids as u64))
    }

    /// Every message id the archive holds (tests compare them).
    async fn all_ids_untimed(&self) -> Result<Vec<String>, ArchiveError> {
        with_pool!(self, |pool, Db| {
            let rows = sqlx::query("SELECT id FROM chat_message ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(ArchiveError::from))
                .collect()
        })
    }
}

/// A row of [`COLUMNS`] as a message.
fn decode<R>(row: &R) -> Result<Message, ArchiveError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let int = |i: usize| -> Result<Option<u32>, ArchiveError> {
        let v: Option<i64> = row.try_get(i)?;
        v.map(|n| u32::try_from(n).map_err(|_| ArchiveError::Corrupt(format!("column {i}: {n}"))))
            .transpose()
    };
    let kind: String = row.try_get(6)?;
    let kind =
        Kind::from_str(&kind).map_err(|_| ArchiveError::Corrupt(format!("msg_type {kind}")))?;
    let url: Option<String> = row.try_get(8)?;
    let media = url.map(|url| -> Result<Media, ArchiveError> {
        Ok(Media {
            url,
            cover_url: row.try_get(9)?,
            width: int(10)?,
            height: int(11)?,
            duration_s: int(12)?,
        })
    });
    let played: Option<i16> = row.try_get(13)?;
    let (seq, ts): (i64, i64) = (row.try_get(1)?, row.try_get(7)?);
    let receiver: String = row.try_get(4)?;
    let receiver_type: i16 = row.try_get(14)?;
    let (to, group) = if receiver_type == RECEIVER_GROUP {
        (String::new(), Some(receiver))
    } else {
        (receiver, None)
    };
    let system: Option<String> = row.try_get(15)?;
    let system = system
        .map(|j| serde_json::from_str(&j))
        .transpose()
        .map_err(|e| ArchiveError::Corrupt(format!("sys_event: {e}")))?;
    let recalled: Option<i16> = row.try_get(16)?;
    let recalled = recalled.filter(|r| *r != 0).map(|_| true);
    Ok(Message {
        conv: row.try_get(0)?,
        seq: seq.max(0) as u64,
        id: row.try_get(2)?,
        from: row.try_get(3)?,
        to,
        group,
        body: row.try_get(5)?,
        kind,
        media: if recalled.is_some() {
            None
        } else {
            media.transpose()?
        },
        ts: ts.max(0) as u64,
        played: played.map(|p| p != 0),
        system,
        recalled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_engine() {
        assert_eq!(Engine::of("mysql://u:p@h/db").unwrap(), Engine::Mysql);
        assert_eq!(Engine::of("mariadb://u:p@h/db").unwrap(), Engine::Mysql);
        assert_eq!(Engine::of("postgres://h/db").unwrap(), Engine::Postgres);
        assert_eq!(Engine::of("postgresql://h/db").unwrap(), Engine::Postgres);
        assert_eq!(Engine::of("sqlite://chat.db").unwrap(), Engine::Sqlite);
        assert!(Engine::of("redis://h").is_err());
        assert!(Engine::of("chat.db").is_err());
    }
}
