//! Names of the archive feed's consumer group (DESIGN.md, "Storage tiers").
//! Every chat-node run that archives reads the stream
//! [`crate::Keys::archive_stream`] as one consumer of [`GROUP`], named after
//! the run, so the operator can tell the consumers of runs that are gone.
//! [`Database`] is the rule for the archive URL's scheme, which the
//! operator checks before passing it on.

/// The consumer group every archiver of a cluster reads the feed in.
pub const GROUP: &str = "archivers";

/// The consumer name of the node run `instance` on `port`: `<port>:<instance>`.
pub fn consumer_name(port: u16, instance: &str) -> String {
    format!("{port}:{instance}")
}

/// The port and run of a consumer name written by [`consumer_name`]; `None`
/// for any other name.
pub fn parse_consumer(name: &str) -> Option<(u16, &str)> {
    let (port, instance) = name.split_once(':')?;
    let port = port.parse().ok().filter(|p| *p > 0)?;
    (!instance.is_empty()).then_some((port, instance))
}

/// The archive databases, by the scheme of `CHAT_ARCHIVE_URL` (DESIGN.md,
/// "Storage tiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// `mysql://` (or `mariadb://`): MySQL or MariaDB.
    MySql,
    /// `postgres://` (or `postgresql://`): PostgreSQL.
    Postgres,
    /// `sqlite://`: a file, for a single node with nothing installed.
    Sqlite,
}

impl Database {
    /// The database an archive URL names; `None` for any other scheme.
    pub fn of_url(url: &str) -> Option<Database> {
        let (scheme, _) = url.split_once("://")?;
        match scheme {
            "mysql" | "mariadb" => Some(Database::MySql),
            "postgres" | "postgresql" => Some(Database::Postgres),
            "sqlite" => Some(Database::Sqlite),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_round_trip() {
        let name = consumer_name(8760, "0b1c-uid");
        assert_eq!(name, "8760:0b1c-uid");
        assert_eq!(parse_consumer(&name), Some((8760, "0b1c-uid")));
        assert_eq!(parse_consumer("8760:"), None);
        assert_eq!(parse_consumer("node:x"), None);
        assert_eq!(parse_consumer("0:x"), None);
    }

    #[test]
    fn archive_urls_name_their_database_by_scheme() {
        assert_eq!(
            Database::of_url("mysql://u:p@db:3306/chat"),
            Some(Database::MySql)
        );
        assert_eq!(
            Database::of_url("postgres://db/chat"),
            Some(Database::Postgres)
        );
        assert_eq!(
            Database::of_url("sqlite:///data/chat.db"),
            Some(Database::Sqlite)
        );
        assert_eq!(Database::of_url("redis://r:6379/0"), None);
        assert_eq!(Database::of_url("mysql:db"), None);
    }
}
