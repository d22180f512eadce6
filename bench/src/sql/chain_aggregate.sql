-- Running chain hash as a window aggregate: chain(leaf_hash) OVER (ORDER BY seq) returns
-- SHA-256(previous chain hash || leaf hash) for each row, starting from 32 zero bytes,
-- which is the audit ledger's chain rule. Both live in this session's temporary schema.
CREATE FUNCTION pg_temp.chain_step(previous bytea, leaf bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT AS 'SELECT sha256(previous || leaf)';
CREATE AGGREGATE pg_temp.chain(bytea) (
    SFUNC = pg_temp.chain_step,
    STYPE = bytea,
    INITCOND = '\x0000000000000000000000000000000000000000000000000000000000000000'
);
