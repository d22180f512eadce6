-- The role the audit service works as: it may read the ledger and add records, and move
-- the head forward, but never change or remove a record. Roles belong to the whole cluster,
-- so the role may exist already (another audit database on the same server), and two
-- databases migrating at once may race to create it. CREATE ROLE needs the CREATEROLE
-- privilege even when the role exists, so it runs only when the role is missing, and a
-- login role without CREATEROLE migrates once an administrator has created the role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'docket_audit_writer') THEN
        CREATE ROLE docket_audit_writer NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

REVOKE ALL ON ledger, ledger_head FROM PUBLIC;
REVOKE ALL ON ledger, ledger_head FROM docket_audit_writer;
GRANT SELECT, INSERT ON ledger TO docket_audit_writer;
GRANT SELECT, UPDATE ON ledger_head TO docket_audit_writer;
