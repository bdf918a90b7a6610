-- A group's system event lists the users it concerns: with
-- CHAT_MAX_GROUP_MEMBERS above about 975 one `created` or `added` event
-- outgrows TEXT (64 KiB), which MySQL and MariaDB refuse in strict mode
-- (the archiver would retry that batch for ever). MEDIUMTEXT holds 16 MiB,
-- like `msg`. (PostgreSQL's and SQLite's TEXT have no such bound.)
ALTER TABLE chat_message MODIFY sys_event MEDIUMTEXT NULL;
