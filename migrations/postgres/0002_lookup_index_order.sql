-- Batched lookups (`key IN (…)`, `subject IN (…)`, `ordering_key IN (…)`) must be index lookups
-- whatever the planner's statistics say. With the tenant (or subscription) first in the index,
-- PostgreSQL may match only that prefix and filter every row of the tenant: seen on a fresh,
-- fast-growing table before its first ANALYZE, where one lookup of 19 keys read 24,561 rows
-- (6 ms instead of 0.09 ms), and it gets slower as the tenant grows. With the looked-up column
-- first, the list itself is the index condition.
ALTER TABLE dedup_keys DROP CONSTRAINT dedup_keys_pkey;
ALTER TABLE dedup_keys ADD PRIMARY KEY (key, tenant_id, provider);

ALTER TABLE subjects DROP CONSTRAINT subjects_pkey;
ALTER TABLE subjects ADD PRIMARY KEY (subject, tenant_id);

DROP INDEX IF EXISTS deliveries_chain;
CREATE INDEX deliveries_chain ON deliveries (ordering_key, subscription_id, seq) WHERE status = 'pending';
-- Failing or re-queuing every pending delivery of one subscription (disable, delete) still
-- finds them by index.
CREATE INDEX IF NOT EXISTS deliveries_pending_by_subscription ON deliveries (subscription_id) WHERE status = 'pending';
