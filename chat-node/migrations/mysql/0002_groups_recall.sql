-- Version 1.1: group messages (receiver_type 2, receiver_id the group id),
-- their system event (JSON), and recall (the content is emptied, recalled 1).
ALTER TABLE chat_message ADD COLUMN sys_event TEXT NULL;
ALTER TABLE chat_message ADD COLUMN recalled SMALLINT NULL;
