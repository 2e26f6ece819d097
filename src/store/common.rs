// Statements and logic shared by every SQL backend. This file is not a module: each backend
// module `include!`s it after defining `type Db` (the sqlx database) and a `Backend` struct with
// `read`/`write` pools, `instance_id`, `lease_ms` and an inherent `begin_write()`.
// Placeholders are `$N`, which both SQLite and PostgreSQL accept.
//
// The hot paths (ingest and recording attempts) are set-based: a batch of any size costs a
// handful of statements, one per table, not several per callback. Every statement is a round
// trip (to SQLite's worker thread or to the PostgreSQL server), and the one writer is serial, so
// the number of statements per batch, not the work in them, bounds throughput.

use std::collections::HashMap as CommonHashMap;
use std::collections::HashSet as CommonHashSet;

use crate::event::filter_matches;
use crate::store::{
    now_ms, IngestBatchResult, Job, IngestItem, IngestKind, IngestResult,
    InboundEntry, Page, StoreError, StoreResult, StoredEvent, Tenant,
};

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Most parameters bound in one statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BINDS: usize = 30_000;

type Separated<'qb, 'args> = sqlx::query_builder::Separated<'qb, 'args, Db, &'static str>;

/// Runs `head VALUES (…), (…) tail` over `rows`, in as few statements as the parameter limit
/// allows; `push` binds one row's `columns` values.
async fn execute_values<'a, T>(
    conn: &mut <Db as sqlx::Database>::Connection,
    head: &str,
    tail: &str,
    columns: usize,
    rows: &'a [T],
    mut push: impl FnMut(&mut Separated<'_, 'a>, &'a T),
) -> sqlx::Result<u64> {
    let mut affected = 0;
    for chunk in rows.chunks((MAX_BINDS / columns).max(1)) {
        let mut qb = sqlx::QueryBuilder::<Db>::new(head);
        qb.push_values(chunk, |mut b, row| push(&mut b, row));
        qb.push(tail);
        // One-off SQL (its text depends on the row count): not worth a prepared-statement slot.
        affected += qb.build().persistent(false).execute(&mut *conn).await?.rows_affected();
    }
    Ok(affected)
}

/// Runs `head … IN (…)` over `values` (in chunks under the parameter limit) and collects the
/// rows; `bind_head` writes the rest of the head, ending in the column the list is for.
async fn fetch_in<'a, T, R>(
    conn: &mut <Db as sqlx::Database>::Connection,
    head: &str,
    values: &'a [T],
    mut bind_head: impl FnMut(&mut sqlx::QueryBuilder<'a, Db>),
) -> sqlx::Result<Vec<R>>
where
    &'a T: 'a + sqlx::Encode<'a, Db> + sqlx::Type<Db>,
    R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
{
    let mut out = Vec::new();
    for chunk in values.chunks(MAX_BINDS / 2) {
        let mut qb = sqlx::QueryBuilder::<Db>::new(head);
        bind_head(&mut qb);
        push_in(&mut qb, "", chunk);
        out.extend(qb.build_query_as::<R>().persistent(false).fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Rows about pending deliveries `d` of the given chains (subscription, ordering key): `head` is
/// the statement up to the conditions on the chain, ending in `AND `. Rows of other pairs of the
/// same subscriptions and keys may come back too; callers match the pairs they asked for.
async fn pending_on_chains<'a, R>(
    conn: &mut <Db as sqlx::Database>::Connection,
    head: &str,
    chains: &[(&'a str, &'a str)],
) -> sqlx::Result<Vec<R>>
where
    R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
{
    let (mut subs, mut keys): (Vec<&str>, Vec<&str>) = chains.iter().copied().unzip();
    subs.sort_unstable();
    subs.dedup();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    if keys.is_empty() {
        return Ok(out);
    }
    for subs in subs.chunks(MAX_BINDS / 4) {
        let rows: Vec<R> = fetch_in(conn, head, &keys, |qb| {
            push_in(qb, "d.subscription_id", subs);
            qb.push(" AND d.ordering_key");
        })
        .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// Pushes `column IN ($…, …)` for a non-empty list.
fn push_in<'a, T>(qb: &mut sqlx::QueryBuilder<'a, Db>, column: &str, values: &'a [T])
where
    &'a T: sqlx::Encode<'a, Db> + sqlx::Type<Db>,
{
    qb.push(column);
    qb.push(" IN (");
    let mut list = qb.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    list.push_unseparated(")");
}

/// One row of the inbound log, for an item of an ingest batch.
struct InboundRow<'a> {
    item: &'a IngestItem,
    outcome: &'static str,
    reason: Option<&'a str>,
    event_id: Option<String>,
    dedup_key: Option<&'a str>,
    body: Option<&'a [u8]>,
}

impl Backend {
    async fn insert_inbound(
        conn: &mut <Db as sqlx::Database>::Connection,
        rows: &[InboundRow<'_>],
    ) -> sqlx::Result<()> {
        let ids: Vec<String> = rows.iter().map(|_| crate::event::prefixed_id("in_")).collect();
        let rows: Vec<(&String, &InboundRow<'_>)> = ids.iter().zip(rows).collect();
        execute_values(
            conn,
            "INSERT INTO inbound_log (id, tenant_id, provider, route, outcome, reason, remote_addr, event_id, \
             dedup_key, body, received_at) ",
            "",
            11,
            &rows,
            |b, (id, r)| {
                b.push_bind(id.as_str())
                    .push_bind(r.item.tenant_id.as_str())
                    .push_bind(r.item.provider)
                    .push_bind(r.item.route)
                    .push_bind(r.outcome)
                    .push_bind(r.reason)
                    .push_bind(r.item.remote_addr.as_deref())
                    .push_bind(r.event_id.as_deref())
                    .push_bind(r.dedup_key)
                    .push_bind(r.body)
                    .push_bind(r.item.received_at);
            },
        )
        .await?;
        Ok(())
    }

    /// Enabled subscriptions of a tenant as (id, filters).
    async fn subscriptions_of(
        conn: &mut <Db as sqlx::Database>::Connection,
        tenant: &str,
    ) -> sqlx::Result<Vec<(String, Vec<String>)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, event_types FROM subscriptions WHERE tenant_id = $1 AND enabled = TRUE ORDER BY created_at",
        )
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, types)| (id, serde_json::from_str(&types).unwrap_or_default()))
            .collect())
    }

    /// Writes a batch of callbacks, each with the outcome it would have had written alone and in
    /// order: a key seen before (in an earlier batch or earlier in this one) is a duplicate; a
    /// call or payment event that does not advance its subject's state is recorded, not emitted.
    async fn ingest_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        items: &[IngestItem],
        held: &CommonHashSet<String>,
    ) -> sqlx::Result<IngestBatchResult> {
        let now = now_ms();
        let mut results: Vec<Option<IngestResult>> = vec![None; items.len()];
        let mut inbound: Vec<Option<InboundRow<'_>>> = items.iter().map(|_| None).collect();

        // The first occurrence of each key in the batch is a candidate; later ones repeat it.
        let mut first: CommonHashMap<(&str, &str, &str), usize> = CommonHashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut candidates: Vec<usize> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match &item.kind {
                IngestKind::Rejected { reason } => {
                    results[i] = Some(IngestResult::Rejected);
                    inbound[i] = Some(InboundRow {
                        item,
                        outcome: "rejected",
                        reason: Some(reason),
                        event_id: None,
                        dedup_key: None,
                        body: None,
                    });
                }
                IngestKind::Accepted { dedup_key, .. } => {
                    match first.entry((item.tenant_id.as_str(), item.provider, dedup_key.as_str())) {
                        std::collections::hash_map::Entry::Occupied(e) => repeats.push((i, *e.get())),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(i);
                            candidates.push(i);
                        }
                    }
                }
            }
        }

        // Keys stored by earlier batches, looked up per (tenant, provider).
        let mut by_source: CommonHashMap<(&str, &str), Vec<&str>> = CommonHashMap::new();
        for &i in &candidates {
            let item = &items[i];
            if let IngestKind::Accepted { dedup_key, .. } = &item.kind {
                by_source.entry((item.tenant_id.as_str(), item.provider)).or_default().push(dedup_key);
            }
        }
        let mut seen: CommonHashMap<(&str, &str, String), (Option<String>, i64)> = CommonHashMap::new();
        for ((tenant, provider), keys) in &by_source {
            let rows: Vec<(String, Option<String>, i64)> = fetch_in(
                conn,
                "SELECT key, event_id, status FROM dedup_keys WHERE ",
                keys,
                |qb| {
                    qb.push("tenant_id = ").push_bind(*tenant).push(" AND provider = ").push_bind(*provider);
                    qb.push(" AND key");
                },
            )
            .await?;
            for (key, event_id, status) in rows {
                seen.insert((tenant, provider, key), (event_id, status));
            }
        }

        // Current states of the calls and payments the new events belong to.
        let mut fresh: Vec<usize> = Vec::new();
        let mut subjects_by_tenant: CommonHashMap<&str, Vec<String>> = CommonHashMap::new();
        for &i in &candidates {
            let item = &items[i];
            let IngestKind::Accepted { dedup_key, event, .. } = &item.kind else { continue };
            if let Some((event_id, status)) = seen.get(&(item.tenant_id.as_str(), item.provider, dedup_key.clone())) {
                results[i] = Some(IngestResult::Duplicate { event_id: event_id.clone(), status: *status as u16 });
                inbound[i] = Some(InboundRow {
                    item,
                    outcome: "duplicate",
                    reason: None,
                    event_id: event_id.clone(),
                    dedup_key: Some(dedup_key),
                    body: None,
                });
                continue;
            }
            fresh.push(i);
            if let Some(subject) = event.as_ref().and_then(|e| e.subject.as_ref()) {
                subjects_by_tenant.entry(item.tenant_id.as_str()).or_default().push(subject.key());
            }
        }
        let mut ranks: CommonHashMap<(&str, String), i64> = CommonHashMap::new();
        for (tenant, subjects) in &subjects_by_tenant {
            let rows: Vec<(String, i64)> = fetch_in(
                conn,
                "SELECT subject, rank FROM subjects WHERE ",
                subjects,
                |qb| {
                    qb.push("tenant_id = ").push_bind(*tenant).push(" AND subject");
                },
            )
            .await?;
            for (subject, rank) in rows {
                ranks.insert((tenant, subject), rank);
            }
        }

        // New callbacks, in order: an event is emitted when it has no subject or moves its
        // subject to a later state than any before it.
        let mut advanced: CommonHashSet<(&str, String)> = CommonHashSet::new();
        let mut emitted: Vec<&crate::event::NewEvent> = Vec::new();
        let mut dedup_rows: Vec<(&IngestItem, &str, Option<&str>, i64)> = Vec::new();
        for &i in &fresh {
            let item = &items[i];
            let IngestKind::Accepted { dedup_key, status, event, ignored_reason, body } = &item.kind else { continue };
            let mut reason = *ignored_reason;
            let mut event_id = None;
            if let Some(ev) = event {
                let advances = match &ev.subject {
                    None => true,
                    Some(subject) => {
                        let key = (item.tenant_id.as_str(), subject.key());
                        let rank = ev.event_type.rank();
                        if ranks.get(&key).is_some_and(|&r| r >= rank) {
                            false
                        } else {
                            ranks.insert(key.clone(), rank);
                            advanced.insert(key);
                            true
                        }
                    }
                };
                if advances {
                    emitted.push(ev);
                    event_id = Some(ev.event.id.as_str());
                } else {
                    // Recorded, not emitted: the call or payment already reached this state or
                    // a later one. Duplicates of this callback answer without an event id too.
                    reason = Some("superseded");
                }
            }
            dedup_rows.push((item, dedup_key, event_id, *status as i64));
            results[i] = Some(IngestResult::New { event_id: event_id.map(str::to_owned), status: *status });
            inbound[i] = Some(InboundRow {
                item,
                outcome: "accepted",
                reason,
                event_id: event_id.map(str::to_owned),
                dedup_key: Some(dedup_key),
                body: Some(body),
            });
        }
        for &(i, of) in &repeats {
            let item = &items[i];
            let IngestKind::Accepted { dedup_key, .. } = &item.kind else { continue };
            let (event_id, status) = match &results[of] {
                Some(IngestResult::New { event_id, status } | IngestResult::Duplicate { event_id, status }) => {
                    (event_id.clone(), *status)
                }
                _ => (None, 0),
            };
            results[i] = Some(IngestResult::Duplicate { event_id: event_id.clone(), status });
            inbound[i] = Some(InboundRow {
                item,
                outcome: "duplicate",
                reason: None,
                event_id,
                dedup_key: Some(dedup_key),
                body: None,
            });
        }

        // The writes: a statement per table for the whole batch. The keys were looked up under
        // the tenants' locks (PostgreSQL) or the one writer (SQLite), so none can have been
        // stored since; a plain INSERT makes any other writer an error, never a second event.
        if !dedup_rows.is_empty() {
            execute_values(
                conn,
                "INSERT INTO dedup_keys (tenant_id, provider, key, event_id, status, created_at) ",
                "",
                6,
                &dedup_rows,
                |b, (item, key, event_id, status)| {
                    b.push_bind(item.tenant_id.as_str())
                        .push_bind(item.provider)
                        .push_bind(*key)
                        .push_bind(*event_id)
                        .push_bind(*status)
                        .push_bind(now);
                },
            )
            .await?;
        }
        if !advanced.is_empty() {
            let rows: Vec<(&str, &str, i64)> =
                advanced.iter().map(|k| (k.0, k.1.as_str(), ranks[k])).collect();
            execute_values(
                conn,
                "INSERT INTO subjects (tenant_id, subject, rank, updated_at) ",
                " ON CONFLICT (tenant_id, subject) DO UPDATE SET rank = excluded.rank, updated_at = excluded.updated_at \
                 WHERE subjects.rank < excluded.rank",
                4,
                &rows,
                |b, (tenant, subject, rank)| {
                    b.push_bind(*tenant).push_bind(*subject).push_bind(*rank).push_bind(now);
                },
            )
            .await?;
        }
        let mut out = IngestBatchResult::default();
        self.insert_events_in_tx(conn, &emitted, now, &mut out.jobs, held).await?;
        let inbound: Vec<InboundRow<'_>> = inbound.into_iter().flatten().collect();
        Self::insert_inbound(conn, &inbound).await?;
        out.results = results.into_iter().map(|r| r.unwrap_or(IngestResult::Rejected)).collect();
        Ok(out)
    }

    /// Inserts events and one pending delivery per matching enabled subscription of each
    /// (unleased for the `held` subscriptions).
    async fn insert_events_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        events: &[&crate::event::NewEvent],
        now: i64,
        jobs: &mut Vec<Job>,
        held: &CommonHashSet<String>,
    ) -> sqlx::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<(&crate::event::NewEvent, Option<String>, std::sync::Arc<str>)> =
            events.iter().map(|ev| (*ev, ev.subject.as_ref().map(|s| s.key()), ev.body().into())).collect();
        execute_values(
            conn,
            "INSERT INTO events (id, tenant_id, type, subject, body, created_at) ",
            "",
            6,
            &rows,
            |b, (ev, subject, body)| {
                b.push_bind(ev.event.id.as_str())
                    .push_bind(ev.event.tenant_id.as_str())
                    .push_bind(ev.event_type.as_str())
                    .push_bind(subject.as_deref())
                    .push_bind(&**body)
                    .push_bind(now);
            },
        )
        .await?;
        let mut subs: CommonHashMap<&str, Vec<(String, Vec<String>)>> = CommonHashMap::new();
        let mut targets = Vec::with_capacity(rows.len());
        for (ev, subject, body) in &rows {
            let tenant = ev.event.tenant_id.as_str();
            if !subs.contains_key(tenant) {
                subs.insert(tenant, Self::subscriptions_of(conn, tenant).await?);
            }
            let to: Vec<String> = subs[tenant]
                .iter()
                .filter(|(_, filters)| filters.iter().any(|f| filter_matches(f, ev.event_type.as_str())))
                .map(|(id, _)| id.clone())
                .collect();
            let stored = StoredEventRef {
                id: &ev.event.id,
                tenant,
                event_type: ev.event_type.as_str(),
                ordering_key: subject.as_deref().unwrap_or(&ev.event.id),
                chained: subject.is_some(),
                body: body.clone(),
            };
            targets.push((stored, to));
        }
        self.insert_deliveries_in_tx(conn, &targets, now, jobs, held).await?;
        Ok(())
    }

    /// One pending delivery per (event, subscription); returns their ids. A delivery at the
    /// head of its chain is leased to this instance and returned as a job to send at once; one
    /// behind an earlier pending delivery of the same call or payment (stored, or earlier in
    /// `targets`) waits, unleased, for that one to finish; one to a `held` subscription (its
    /// backlog is in the database) is left unleased for the poller to claim in order.
    async fn insert_deliveries_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        targets: &[(StoredEventRef<'_>, Vec<String>)],
        now: i64,
        jobs: &mut Vec<Job>,
        held: &CommonHashSet<String>,
    ) -> sqlx::Result<Vec<String>> {
        let chains: Vec<(&str, &str)> = targets
            .iter()
            .filter(|(ev, _)| ev.chained)
            .flat_map(|(ev, to)| to.iter().map(|sub| (sub.as_str(), ev.ordering_key)))
            .collect();
        let mut pending: CommonHashSet<(String, String)> = pending_on_chains::<(String, String)>(
            conn,
            "SELECT DISTINCT d.subscription_id, d.ordering_key FROM deliveries d WHERE d.status = 'pending' AND ",
            &chains,
        )
        .await?
        .into_iter()
        .collect();
        let mut rows: Vec<(String, &StoredEventRef<'_>, &str, bool)> = Vec::new();
        for (ev, to) in targets {
            for sub in to {
                let blocked = ev.chained && !pending.insert((sub.clone(), ev.ordering_key.to_owned()));
                let leased = !blocked && !held.contains(sub);
                let id = crate::event::prefixed_id("dlv_");
                if leased {
                    jobs.push(Job {
                        delivery_id: id.clone(),
                        event_id: ev.id.to_owned(),
                        tenant_id: ev.tenant.to_owned(),
                        subscription_id: sub.clone(),
                        ordering_key: ev.ordering_key.to_owned(),
                        attempt: 1,
                        body: ev.body.clone(),
                        event_type: ev.event_type.to_owned(),
                    });
                }
                rows.push((id, ev, sub, leased));
            }
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let lease_until = now + self.lease_ms;
        execute_values(
            conn,
            "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, ordering_key, status, attempts, \
             next_attempt_at, locked_until, locked_by, created_at, updated_at) ",
            "",
            10,
            &rows,
            |b, (id, ev, sub, leased)| {
                let (locked_until, locked_by) =
                    if *leased { (Some(lease_until), Some(self.instance_id.as_str())) } else { (None, None) };
                b.push_bind(id.as_str())
                    .push_bind(ev.tenant)
                    .push_bind(ev.id)
                    .push_bind(*sub)
                    .push_bind(ev.ordering_key)
                    .push("'pending'")
                    .push("0")
                    .push_bind(now)
                    .push_bind(locked_until)
                    .push_bind(locked_by)
                    .push_bind(now)
                    .push_bind(now);
            },
        )
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

/// What delivery creation needs of a stored event.
struct StoredEventRef<'a> {
    id: &'a str,
    tenant: &'a str,
    event_type: &'a str,
    ordering_key: &'a str,
    /// Does it belong to a call or payment (so ordering applies)?
    chained: bool,
    body: std::sync::Arc<str>,
}

#[async_trait::async_trait]
impl crate::store::Store for Backend {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn gauges(&self) -> StoreResult<(i64, i64)> {
        let row: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'), \
                    (SELECT COUNT(*) FROM subscriptions WHERE NOT enabled)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(row)
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let (v,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(v)
    }

    async fn create_tenant(&self, t: &Tenant, api_key_hash: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query("INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(api_key_hash)
            .bind(t.created_at)
            .execute(&mut *tx)
            .await;
        match res {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict("tenant")),
            other => other?,
        };
        tx.commit().await?;
        Ok(())
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|(id, name, created_at)| Tenant { id, name, created_at }))
    }

    async fn tenant_by_key_hash(&self, hash: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM tenants WHERE api_key_hash = $1")
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.0))
    }

    async fn put_provider_config(&self, tenant: &str, provider: &str, sealed: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO provider_configs (tenant_id, provider, config, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, provider) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(provider)
        .bind(sealed)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_provider_config(&self, tenant: &str, provider: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT config FROM provider_configs WHERE tenant_id = $1 AND provider = $2")
                .bind(tenant)
                .bind(provider)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|r| r.0))
    }

    async fn ingest_batch_holding(
        &self,
        items: &[IngestItem],
        held: &std::collections::HashSet<String>,
    ) -> StoreResult<IngestBatchResult> {
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, items.iter().map(|i| i.tenant_id.as_str())).await?;
        let out = self.ingest_in_tx(&mut tx, items, held).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_events(&self, tenant: &str, event_type: Option<&str>, page: Page) -> StoreResult<Vec<StoredEvent>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, body FROM events WHERE tenant_id = $1 AND seq > $2 AND ($3 IS NULL OR type = $3) \
             ORDER BY seq LIMIT $4",
        )
        .bind(tenant)
        .bind(page.after.unwrap_or(0))
        .bind(event_type)
        .bind(page.limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|(seq, body)| StoredEvent { seq, body }).collect())
    }

    async fn get_event(&self, tenant: &str, id: &str) -> StoreResult<Option<StoredEvent>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, body FROM events WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|(seq, body)| StoredEvent { seq, body }))
    }

    async fn list_inbound(&self, tenant: &str, outcome: Option<&str>, page: Page) -> StoreResult<Vec<InboundEntry>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, String, String, String, String, Option<String>, Option<String>, Option<String>, i64)> =
            sqlx::query_as(
                "SELECT seq, id, provider, route, outcome, reason, remote_addr, event_id, received_at FROM inbound_log \
                 WHERE tenant_id = $1 AND seq < $2 AND ($3 IS NULL OR outcome = $3) ORDER BY seq DESC LIMIT $4",
            )
            .bind(tenant)
            .bind(page.after.unwrap_or(i64::MAX))
            .bind(outcome)
            .bind(page.limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, id, provider, route, outcome, reason, remote_addr, event_id, at)| InboundEntry {
                seq,
                id,
                provider,
                route,
                outcome,
                reason,
                remote_addr,
                event_id,
                received_at: crate::event::rfc3339_ms(crate::store::from_ms(at)),
            })
            .collect())
    }

    async fn purge(&self, before_ms: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let mut n = 0;
        for sql in [
            "DELETE FROM attempts WHERE created_at < $1",
            "DELETE FROM deliveries WHERE created_at < $1 AND status <> 'pending'",
            "DELETE FROM events WHERE created_at < $1 AND id NOT IN (SELECT event_id FROM deliveries)",
            "DELETE FROM inbound_log WHERE received_at < $1",
            "DELETE FROM dedup_keys WHERE created_at < $1",
            "DELETE FROM subjects WHERE updated_at < $1",
        ] {
            n += sqlx::query(sql).bind(before_ms).execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }
}
