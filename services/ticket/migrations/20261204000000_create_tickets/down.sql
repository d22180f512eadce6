DROP TABLE outbox;
DROP TABLE ticket_history;
DROP TABLE ticket_comments;
DROP FUNCTION reject_comment_change();
DROP TABLE tickets;
DROP SEQUENCE ticket_key_seq;
