// The delivery queue and subscriptions, shared by every SQL backend (included like `common.rs`;
// the backend also defines `CLAIM_SUFFIX`, the row-locking clause of the claim query, and
// `CLAIM_LOCKS_ROWS`, whether the claim's search must run inside the write transaction).

use crate::store::{AttemptRecord, AttemptRow, DeliveryRow, Finish, SubscriptionRow};

type SubTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    i64,
    i64,
    i64,
);

const SUB_COLUMNS: &str = "id, tenant_id, url, event_types, description, enabled, secret, old_secret, \
     old_secret_expires_at, failed_streak, disabled_reason, created_at, updated_at, seq";

fn sub_of(t: SubTuple) -> (i64, SubscriptionRow) {
    (
        t.13,
        SubscriptionRow {
            id: t.0,
            tenant_id: t.1,
            url: t.2,
            event_types: serde_json::from_str(&t.3).unwrap_or_default(),
            description: t.4,
            enabled: t.5,
            secret: t.6,
            old_secret: t.7,
            old_secret_expires_at: t.8,
            failed_streak: t.9,
            disabled_reason: t.10,
            created_at: t.11,
            updated_at: t.12,
        },
    )
}

type JobTuple = (String, String, String, String, String, i64, String, String);
/// subscription_id, ordering_key, id, event_id, tenant_id, attempts, next_attempt_at,
/// locked_until, body, type.
type ChainHeadRow = (String, String, String, String, String, i64, i64, Option<i64>, String, String);

/// The claim of due deliveries: heads of their chains, due (`$1` = now), free, at most `$2`,
/// none of the `skip` subscriptions bound after them (those whose queue in this instance is full:
/// their backlog must not fill every claim and starve the others).
fn claim_sql(skip: usize) -> String {
    let skip = if skip == 0 {
        String::new()
    } else {
        let list: Vec<String> = (3..3 + skip).map(|n| format!("${n}")).collect();
        format!("AND d.subscription_id NOT IN ({}) ", list.join(", "))
    };
    format!(
        "SELECT d.id, d.event_id, d.tenant_id, d.subscription_id, d.ordering_key, d.attempts, e.body, e.type \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND (d.locked_until IS NULL OR d.locked_until < $1) \
         AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.subscription_id = d.subscription_id \
         AND p.ordering_key = d.ordering_key AND p.status = 'pending' AND p.seq < d.seq) {skip}\
         ORDER BY d.next_attempt_at LIMIT $2 {CLAIM_SUFFIX}"
    )
}

fn job_of(t: JobTuple) -> Job {
    Job {
        delivery_id: t.0,
        event_id: t.1,
        tenant_id: t.2,
        subscription_id: t.3,
        ordering_key: t.4,
        attempt: t.5 as u32 + 1,
        body: t.6.into(),
        event_type: t.7,
    }
}

impl Backend {
    /// Leases to this instance those of `ids` that nobody holds (another instance may have
    /// claimed one since it was read), and returns them.
    async fn lease_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        ids: &[&str],
        now: i64,
    ) -> sqlx::Result<CommonHashSet<String>> {
        let mut leased = CommonHashSet::new();
        for ids in ids.chunks(MAX_BINDS) {
            let mut qb = sqlx::QueryBuilder::<Db>::new("UPDATE deliveries SET locked_until = ");
            qb.push_bind(now + self.lease_ms).push(", locked_by = ").push_bind(&self.instance_id);
            qb.push(" WHERE status = 'pending' AND (locked_until IS NULL OR locked_until < ").push_bind(now).push(") AND ");
            push_in(&mut qb, "id", ids);
            qb.push(" RETURNING id");
            let rows: Vec<(String,)> = qb.build_query_as().persistent(false).fetch_all(&mut *conn).await?;
            leased.extend(rows.into_iter().map(|r| r.0));
        }
        Ok(leased)
    }

    /// Leases the next delivery of each chain (subscription, ordering key) that is due and free.
    async fn claim_chains_next(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        chains: &CommonHashSet<(&str, &str)>,
        now: i64,
        jobs: &mut Vec<Job>,
    ) -> sqlx::Result<()> {
        if chains.is_empty() {
            return Ok(());
        }
        let rows: Vec<ChainHeadRow> = pending_on_chains(
            conn,
            "SELECT d.subscription_id, d.ordering_key, d.id, d.event_id, d.tenant_id, d.attempts, \
             d.next_attempt_at, d.locked_until, e.body, e.type FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.status = 'pending' AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.subscription_id = \
             d.subscription_id AND p.ordering_key = d.ordering_key AND p.status = 'pending' AND p.seq < d.seq) AND ",
            &chains.iter().copied().collect::<Vec<_>>(),
        )
        .await?;
        // Each row is the head of its chain (no earlier pending delivery on it).
        let free: Vec<ChainHeadRow> = rows
            .into_iter()
            .filter(|h| chains.contains(&(h.0.as_str(), h.1.as_str())))
            .filter(|h| h.6 <= now && h.7.is_none_or(|l| l < now))
            .collect();
        let ids: Vec<&str> = free.iter().map(|h| h.2.as_str()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let leased = self.lease_in_tx(conn, &ids, now).await?;
        jobs.extend(free.into_iter().filter(|h| leased.contains(&h.2)).map(
            |(subscription_id, ordering_key, delivery_id, event_id, tenant_id, attempts, _, _, body, event_type)| Job {
                delivery_id,
                event_id,
                tenant_id,
                subscription_id,
                ordering_key,
                attempt: attempts as u32 + 1,
                body: body.into(),
                event_type,
            },
        ));
        Ok(())
    }

    /// Disables a subscription, fails its pending deliveries, and emits `subscription.disabled`
    /// to the tenant's other subscriptions.
    async fn disable_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        subscription: &str,
        reason: &str,
        now: i64,
        jobs: &mut Vec<Job>,
    ) -> sqlx::Result<()> {
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE subscriptions SET enabled = FALSE, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND enabled = TRUE RETURNING tenant_id, url",
        )
        .bind(subscription)
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((tenant, url)) = row else { return Ok(()) };
        Self::fail_pending_in_tx(conn, subscription, "subscription disabled", now).await?;
        let at = crate::store::from_ms(now);
        let ev = crate::event::NewEvent {
            event: crate::event::Event {
                id: crate::event::new_event_id(),
                event_type: crate::event::EventType::SubscriptionDisabled.as_str().to_owned(),
                timestamp: crate::event::rfc3339(at),
                tenant_id: tenant,
                data: serde_json::json!({"subscription_id": subscription, "url": url, "reason": reason}),
                source: crate::event::Source {
                    provider: "hookgate".to_owned(),
                    provider_event_id: None,
                    received_at: crate::event::rfc3339(at),
                },
            },
            event_type: crate::event::EventType::SubscriptionDisabled,
            subject: None,
        };
        self.insert_events_in_tx(conn, &[&ev], now, jobs, &CommonHashSet::new()).await
    }

    async fn fail_pending_in_tx(
        conn: &mut <Db as sqlx::Database>::Connection,
        subscription: &str,
        why: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'failed', last_error = $2, locked_until = NULL, locked_by = NULL, updated_at = $3 \
             WHERE subscription_id = $1 AND status = 'pending'",
        )
        .bind(subscription)
        .bind(why)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Records a batch of attempts: the attempt log, each delivery's new state, the
    /// subscriptions' failure streaks (disabling one that reached the limit), and the next
    /// delivery of every chain that moved on.
    async fn record_in_tx(
        &self,
        conn: &mut <Db as sqlx::Database>::Connection,
        records: &[AttemptRecord],
        now: i64,
        jobs: &mut Vec<Job>,
    ) -> sqlx::Result<()> {
        let attempted: Vec<(String, &AttemptRecord)> = records
            .iter()
            .filter(|r| r.finish != Finish::Dropped)
            .map(|r| (crate::event::prefixed_id("att_"), r))
            .collect();
        if !attempted.is_empty() {
            execute_values(
                conn,
                "INSERT INTO attempts (id, delivery_id, tenant_id, event_id, subscription_id, attempt, status_code, \
                 error, response_body, latency_ms, created_at) ",
                "",
                11,
                &attempted,
                |b, (id, r)| {
                    b.push_bind(id.as_str())
                        .push_bind(r.job.delivery_id.as_str())
                        .push_bind(r.job.tenant_id.as_str())
                        .push_bind(r.job.event_id.as_str())
                        .push_bind(r.job.subscription_id.as_str())
                        .push_bind(r.job.attempt as i64)
                        .push_bind(r.status_code.map(i64::from))
                        .push_bind(r.error.as_deref())
                        .push_bind(r.response_body.as_deref())
                        .push_bind(r.latency_ms)
                        .push_bind(r.at);
                },
            )
            .await?;
        }

        // Each delivery's new state. Should one appear twice, the first record that ends it wins
        // (as recorded one at a time: a delivery no longer pending is not changed again).
        let mut last: CommonHashMap<&str, &AttemptRecord> = CommonHashMap::new();
        for r in records {
            last.entry(r.job.delivery_id.as_str())
                .and_modify(|e| {
                    if matches!(e.finish, Finish::Retry { .. }) {
                        *e = r;
                    }
                })
                .or_insert(r);
        }
        let updates: Vec<&AttemptRecord> = last.into_values().collect();
        // (`now` is an integer: written into the statement, not bound.)
        execute_values(
            conn,
            "WITH v (id, status, attempts, next_at, code, error) AS (",
            &format!(
                ") UPDATE deliveries SET status = v.status, attempts = v.attempts, \
                 next_attempt_at = COALESCE(v.next_at, deliveries.next_attempt_at), locked_until = NULL, \
                 locked_by = NULL, last_status_code = v.code, last_error = v.error, updated_at = {now} \
                 FROM v WHERE deliveries.id = v.id AND deliveries.status = 'pending'"
            ),
            6,
            &updates,
            |b, r| {
                let (status, next_at) = match r.finish {
                    Finish::Succeeded => ("succeeded", None),
                    Finish::Failed | Finish::Gone | Finish::Dropped => ("failed", None),
                    Finish::Retry { next_at } => ("pending", Some(next_at)),
                };
                let attempts = r.job.attempt as i64 - i64::from(r.finish == Finish::Dropped);
                b.push_bind(r.job.delivery_id.as_str())
                    .push_bind(status)
                    .push_bind(attempts)
                    .push_bind(next_at)
                    .push_bind(r.status_code.map(i64::from))
                    .push_bind(r.error.as_deref());
            },
        )
        .await?;

        // Failure streaks. A subscription with a failure in the batch is walked in order; the
        // others only had successes (or retries) and are reset together.
        let troubled: CommonHashSet<&str> = records
            .iter()
            .filter(|r| matches!(r.finish, Finish::Failed | Finish::Gone))
            .map(|r| r.job.subscription_id.as_str())
            .collect();
        let mut clean: Vec<&str> = records
            .iter()
            .filter(|r| r.finish == Finish::Succeeded && !troubled.contains(r.job.subscription_id.as_str()))
            .map(|r| r.job.subscription_id.as_str())
            .collect();
        clean.sort_unstable();
        clean.dedup();
        for ids in clean.chunks(MAX_BINDS) {
            let mut qb = sqlx::QueryBuilder::<Db>::new("UPDATE subscriptions SET failed_streak = 0 WHERE failed_streak <> 0 AND ");
            push_in(&mut qb, "id", ids);
            qb.build().persistent(false).execute(&mut *conn).await?;
        }
        for r in records.iter().filter(|r| troubled.contains(r.job.subscription_id.as_str())) {
            let sub = r.job.subscription_id.as_str();
            match r.finish {
                Finish::Succeeded => {
                    sqlx::query("UPDATE subscriptions SET failed_streak = 0 WHERE id = $1 AND failed_streak <> 0")
                        .bind(sub)
                        .execute(&mut *conn)
                        .await?;
                }
                Finish::Failed => {
                    let streak: Option<(i64,)> = sqlx::query_as(
                        "UPDATE subscriptions SET failed_streak = failed_streak + 1 WHERE id = $1 RETURNING failed_streak",
                    )
                    .bind(sub)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if streak.is_some_and(|(n,)| n >= crate::store::DISABLE_AFTER_FAILURES) {
                        let reason = format!("the last {} deliveries failed", crate::store::DISABLE_AFTER_FAILURES);
                        self.disable_in_tx(conn, sub, &reason, now, jobs).await?;
                    }
                }
                Finish::Gone => {
                    self.disable_in_tx(conn, sub, "the receiver answered 410 Gone", now, jobs).await?;
                }
                Finish::Retry { .. } | Finish::Dropped => {}
            }
        }

        // A delivery that finished for good lets the next one of its chain go.
        let chains: CommonHashSet<(&str, &str)> = records
            .iter()
            .filter(|r| matches!(r.finish, Finish::Succeeded | Finish::Failed))
            .map(|r| (r.job.subscription_id.as_str(), r.job.ordering_key.as_str()))
            .collect();
        self.claim_chains_next(conn, &chains, now, jobs).await
    }
}

#[async_trait::async_trait]
impl crate::store::DeliveryStore for Backend {
    fn watch_pending(
        &self,
        wake: std::sync::Arc<dyn Fn() + Send + Sync>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        self.listen(wake, stop);
    }

    async fn create_subscription(&self, s: &SubscriptionRow) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO subscriptions (id, tenant_id, url, event_types, description, enabled, secret, old_secret, \
             old_secret_expires_at, failed_streak, disabled_reason, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&s.id)
        .bind(&s.tenant_id)
        .bind(&s.url)
        .bind(serde_json::to_string(&s.event_types).unwrap_or_default())
        .bind(s.description.as_deref())
        .bind(s.enabled)
        .bind(&s.secret)
        .bind(s.old_secret.as_deref())
        .bind(s.old_secret_expires_at)
        .bind(s.failed_streak)
        .bind(s.disabled_reason.as_deref())
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_subscription(&self, tenant: &str, id: &str) -> StoreResult<Option<SubscriptionRow>> {
        let row: Option<SubTuple> =
            sqlx::query_as(&format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE tenant_id = $1 AND id = $2"))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|t| sub_of(t).1))
    }

    async fn subscription_by_id(&self, id: &str) -> StoreResult<Option<SubscriptionRow>> {
        let row: Option<SubTuple> = sqlx::query_as(&format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|t| sub_of(t).1))
    }

    async fn list_subscriptions(&self, tenant: &str, page: Page) -> StoreResult<Vec<(i64, SubscriptionRow)>> {
        let rows: Vec<SubTuple> = sqlx::query_as(&format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(tenant)
        .bind(page.after.unwrap_or(0))
        .bind(page.limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(sub_of).collect())
    }

    async fn update_subscription(&self, s: &SubscriptionRow) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Same lock order as recording attempts (tenant, then rows), so the two never deadlock.
        Self::lock_tenants(&mut tx, [s.tenant_id.as_str()]).await?;
        let n = sqlx::query(
            "UPDATE subscriptions SET url = $3, event_types = $4, description = $5, enabled = $6, secret = $7, \
             old_secret = $8, old_secret_expires_at = $9, failed_streak = $10, disabled_reason = $11, updated_at = $12 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&s.tenant_id)
        .bind(&s.id)
        .bind(&s.url)
        .bind(serde_json::to_string(&s.event_types).unwrap_or_default())
        .bind(s.description.as_deref())
        .bind(s.enabled)
        .bind(&s.secret)
        .bind(s.old_secret.as_deref())
        .bind(s.old_secret_expires_at)
        .bind(s.failed_streak)
        .bind(s.disabled_reason.as_deref())
        .bind(s.updated_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("subscription"));
        }
        if !s.enabled {
            Self::fail_pending_in_tx(&mut tx, &s.id, "subscription disabled", now_ms()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_subscription(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, [tenant]).await?;
        let n = sqlx::query("DELETE FROM subscriptions WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            Self::fail_pending_in_tx(&mut tx, id, "subscription deleted", now_ms()).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn claim_due(&self, limit: i64, skip_subscriptions: &[String]) -> StoreResult<Vec<Job>> {
        let now = now_ms();
        // (Past the parameter limit, the rest of the busy subscriptions are filtered here.)
        let skip = &skip_subscriptions[..skip_subscriptions.len().min(MAX_BINDS)];
        let sql = claim_sql(skip.len());
        let query = || {
            let mut query = sqlx::query_as(&sql).bind(now).bind(limit);
            for s in skip {
                query = query.bind(s);
            }
            query.persistent(skip.is_empty())
        };
        // Finding due deliveries may read far through a large backlog. Where the claim locks its
        // rows (PostgreSQL) that happens in the write transaction; elsewhere (SQLite, one
        // writer) it happens outside, so the writer is never held by the search: the lease
        // below only takes rows still pending and free.
        let (mut tx, rows): (_, Vec<JobTuple>) = if CLAIM_LOCKS_ROWS {
            let mut tx = self.begin_write().await?;
            let rows = query().fetch_all(&mut *tx).await?;
            (tx, rows)
        } else {
            let rows = query().fetch_all(&self.read).await?;
            (self.begin_write().await?, rows)
        };
        let rows: Vec<JobTuple> = rows.into_iter().filter(|r| !skip_subscriptions.contains(&r.3)).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let leased = self.lease_in_tx(&mut tx, &ids, now).await?;
        let jobs = rows.into_iter().filter(|r| leased.contains(&r.0)).map(job_of).collect();
        tx.commit().await?;
        Ok(jobs)
    }

    async fn release_own_leases(&self) -> StoreResult<()> {
        if RELEASE_LEASES_ON_START {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE deliveries SET locked_until = NULL, locked_by = NULL WHERE status = 'pending' AND locked_until IS NOT NULL")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    async fn release_leases(&self, delivery_ids: &[String]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for ids in delivery_ids.chunks(MAX_BINDS) {
            let mut qb = sqlx::QueryBuilder::<Db>::new("UPDATE deliveries SET locked_until = NULL, locked_by = NULL WHERE locked_by = ");
            qb.push_bind(&self.instance_id).push(" AND ");
            push_in(&mut qb, "id", ids);
            qb.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn renew_lease(&self, delivery_id: &str) -> StoreResult<bool> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE deliveries SET locked_until = $1, locked_by = $2 WHERE id = $3 AND status = 'pending' \
             AND (locked_by = $2 OR locked_until IS NULL OR locked_until < $4)",
        )
        .bind(now + self.lease_ms)
        .bind(&self.instance_id)
        .bind(delivery_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<Job>> {
        let now = now_ms();
        let mut jobs = Vec::new();
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, records.iter().map(|r| r.job.tenant_id.as_str())).await?;
        if !records.is_empty() {
            self.record_in_tx(&mut tx, records, now, &mut jobs).await?;
        }
        tx.commit().await?;
        Ok(jobs)
    }

    async fn redeliver(
        &self,
        tenant: &str,
        event_id: &str,
        subscription: Option<&str>,
    ) -> StoreResult<(Vec<Job>, Vec<String>)> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, [tenant]).await?;
        let ev: Option<(String, Option<String>, String)> =
            sqlx::query_as("SELECT type, subject, body FROM events WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((event_type, subject, body)) = ev else {
            return Err(StoreError::NotFound("event"));
        };
        let subs = Self::subscriptions_of(&mut tx, tenant).await?;
        let targets: Vec<String> = match subscription {
            Some(id) => match subs.iter().find(|(s, _)| s == id) {
                Some((s, _)) => vec![s.clone()],
                None => return Err(StoreError::NotFound("enabled subscription")),
            },
            None => subs
                .into_iter()
                .filter(|(_, f)| f.iter().any(|f| filter_matches(f, &event_type)))
                .map(|(s, _)| s)
                .collect(),
        };
        let stored = StoredEventRef {
            id: event_id,
            tenant,
            event_type: &event_type,
            ordering_key: subject.as_deref().unwrap_or(event_id),
            chained: subject.is_some(),
            body: body.into(),
        };
        let mut jobs = Vec::new();
        let ids = self
            .insert_deliveries_in_tx(&mut tx, &[(stored, targets)], now, &mut jobs, &CommonHashSet::new())
            .await?;
        tx.commit().await?;
        Ok((jobs, ids))
    }

    async fn insert_event_for(&self, ev: &crate::event::NewEvent, subscription: &str) -> StoreResult<Job> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, [ev.event.tenant_id.as_str()]).await?;
        let body = ev.body();
        sqlx::query("INSERT INTO events (id, tenant_id, type, subject, body, created_at) VALUES ($1, $2, $3, NULL, $4, $5)")
            .bind(&ev.event.id)
            .bind(&ev.event.tenant_id)
            .bind(ev.event_type.as_str())
            .bind(&body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let stored = StoredEventRef {
            id: &ev.event.id,
            tenant: &ev.event.tenant_id,
            event_type: ev.event_type.as_str(),
            ordering_key: &ev.event.id,
            chained: false,
            body: body.into(),
        };
        let mut jobs = Vec::new();
        let none = CommonHashSet::new();
        self.insert_deliveries_in_tx(&mut tx, &[(stored, vec![subscription.to_owned()])], now, &mut jobs, &none)
            .await?;
        tx.commit().await?;
        jobs.pop().ok_or(StoreError::NotFound("subscription"))
    }

    async fn recover(&self, tenant: &str, subscription: &str, since_ms: i64) -> StoreResult<u64> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        Self::lock_tenants(&mut tx, [tenant]).await?;
        let n = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $4, locked_until = NULL, \
             locked_by = NULL, updated_at = $4 WHERE tenant_id = $1 AND subscription_id = $2 AND status = 'failed' \
             AND updated_at >= $3",
        )
        .bind(tenant)
        .bind(subscription)
        .bind(since_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            Self::notify_pending(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        status: Option<&str>,
        subscription: Option<&str>,
        page: Page,
    ) -> StoreResult<Vec<DeliveryRow>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, String, String, String, String, i64, i64, Option<i64>, Option<String>, i64, i64)> =
            sqlx::query_as(
                "SELECT seq, id, event_id, subscription_id, status, attempts, next_attempt_at, last_status_code, \
                 last_error, created_at, updated_at FROM deliveries WHERE tenant_id = $1 AND seq < $2 \
                 AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR subscription_id = $4) ORDER BY seq DESC LIMIT $5",
            )
            .bind(tenant)
            .bind(page.after.unwrap_or(i64::MAX))
            .bind(status)
            .bind(subscription)
            .bind(page.limit)
            .fetch_all(&self.read)
            .await?;
        let t = |ms: i64| crate::event::rfc3339_ms(crate::store::from_ms(ms));
        Ok(rows
            .into_iter()
            .map(|r| DeliveryRow {
                seq: r.0,
                id: r.1,
                event_id: r.2,
                subscription_id: r.3,
                next_attempt_at: (r.4 == "pending").then(|| t(r.6)),
                status: r.4,
                attempts: r.5,
                last_status_code: r.7,
                last_error: r.8,
                created_at: t(r.9),
                updated_at: t(r.10),
            })
            .collect())
    }

    async fn list_attempts(&self, tenant: &str, event_id: &str) -> StoreResult<Vec<AttemptRow>> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, String, String, String, i64, Option<i64>, Option<String>, Option<String>, i64, i64)> =
            sqlx::query_as(
                "SELECT id, delivery_id, event_id, subscription_id, attempt, status_code, error, response_body, \
                 latency_ms, created_at FROM attempts WHERE tenant_id = $1 AND event_id = $2 ORDER BY seq",
            )
            .bind(tenant)
            .bind(event_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AttemptRow {
                id: r.0,
                delivery_id: r.1,
                event_id: r.2,
                subscription_id: r.3,
                attempt: r.4,
                status_code: r.5,
                error: r.6,
                response_body: r.7,
                latency_ms: r.8,
                created_at: crate::event::rfc3339_ms(crate::store::from_ms(r.9)),
            })
            .collect())
    }
}
