-- The role is shared by every audit database of the cluster, so only this database's
-- grants are removed.
REVOKE ALL ON ledger, ledger_head FROM docket_audit_writer;
