DROP TABLE denial_outbox;
