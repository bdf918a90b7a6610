-- The archive: every message, one row, keyed by conversation and position.
-- The original design's chat_message columns plus conv and seq, and for
-- PROTOCOL 1.1 sys_event (a group's system event, JSON) and recalled
-- (1 once the sender took it back: msg and media are emptied). A group
-- message has receiver_type 2 and the group id as receiver_id. No
-- auto-increment and no query that spans conversations: shard by conv.
CREATE TABLE IF NOT EXISTS chat_message (
  conv             VARCHAR(160) NOT NULL,
  seq              BIGINT       NOT NULL,
  id               VARCHAR(32)  NOT NULL,
  sender_id        VARCHAR(64)  NOT NULL,
  receiver_id      VARCHAR(128) NOT NULL,
  receiver_type    SMALLINT     NOT NULL,
  msg              TEXT         NOT NULL,
  msg_type         VARCHAR(16)  NOT NULL,
  chat_time        BIGINT       NOT NULL,
  media_url        TEXT         NULL,
  media_cover_url  TEXT         NULL,
  media_width      BIGINT       NULL,
  media_height     BIGINT       NULL,
  media_duration_s BIGINT       NULL,
  played           SMALLINT     NULL,
  sys_event        TEXT         NULL,
  recalled         SMALLINT     NULL,
  PRIMARY KEY (conv, seq),
  UNIQUE (id)
);
