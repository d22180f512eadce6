-- The audit ledger: one row per recorded event, chained by SHA-256.
--
-- `canonical` holds the exact bytes that were hashed. The other columns copy fields of
-- the canonical JSON so records can be filtered with indexes; verification checks that
-- they agree with the canonical bytes.
CREATE TABLE ledger (
    seq           bigint      PRIMARY KEY CHECK (seq >= 1),
    event_id      uuid        NOT NULL UNIQUE,
    action        text        NOT NULL,
    resource_type text        NOT NULL,
    resource_id   text        NOT NULL,
    -- Empty when the resource has no human key.
    resource_key  text        NOT NULL,
    actor         text        NOT NULL,
    relayed_by    text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL,
    canonical     bytea       NOT NULL,
    -- RFC 6962 leaf hash: SHA-256(0x00 || canonical).
    leaf_hash     bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    -- SHA-256(chain_hash of seq - 1 || leaf_hash), with 32 zero bytes before seq 1.
    chain_hash    bytea       NOT NULL CHECK (length(chain_hash) = 32)
);

-- Listing filters by one of these and pages by seq, so each index ends with seq.
CREATE INDEX ledger_resource_id_seq ON ledger (resource_id, seq);
CREATE INDEX ledger_resource_key_seq ON ledger (resource_key, seq);
CREATE INDEX ledger_actor_seq ON ledger (actor, seq);
CREATE INDEX ledger_action_seq ON ledger (action, seq);
CREATE INDEX ledger_occurred_at ON ledger (occurred_at);

-- The last record's seq and chain hash. Every append locks this row with
-- SELECT ... FOR UPDATE, so appenders in several replicas take turns and the chain
-- never forks. Seq 0 with 32 zero bytes stands for the empty ledger.
CREATE TABLE ledger_head (
    id         smallint PRIMARY KEY CHECK (id = 1),
    seq        bigint   NOT NULL CHECK (seq >= 0),
    chain_hash bytea    NOT NULL CHECK (length(chain_hash) = 32)
);

INSERT INTO ledger_head (id, seq, chain_hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Records are never changed or removed once written. These triggers hold even for a
-- superuser, who can only get past them by disabling triggers explicitly
-- (ALTER TABLE ledger DISABLE TRIGGER, or session_replication_role = replica).
CREATE FUNCTION ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit ledger is append-only: % on table % is rejected', TG_OP, TG_TABLE_NAME
        USING HINT = 'records can only be added; to correct a record, append a new event that says so';
END;
$$;

CREATE TRIGGER ledger_reject_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_reject_delete BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_reject_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- The head row may only move to the record with the highest seq, so it cannot be
-- rolled back or pointed at a hash that is not in the ledger.
CREATE FUNCTION ledger_head_check_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    SELECT seq, chain_hash INTO last_seq, last_hash FROM ledger ORDER BY seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := '\x0000000000000000000000000000000000000000000000000000000000000000';
    END IF;
    IF NEW.seq <> last_seq OR NEW.chain_hash <> last_hash THEN
        RAISE EXCEPTION 'the ledger head must point at the last record (seq %), not seq %', last_seq, NEW.seq;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_head_check_update BEFORE UPDATE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_head_check_update();
CREATE TRIGGER ledger_head_reject_delete BEFORE DELETE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER ledger_head_reject_truncate BEFORE TRUNCATE ON ledger_head
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
