//! Names of everything a cluster keeps in Redis, all under `chat:C:`
//! (DESIGN.md, "Names in Redis and RabbitMQ"). The operator uses the same
//! functions to find what a node left behind.
//!
//! User ids cannot contain `:`, conversation ids have the fixed shapes
//! `dm:a:b` and `g:<group id>`, and group ids are `g-` and a ULID, so no
//! two of these names can collide.
//!
//! The group scripts (chat-node's group.lua, conversations.lua,
//! recall.lua) write to a variable set of members' keys, so they build
//! those names from [`Keys::prefix`] exactly as the functions here do.

/// Key names of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(cluster: &str) -> Self {
        Keys {
            prefix: format!("chat:{cluster}:"),
        }
    }
    /// `chat:C:` — every key of the cluster starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Hash: token fields, under the SHA-256 of the secret.
    pub fn token(&self, token_hash: &str) -> String {
        format!("{}token:{token_hash}", self.prefix)
    }
    /// String: a revoked JWT `jti`, under the same hash as the token
    /// record of its sessions (`token_hash("jti:<jti>")`), living until the
    /// token's `exp`.
    pub fn revoked_jti(&self, token_hash: &str) -> String {
        format!("{}revoked:{token_hash}", self.prefix)
    }
    /// Prefix of message hashes (`chat:C:msg:<id>`).
    pub fn msg_prefix(&self) -> String {
        format!("{}msg:", self.prefix)
    }
    pub fn msg(&self, id: &str) -> String {
        format!("{}msg:{id}", self.prefix)
    }
    /// List: message ids of a conversation's messages held in Redis, oldest
    /// first. Without an archive it is never trimmed (the message at index
    /// `i` has `seq` `i + 1`); with one, archived messages beyond the hot
    /// window leave from the front, and the first has `seq` =
    /// [`Keys::conv_seq`] − length + 1.
    pub fn conv(&self, conv: &str) -> String {
        format!("{}conv:{conv}", self.prefix)
    }
    /// Counter: the last `seq` of a conversation. Absent for a conversation
    /// stored before it existed: then the list was never trimmed and its
    /// length is the last `seq`.
    pub fn conv_seq(&self, conv: &str) -> String {
        format!("{}conv:{conv}:seq", self.prefix)
    }
    /// Stream: the archive feed. The send script appends `{i: id, c: conv,
    /// s: seq}` in the same atomic step as the message; archivers read it in
    /// the consumer group [`crate::archive::GROUP`], insert into SQL, then
    /// acknowledge and delete the entry, so its length is the archive lag.
    pub fn archive_stream(&self) -> String {
        format!("{}archive", self.prefix)
    }
    /// Stream: the offline push feed. The send scripts append `{u: user,
    /// i: message id}` for each receiver with no live session, in the same
    /// atomic step as the message; pushers read it in the consumer group
    /// [`crate::push::GROUP`], POST the webhook, then acknowledge and delete
    /// the entry, so its length is the push backlog.
    pub fn push_stream(&self) -> String {
        format!("{}push", self.prefix)
    }
    /// Sorted set: conversation -> time (ms) when its oldest message beyond
    /// the hot window becomes old enough to leave Redis.
    pub fn archive_trim(&self) -> String {
        format!("{}archive:trim", self.prefix)
    }
    /// List: message ids of a user's inbox, oldest first, trimmed from the
    /// front by retention; the first has `pts` = counter − length + 1.
    pub fn inbox(&self, user: &str) -> String {
        format!("{}inbox:{user}", self.prefix)
    }
    /// Counter: last `pts` of a user's inbox.
    pub fn inbox_pts(&self, user: &str) -> String {
        format!("{}inbox:{user}:pts", self.prefix)
    }
    /// Hash: peer -> unread count.
    pub fn unread(&self, user: &str) -> String {
        format!("{}unread:{user}", self.prefix)
    }
    /// Hash: conversation -> read-up-to `seq`.
    pub fn read_marks(&self, user: &str) -> String {
        format!("{}read:{user}", self.prefix)
    }
    /// Hash: client id -> what was stored for it, for the client ids `user`
    /// sent in time bucket `bucket` (see [`client_id_buckets`]); the key
    /// expires one bucket after its own ends.
    pub fn client_ids(&self, user: &str, bucket: u64) -> String {
        format!("{}cid:{user}:{bucket}", self.prefix)
    }
    /// Hash: port -> instance, one field per node holding sessions of the user.
    pub fn presence(&self, user: &str) -> String {
        format!("{}presence:{user}", self.prefix)
    }
    /// Prefix of presence hashes.
    pub fn presence_prefix(&self) -> String {
        format!("{}presence:", self.prefix)
    }
    /// Set: users with a presence entry pointing at the node on `port`.
    pub fn node_users(&self, port: u16) -> String {
        format!("{}node:{port}:users", self.prefix)
    }
    /// Set: every port whose node ever declared a queue `chat.C.P`, so the
    /// operator can find queues of nodes that are gone (removed with the queue).
    pub fn queue_ports(&self) -> String {
        format!("{}queues", self.prefix)
    }
    /// Hash: a group's `name`, `owner`, `created` (ms) and `joins` (the
    /// counter that orders its members by join).
    pub fn group(&self, group: &str) -> String {
        format!("{}group:{group}", self.prefix)
    }
    /// Sorted set: a group's members, scored in join order.
    pub fn group_members(&self, group: &str) -> String {
        format!("{}group:{group}:members", self.prefix)
    }
    /// Hash: a group's former members -> `seq` of the message that removed
    /// them (the last one they got).
    pub fn group_left(&self, group: &str) -> String {
        format!("{}group:{group}:left", self.prefix)
    }
    /// Sorted set: a user's conversations -> last activity (ms).
    pub fn convs(&self, user: &str) -> String {
        format!("{}convs:{user}", self.prefix)
    }
    /// Hash: port -> online count (the node registry).
    pub fn ports(&self) -> String {
        format!("{}ports", self.prefix)
    }
    /// Hash: a node's details (name, address, ready, heartbeat, instance).
    pub fn node(&self, port: u16) -> String {
        format!("{}node:{port}", self.prefix)
    }
}

/// The client-id buckets a send at `ts_ms` reads (its own, then the one
/// before) and when its own expires, for client ids remembered `ttl_ms`:
/// bucket `b` holds the client ids sent in `[b, b + 1) x ttl_ms` and expires
/// at `(b + 2) x ttl_ms`, so a client id is remembered at least `ttl_ms`
/// and at most twice that. One hash per user and bucket rather than one
/// key per client id: a hash field costs Redis less than a key with its
/// own expiry.
pub fn client_id_buckets(ts_ms: u64, ttl_ms: u64) -> (u64, u64, u64) {
    let ttl = ttl_ms.max(1);
    let b = ts_ms / ttl;
    (b, b.saturating_sub(1), (b + 2) * ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let k = Keys::new("prod");
        assert_eq!(k.ports(), "chat:prod:ports");
        assert_eq!(k.node(8760), "chat:prod:node:8760");
        assert_eq!(k.inbox("alice"), "chat:prod:inbox:alice");
        assert_eq!(k.conv("dm:alice:bob"), "chat:prod:conv:dm:alice:bob");
        assert_eq!(k.client_ids("alice", 7), "chat:prod:cid:alice:7");
        assert_eq!(k.archive_stream(), "chat:prod:archive");
        assert_eq!(k.push_stream(), "chat:prod:push");
        assert_eq!(k.conv_seq("dm:a:b"), "chat:prod:conv:dm:a:b:seq");
        // The group scripts build these from the prefix.
        let g = "g-01JD0000000000000000000000";
        assert_eq!(k.group(g), format!("chat:prod:group:{g}"));
        assert_eq!(k.group_members(g), format!("chat:prod:group:{g}:members"));
        assert_eq!(k.group_left(g), format!("chat:prod:group:{g}:left"));
        assert_eq!(k.convs("bob"), "chat:prod:convs:bob");
        assert_eq!(k.unread("bob"), "chat:prod:unread:bob");
        assert_eq!(k.read_marks("bob"), "chat:prod:read:bob");
        assert_eq!(k.inbox_pts("bob"), "chat:prod:inbox:bob:pts");
    }

    #[test]
    fn a_client_id_is_kept_at_least_its_ttl_and_at_most_twice_that() {
        let ttl = 1000;
        for sent in [0u64, 1, 999, 1000, 5_432, 5_999] {
            let (own, _, expires) = client_id_buckets(sent, ttl);
            assert!(expires >= sent + ttl && expires <= sent + 2 * ttl, "{sent}");
            // Every later send within the ttl reads the bucket it went to.
            for later in [sent, sent + 1, sent + ttl - 1] {
                let (now, before, _) = client_id_buckets(later, ttl);
                assert!(own == now || own == before, "{sent} then {later}");
            }
        }
        assert_eq!(client_id_buckets(5_432, 1000), (5, 4, 7000));
        assert_eq!(client_id_buckets(10, 0), (10, 9, 12));
    }
}
