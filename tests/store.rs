//! The store's conformance suite: the domain operations behind the `Store` trait, exercised
//! directly on SQLite and (when HOOKGATE_TEST_POSTGRES_URL is set) on PostgreSQL, with the same
//! expectations for both.

mod common;

use std::collections::{BTreeMap, HashSet};

use hookgate::event::{prefixed_id, Event, EventType, NewEvent, Source, Subject};
use hookgate::store::{
    now_ms, AttemptRecord, DynStore, Finish, IngestItem, IngestKind, IngestResult, Job, Page,
    SubscriptionRow, Tenant,
};
use serde_json::json;

/// A fresh store of the current backend, with tenant `acme`; also a second handle on the same
/// database (another "instance").
async fn stores(dir: &tempfile::TempDir) -> (DynStore, DynStore) {
    let mut map = BTreeMap::new();
    map.insert(
        "database_url".to_owned(),
        common::backend::fresh_database_url(dir.path()).await,
    );
    let config = hookgate::config::Config::from_map(&map).unwrap();
    let a = hookgate::store::open(&config).await.unwrap();
    let b = hookgate::store::open(&config).await.unwrap();
    let t = Tenant {
        id: "acme".into(),
        name: "Acme".into(),
        created_at: now_ms(),
    };
    a.create_tenant(&t, "hash-acme").await.unwrap();
    (a, b)
}

/// A verified Twilio status callback for `call` reaching `ty`.
fn callback(key: &str, call: &str, ty: EventType) -> IngestItem {
    let event = Event {
        id: prefixed_id("evt_"),
        event_type: ty.as_str().to_owned(),
        timestamp: "2026-05-07T14:23:11Z".into(),
        tenant_id: "acme".into(),
        data: json!({"call_id": call}),
        source: Source {
            provider: "twilio".into(),
            provider_event_id: Some(key.into()),
            received_at: "2026-05-07T14:23:11Z".into(),
        },
    };
    IngestItem {
        tenant_id: "acme".into(),
        provider: "twilio",
        route: "twilio_status",
        received_at: now_ms(),
        remote_addr: Some("127.0.0.1".into()),
        kind: IngestKind::Accepted {
            dedup_key: key.into(),
            status: 204,
            event: Some(NewEvent {
                event,
                event_type: ty,
                subject: Some(Subject {
                    kind: "call",
                    id: format!("twilio:{call}"),
                }),
            }),
            ignored_reason: None,
            body: b"CallSid=x".to_vec(),
        },
    }
}

async fn subscribe(store: &DynStore) -> String {
    let id = prefixed_id("sub_");
    let now = now_ms();
    store
        .create_subscription(&SubscriptionRow {
            id: id.clone(),
            tenant_id: "acme".into(),
            url: "http://127.0.0.1:9/hook".into(),
            event_types: vec!["*".into()],
            description: None,
            enabled: true,
            secret: "plain:whsec_x".into(),
            old_secret: None,
            old_secret_expires_at: None,
            failed_streak: 0,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    id
}

fn finished(job: Job, finish: Finish) -> AttemptRecord {
    AttemptRecord {
        job,
        status_code: Some(503),
        error: None,
        response_body: None,
        latency_ms: 3,
        at: now_ms(),
        finish,
    }
}

const PAGE: Page = Page {
    after: None,
    limit: 1000,
};

crate::dual! {

    async fn ingest_deduplicates_within_and_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (store, other) = stores(&dir).await;
        let first = callback("CA1:completed", "CA1", EventType::CallCompleted);
        let again = callback("CA1:completed", "CA1", EventType::CallCompleted);
        let res = store.ingest_batch(&[first.clone(), again]).await.unwrap();
        let IngestResult::New { event_id: Some(id), status: 204 } = &res.results[0] else {
            panic!("first is new: {:?}", res.results);
        };
        assert_eq!(
            res.results[1],
            IngestResult::Duplicate { event_id: Some(id.clone()), status: 204 }
        );
        // Another instance sees the key too.
        let res = other.ingest_batch(&[callback("CA1:completed", "CA1", EventType::CallCompleted)]).await.unwrap();
        assert_eq!(res.results[0], IngestResult::Duplicate { event_id: Some(id.clone()), status: 204 });
        let events = store.list_events("acme", None, PAGE).await.unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].body.contains(id.as_str()));
        let log = store.list_inbound("acme", None, PAGE).await.unwrap();
        let outcomes: Vec<_> = log.iter().map(|e| e.outcome.as_str()).collect();
        assert_eq!(outcomes, ["duplicate", "duplicate", "accepted"], "newest first");
    }

    async fn a_call_never_goes_back_and_emits_each_type_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = stores(&dir).await;
        let res = store
            .ingest_batch(&[
                callback("CA2:completed", "CA2", EventType::CallCompleted),
                callback("CA2:ringing", "CA2", EventType::CallRinging),
                callback("CA2:completed:7", "CA2", EventType::CallCompleted),
            ])
            .await
            .unwrap();
        assert!(matches!(res.results[0], IngestResult::New { event_id: Some(_), .. }));
        assert_eq!(res.results[1], IngestResult::New { event_id: None, status: 204 });
        assert_eq!(res.results[2], IngestResult::New { event_id: None, status: 204 });
        assert_eq!(store.list_events("acme", None, PAGE).await.unwrap().len(), 1);
        let log = store.list_inbound("acme", Some("accepted"), PAGE).await.unwrap();
        assert_eq!(log[0].reason.as_deref(), Some("superseded"));
    }

    async fn a_call_is_delivered_in_order_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = stores(&dir).await;
        subscribe(&store).await;
        let res = store
            .ingest_batch(&[
                callback("CA3:ringing", "CA3", EventType::CallRinging),
                callback("CA3:answered", "CA3", EventType::CallAnswered),
                callback("CA4:ringing", "CA4", EventType::CallRinging),
            ])
            .await
            .unwrap();
        // The heads of both calls leave at once; CA3's second event waits.
        assert_eq!(res.jobs.len(), 2);
        let ca3 = res.jobs.iter().find(|j| j.body.contains("CA3")).unwrap().clone();
        assert!(ca3.body.contains("call.ringing"));
        assert!(store.claim_due(100, &[]).await.unwrap().is_empty(), "leased heads are not claimable");
        let next = store.record_attempts(&[finished(ca3, Finish::Succeeded)]).await.unwrap();
        assert_eq!(next.len(), 1);
        assert!(next[0].body.contains("call.answered"), "the chain's next follows");
        assert_eq!(next[0].attempt, 1);
        let ok = store.list_deliveries("acme", Some("succeeded"), None, PAGE).await.unwrap();
        assert_eq!(ok.len(), 1);
    }

    async fn a_batch_of_attempts_ends_each_delivery_once_and_frees_every_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = stores(&dir).await;
        subscribe(&store).await;
        let items: Vec<_> = ["CB1", "CB2", "CB3"]
            .iter()
            .flat_map(|c| {
                [
                    callback(&format!("{c}:ringing"), c, EventType::CallRinging),
                    callback(&format!("{c}:completed"), c, EventType::CallCompleted),
                ]
            })
            .collect();
        let heads = store.ingest_batch(&items).await.unwrap().jobs;
        assert_eq!(heads.len(), 3, "one head per call");
        // CB1's head is reported twice in the batch: succeeded, then (late) a retry. The
        // success stands, as if they had been recorded one at a time.
        let mut batch = vec![
            finished(heads[0].clone(), Finish::Succeeded),
            finished(heads[0].clone(), Finish::Retry { next_at: now_ms() }),
            finished(heads[1].clone(), Finish::Failed),
            finished(heads[2].clone(), Finish::Retry { next_at: now_ms() + 60_000 }),
        ];
        batch[1].status_code = Some(503);
        let next = store.record_attempts(&batch).await.unwrap();
        let mut calls: Vec<_> = next.iter().map(|j| (j.body.contains("call.completed"), j.ordering_key.clone())).collect();
        calls.sort();
        assert_eq!(
            calls,
            [(true, "call:twilio:CB1".to_owned()), (true, "call:twilio:CB2".to_owned())],
            "the calls whose head ended move on; CB3 waits for its retry"
        );
        let done = store.list_deliveries("acme", Some("succeeded"), None, PAGE).await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].attempts, 1);
        assert_eq!(store.list_deliveries("acme", Some("failed"), None, PAGE).await.unwrap().len(), 1);
        assert_eq!(store.gauges().await.unwrap().0, 4, "two next heads, CB3's head and its tail");
    }

    async fn a_batch_larger_than_one_statement_holds_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = stores(&dir).await;
        subscribe(&store).await;
        subscribe(&store).await;
        // 3,000 callbacks × 2 subscriptions: more rows than one statement's parameters allow.
        let items: Vec<_> = (0..3000)
            .map(|i| callback(&format!("CL{i}:completed"), &format!("CL{i}"), EventType::CallCompleted))
            .collect();
        let res = store.ingest_batch(&items).await.unwrap();
        assert!(res.results.iter().all(|r| matches!(r, IngestResult::New { event_id: Some(_), .. })));
        assert_eq!(res.jobs.len(), 6000);
        let recorded: Vec<_> = res.jobs.into_iter().map(|j| finished(j, Finish::Succeeded)).collect();
        assert!(store.record_attempts(&recorded).await.unwrap().is_empty());
        assert_eq!(store.gauges().await.unwrap(), (0, 0));
        let all = store.list_deliveries("acme", Some("succeeded"), None, Page { after: None, limit: 10_000 });
        assert_eq!(all.await.unwrap().len(), 6000);
    }

    async fn released_leases_are_claimable_again_but_only_the_holder_releases() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = stores(&dir).await;
        let sub = subscribe(&a).await;
        let jobs = a
            .ingest_batch(&[
                callback("CR1:completed", "CR1", EventType::CallCompleted),
                callback("CR2:completed", "CR2", EventType::CallCompleted),
            ])
            .await
            .unwrap()
            .jobs;
        assert_eq!(jobs.len(), 2);
        assert!(b.claim_due(10, &[]).await.unwrap().is_empty(), "both are leased to a");
        let first = vec![jobs[0].delivery_id.clone()];
        b.release_leases(&first).await.unwrap();
        assert!(b.claim_due(10, &[]).await.unwrap().is_empty(), "b cannot release a's lease");
        a.release_leases(&first).await.unwrap();
        assert!(
            b.claim_due(10, std::slice::from_ref(&sub)).await.unwrap().is_empty(),
            "a busy subscription is skipped"
        );
        let claimed: Vec<_> = b.claim_due(10, &[]).await.unwrap().into_iter().map(|j| j.delivery_id).collect();
        assert_eq!(claimed, first, "released, it is claimed again (and only it)");
    }

    async fn claims_are_exclusive_between_instances() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = stores(&dir).await;
        subscribe(&a).await;
        let items: Vec<_> = (0..60)
            .map(|i| callback(&format!("CX{i}:completed"), &format!("CX{i}"), EventType::CallCompleted))
            .collect();
        let jobs = a.ingest_batch(&items).await.unwrap().jobs;
        assert_eq!(jobs.len(), 60);
        // Every first attempt failed and is due again now: unleased, claimable by anyone.
        let retry: Vec<_> = jobs
            .into_iter()
            .map(|j| finished(j, Finish::Retry { next_at: now_ms() - 1 }))
            .collect();
        assert!(a.record_attempts(&retry).await.unwrap().is_empty());
        let (x, y) = tokio::join!(a.claim_due(40, &[]), b.claim_due(40, &[]));
        let (x, y) = (x.unwrap(), y.unwrap());
        let xs: HashSet<_> = x.iter().map(|j| j.delivery_id.clone()).collect();
        let ys: HashSet<_> = y.iter().map(|j| j.delivery_id.clone()).collect();
        assert!(xs.is_disjoint(&ys), "a delivery was claimed by both instances");
        let rest = a.claim_due(100, &[]).await.unwrap();
        assert_eq!(xs.len() + ys.len() + rest.len(), 60, "every delivery claimed exactly once");
        assert!(x.iter().chain(&y).chain(&rest).all(|j| j.attempt == 2));
        assert_eq!(a.gauges().await.unwrap(), (60, 0));
    }

    async fn purge_forgets_old_records_but_not_pending_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = stores(&dir).await;
        store.ingest_batch(&[callback("CA5:completed", "CA5", EventType::CallCompleted)]).await.unwrap();
        subscribe(&store).await;
        store.ingest_batch(&[callback("CA6:completed", "CA6", EventType::CallCompleted)]).await.unwrap();
        assert!(store.purge(now_ms() + 1).await.unwrap() > 0);
        let left = store.list_events("acme", None, PAGE).await.unwrap();
        assert_eq!(left.len(), 1, "the event with a pending delivery stays");
        assert!(left[0].body.contains("CA6"));
        // Its dedup key is gone: the same callback is new again.
        let res = store.ingest_batch(&[callback("CA5:completed", "CA5", EventType::CallCompleted)]).await.unwrap();
        assert!(matches!(res.results[0], IngestResult::New { .. }));
    }
}
