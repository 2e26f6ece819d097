// Statements and logic shared by every SQL backend. This file is not a module: each backend
// module `include!`s it after defining `type Db` (the sqlx database) and a `Backend` struct with
// `read`/`write` pools, `instance_id`, `lease_ms` and an inherent `begin_write()`.
// Placeholders are `$N`, which both SQLite and PostgreSQL accept.

use std::collections::HashMap as CommonHashMap;

use crate::event::filter_matches;
use crate::store::{
    now_ms, IngestBatchResult, Job, IngestItem, IngestKind, IngestResult,
    InboundEntry, Page, StoreError, StoreResult, StoredEvent, Tenant,
};

const INSERT_INBOUND: &str = "INSERT INTO inbound_log (id, tenant_id, provider, route, outcome, reason, \
     remote_addr, event_id, dedup_key, body, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Backend {
    async fn insert_inbound(
        conn: &mut <Db as sqlx::Database>::Connection,
        item: &IngestItem,
        outcome: &str,
        reason: Option<&str>,
        event_id: Option<&str>,
        dedup_key: Option<&str>,
        body: Option<&[u8]>,
    ) -> sqlx::Result<()> {
        sqlx::query(INSERT_INBOUND)
            .bind(crate::event::prefixed_id("in_"))
            .bind(&item.tenant_id)
            .bind(item.provider)
            .bind(item.route)
            .bind(outcome)
            .bind(reason)
            .bind(item.remote_addr.as_deref())
            .bind(event_id)
            .bind(dedup_key)
            .bind(body)
            .bind(item.received_at)
            .execute(&mut *conn)
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

    async fn ingest_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        items: &[IngestItem],
    ) -> sqlx::Result<IngestBatchResult> {
        let mut out = IngestBatchResult::default();
        let mut subs_cache: CommonHashMap<String, Vec<(String, Vec<String>)>> = CommonHashMap::new();
        let now = now_ms();
        for item in items {
            let (dedup_key, status, event, ignored_reason, body) = match &item.kind {
                IngestKind::Rejected { reason } => {
                    Self::insert_inbound(conn, item, "rejected", Some(reason), None, None, None).await?;
                    out.results.push(IngestResult::Rejected);
                    continue;
                }
                IngestKind::Accepted { dedup_key, status, event, ignored_reason, body } => {
                    (dedup_key, *status, event, *ignored_reason, body)
                }
            };
            let event_id = event.as_ref().map(|e| e.event.id.as_str());
            let inserted = sqlx::query(
                "INSERT INTO dedup_keys (tenant_id, provider, key, event_id, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&item.tenant_id)
            .bind(item.provider)
            .bind(dedup_key)
            .bind(event_id)
            .bind(status as i64)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                let (first_event, first_status): (Option<String>, i64) = sqlx::query_as(
                    "SELECT event_id, status FROM dedup_keys WHERE tenant_id = $1 AND provider = $2 AND key = $3",
                )
                .bind(&item.tenant_id)
                .bind(item.provider)
                .bind(dedup_key)
                .fetch_one(&mut *conn)
                .await?;
                Self::insert_inbound(conn, item, "duplicate", None, first_event.as_deref(), Some(dedup_key), None)
                    .await?;
                out.results.push(IngestResult::Duplicate {
                    event_id: first_event,
                    status: first_status as u16,
                });
                continue;
            }
            let mut reason = ignored_reason;
            let mut emitted = None;
            if let Some(ev) = event {
                let advances = match &ev.subject {
                    None => true,
                    Some(subject) => {
                        sqlx::query(
                            "INSERT INTO subjects (tenant_id, subject, rank, updated_at) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (tenant_id, subject) DO UPDATE SET rank = excluded.rank, updated_at = excluded.updated_at \
                             WHERE subjects.rank < excluded.rank",
                        )
                        .bind(&item.tenant_id)
                        .bind(subject.key())
                        .bind(ev.event_type.rank())
                        .bind(now)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                            == 1
                    }
                };
                if advances {
                    self.insert_event_in_tx(conn, ev, now, &mut subs_cache, &mut out.jobs)
                        .await?;
                    emitted = Some(ev.event.id.clone());
                } else {
                    // Recorded, not emitted: the call or payment already reached this state or a
                    // later one. Duplicates of this callback answer without an event id too.
                    sqlx::query("UPDATE dedup_keys SET event_id = NULL WHERE tenant_id = $1 AND provider = $2 AND key = $3")
                        .bind(&item.tenant_id)
                        .bind(item.provider)
                        .bind(dedup_key)
                        .execute(&mut *conn)
                        .await?;
                    reason = Some("superseded");
                }
            }
            Self::insert_inbound(conn, item, "accepted", reason, emitted.as_deref(), Some(dedup_key), Some(body))
                .await?;
            out.results.push(IngestResult::New { event_id: emitted, status });
        }
        Ok(out)
    }

    /// Inserts an event and one pending delivery per matching enabled subscription.
    async fn insert_event_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        ev: &crate::event::NewEvent,
        now: i64,
        subs_cache: &mut CommonHashMap<String, Vec<(String, Vec<String>)>>,
        jobs: &mut Vec<Job>,
    ) -> sqlx::Result<()> {
        let tenant = &ev.event.tenant_id;
        let subject = ev.subject.as_ref().map(|s| s.key());
        let body = ev.body();
        sqlx::query("INSERT INTO events (id, tenant_id, type, subject, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&ev.event.id)
            .bind(tenant)
            .bind(ev.event_type.as_str())
            .bind(subject.as_deref())
            .bind(&body)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        if !subs_cache.contains_key(tenant) {
            let subs = Self::subscriptions_of(conn, tenant).await?;
            subs_cache.insert(tenant.clone(), subs);
        }
        let targets: Vec<String> = subs_cache[tenant]
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
            body: body.into(),
        };
        self.insert_deliveries_in_tx(conn, &stored, &targets, now, jobs).await
    }

    /// One pending delivery per subscription. A delivery at the head of its chain is leased to
    /// this instance and returned as a job to send at once; one behind an earlier pending
    /// delivery of the same call or payment waits, unleased, for that one to finish.
    async fn insert_deliveries_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        ev: &StoredEventRef<'_>,
        subscriptions: &[String],
        now: i64,
        jobs: &mut Vec<Job>,
    ) -> sqlx::Result<()> {
        for sub_id in subscriptions {
            let blocked = ev.chained
                && sqlx::query_as::<_, (i64,)>(
                    "SELECT CAST(1 AS BIGINT) FROM deliveries WHERE subscription_id = $1 AND ordering_key = $2 AND status = 'pending' LIMIT 1",
                )
                .bind(sub_id)
                .bind(ev.ordering_key)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            let id = crate::event::prefixed_id("dlv_");
            let (locked_until, locked_by) = if blocked {
                (None, None)
            } else {
                (Some(now + self.lease_ms), Some(self.instance_id.as_str()))
            };
            sqlx::query(
                "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, ordering_key, status, attempts, \
                 next_attempt_at, locked_until, locked_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8, $6, $6)",
            )
            .bind(&id)
            .bind(ev.tenant)
            .bind(ev.id)
            .bind(sub_id)
            .bind(ev.ordering_key)
            .bind(now)
            .bind(locked_until)
            .bind(locked_by)
            .execute(&mut *conn)
            .await?;
            if !blocked {
                jobs.push(Job {
                    delivery_id: id,
                    event_id: ev.id.to_owned(),
                    tenant_id: ev.tenant.to_owned(),
                    subscription_id: sub_id.clone(),
                    ordering_key: ev.ordering_key.to_owned(),
                    attempt: 1,
                    body: ev.body.clone(),
                    event_type: ev.event_type.to_owned(),
                });
            }
        }
        Ok(())
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

    async fn ingest_batch(&self, items: &[IngestItem]) -> StoreResult<IngestBatchResult> {
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, items.iter().map(|i| i.tenant_id.as_str())).await?;
        let out = self.ingest_in_tx(&mut tx, items).await?;
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
