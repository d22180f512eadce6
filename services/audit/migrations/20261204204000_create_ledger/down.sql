-- Dropping the tables destroys the ledger and its evidence; only for development databases.
DROP TABLE ledger_head;
DROP TABLE ledger;
DROP FUNCTION ledger_head_check_update();
DROP FUNCTION ledger_reject_change();
