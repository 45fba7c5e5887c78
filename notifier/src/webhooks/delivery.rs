//! The delivery sweeper: POSTs due deliveries, signed, and records each
//! answer. A pass leases a few due rows per live endpoint by pushing their
//! next attempt past the call's timeout (a notifier that dies mid-call
//! leaves them to the next pass, of any notifier), then starts each POST on
//! its own task and returns: a slow endpoint holds only its own slots (at
//! most [`PER_ENDPOINT`] calls at once), never the sweep, other endpoints
//! or the emails. A 2xx delivers, and is recorded with the other
//! deliveries answered meanwhile, in one statement. Anything else is retried with
//! exponential backoff until `WEBHOOK_RETRY_FOR_SECONDS` after the first
//! attempt, then the delivery fails and is published to
//! `webhooks.deliveries.dead` for operators.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use reqwest::dns::{Name, Resolve, Resolving};
use shared::amqp::{self, Outgoing, Publisher};
use shared::config::WebhookSettings;
use shared::store::webhooks::{self as store, Due, FailedAttempt};
use shared::sweep::SweepError;
use shared::topology::{
    DEAD_LETTER_EXCHANGE, HEADER_ATTEMPTS, HEADER_DEATH_REASON, WEBHOOK_DELIVERIES_DEAD_QUEUE,
};
use shared::webhooks::DeliveryStatus;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use super::signing;

/// How often the sweeper looks for due deliveries when nothing wakes it.
const PERIOD: Duration = Duration::from_millis(250);
/// POSTs in flight per notifier.
const SLOTS: usize = 128;
/// POSTs in flight to one endpoint per notifier: an endpoint's throughput
/// is this many over the time one delivery takes (the POST and recording
/// it, ~20 ms when PostgreSQL is busy with a sale), and a hanging endpoint
/// holds no more than this many of the [`SLOTS`].
const PER_ENDPOINT: usize = 32;
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Delivered attempts recorded by one statement at most.
const RECORD_BATCH: usize = 256;

pub struct Sweeper {
    db: PgPool,
    http: reqwest::Client,
    settings: WebhookSettings,
    dead_letters: Arc<Publisher>,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    /// POSTs in flight, by endpoint.
    in_flight: Mutex<HashMap<Uuid, usize>>,
    tasks: TaskTracker,
}

/// A 2xx to record, and the slot it frees once recorded.
struct Delivered {
    id: Uuid,
    status_code: Option<i32>,
    started: DateTime<Utc>,
    _slot: Slot,
}

/// How one POST went.
struct Answer {
    status_code: Option<i32>,
    error: Option<String>,
}

impl Answer {
    fn failed(error: impl ToString) -> Self {
        Self {
            status_code: None,
            error: Some(error.to_string()),
        }
    }
}

impl Sweeper {
    pub fn new(
        db: PgPool,
        settings: WebhookSettings,
        dead_letters: Arc<Publisher>,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let mut http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect could lead anywhere, a private address included.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("booking-webhooks/1");
        if !settings.allow_private_networks {
            // Checked again as the connection is made: a name may resolve
            // differently than when it was checked.
            http = http.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            db,
            http: http.build()?,
            settings,
            dead_letters,
            wake,
            slots: Arc::new(Semaphore::new(SLOTS)),
            in_flight: Mutex::default(),
            tasks: TaskTracker::new(),
        })
    }

    /// Sweeps until `cancel` fires, then waits for the POSTs in flight
    /// (those still unanswered are abandoned and handed back).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let (delivered, recording) = mpsc::unbounded_channel();
        // Ends after the last POST task let go of its sender.
        let recorder = tokio::spawn(self.clone().record_delivered(recording));
        loop {
            tokio::select! {
                () = tokio::time::sleep(PERIOD) => {}
                () = self.wake.notified() => {}
                () = cancel.cancelled() => break,
            }
            match self.clone().sweep(&delivered, &cancel).await {
                Ok(0) => {}
                Ok(count) => tracing::debug!(count, "webhook deliveries started"),
                Err(err) => {
                    tracing::warn!(error = %err, "webhook sweep failed, retrying next pass")
                }
            }
        }
        drop(delivered);
        self.tasks.close();
        self.tasks.wait().await;
        let _ = recorder.await;
    }

    /// One pass: leases due deliveries and starts a POST for each that has
    /// a free slot; returns how many it started.
    async fn sweep(
        self: Arc<Self>,
        delivered: &mpsc::UnboundedSender<Delivered>,
        cancel: &CancellationToken,
    ) -> Result<usize, SweepError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        // Endpoints with POSTs in flight get only what is left of their share.
        let (busy, left): (Vec<Uuid>, Vec<i64>) = {
            let in_flight = self.in_flight.lock().expect("not poisoned");
            in_flight
                .iter()
                .map(|(id, n)| (*id, PER_ENDPOINT.saturating_sub(*n) as i64))
                .unzip()
        };
        // The lease outlasts the call, so nobody else POSTs while it runs.
        let lease = self.settings.timeout + Duration::from_secs(5);
        let due = store::lease_due(
            &self.db,
            &busy,
            &left,
            PER_ENDPOINT as i64,
            free as i64,
            lease,
        )
        .await?;
        let mut started = 0;
        let mut unstarted = Vec::new();
        for row in due {
            match self.claim_slot(row.endpoint_id) {
                Some(slot) => {
                    started += 1;
                    self.tasks.spawn(self.clone().attempt(
                        row,
                        slot,
                        delivered.clone(),
                        cancel.clone(),
                    ));
                }
                None => unstarted.push(row.id),
            }
        }
        if !unstarted.is_empty() {
            // Leased beyond what was free (slots only free up during a
            // pass, so this should not happen): due again at once.
            self.hand_back(&unstarted).await?;
        }
        Ok(started)
    }

    /// A slot for one POST to `endpoint`, if it and the process have one.
    fn claim_slot(self: &Arc<Self>, endpoint: Uuid) -> Option<Slot> {
        let mut in_flight = self.in_flight.lock().expect("not poisoned");
        let count = in_flight.entry(endpoint).or_default();
        if *count >= PER_ENDPOINT {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        *count += 1;
        Some(Slot {
            sweeper: self.clone(),
            endpoint,
            _permit: permit,
        })
    }

    async fn attempt(
        self: Arc<Self>,
        row: Due,
        slot: Slot,
        delivered: mpsc::UnboundedSender<Delivered>,
        cancel: CancellationToken,
    ) {
        let span = tracing::info_span!("webhook", booking_id = %row.booking_id, show_id = %row.show_id,
            webhook_id = %row.id, endpoint_id = %row.endpoint_id, event_type = %row.event_type,
            attempt = row.attempts + 1);
        async {
            let started = Utc::now();
            let answer = tokio::select! {
                answer = self.post(&row) => answer,
                () = cancel.cancelled() => {
                    // Shutting down: at worst the lease runs out.
                    if let Err(err) = self.hand_back(&[row.id]).await {
                        tracing::warn!(error = %err, "could not hand back a webhook delivery");
                    }
                    return;
                }
            };
            let ok = answer.error.is_none();
            metrics::counter!("notifier_webhook_attempts_total",
                "outcome" => if ok { "ok" } else { "failed" })
            .increment(1);
            if ok {
                tracing::info!(status_code = answer.status_code, "webhook delivered");
                // The slot stays taken until the delivery is recorded.
                let _ = delivered.send(Delivered {
                    id: row.id,
                    status_code: answer.status_code,
                    started,
                    _slot: slot,
                });
            } else {
                if let Err(err) = self.retry_or_fail(&row, &answer, started).await {
                    // The lease runs out and the delivery is attempted again.
                    tracing::warn!(error = %err, "could not record a webhook attempt");
                }
                drop(slot);
            }
        }
        .instrument(span)
        .await;
    }

    /// Records delivered attempts as they come, all that are waiting in
    /// one statement, then frees their slots.
    async fn record_delivered(self: Arc<Self>, mut delivered: mpsc::UnboundedReceiver<Delivered>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while delivered.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            let count = batch.len();
            if let Err(err) = self.record(&batch).await {
                // Their leases run out and they are delivered again.
                tracing::warn!(error = %err, count, "could not record delivered webhooks");
            } else {
                metrics::counter!("notifier_webhook_deliveries_total", "outcome" => "delivered")
                    .increment(count as u64);
            }
            batch.clear();
        }
    }

    /// Makes leased deliveries that were not (or not fully) attempted due
    /// again at once, for this or another notifier.
    async fn hand_back(&self, ids: &[Uuid]) -> Result<(), sqlx::Error> {
        store::hand_back(&self.db, ids).await
    }

    /// POSTs the delivery, signed; any 2xx is success.
    async fn post(&self, row: &Due) -> Answer {
        let allow_private = self.settings.allow_private_networks;
        if let Err(refused) = shared::webhooks::check_destination(&row.url, allow_private).await {
            return Answer::failed(format!("refused: {refused}"));
        }
        let body = serde_json::to_vec(&row.payload).expect("JSON values serialize");
        let timestamp = Utc::now().timestamp();
        let id = row.id.to_string();
        let signature = match signing::sign(&row.secret, &id, timestamp, &body) {
            Ok(signature) => signature,
            Err(err) => return Answer::failed(err),
        };
        let sent = self
            .http
            .post(&row.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status();
                Answer {
                    status_code: Some(i32::from(status.as_u16())),
                    error: (!status.is_success()).then(|| format!("answered {status}")),
                }
            }
            Err(err) if err.is_timeout() => {
                Answer::failed(format!("no answer within {:?}", self.settings.timeout))
            }
            Err(err) => Answer::failed(error_chain(&err)),
        }
    }

    async fn record(&self, delivered: &[Delivered]) -> Result<(), sqlx::Error> {
        let ids: Vec<Uuid> = delivered.iter().map(|d| d.id).collect();
        let codes: Vec<Option<i32>> = delivered.iter().map(|d| d.status_code).collect();
        let started: Vec<DateTime<Utc>> = delivered.iter().map(|d| d.started).collect();
        store::record_delivered(&self.db, &ids, &codes, &started).await
    }

    /// Records a failed attempt: the next one after the backoff, or, once
    /// the delivery has been retried long enough, `failed` and the dead
    /// queue (published before the commit, so a failed delivery is always
    /// there; a crash in between repeats it at worst).
    async fn retry_or_fail(
        &self,
        row: &Due,
        answer: &Answer,
        started: DateTime<Utc>,
    ) -> Result<(), SweepError> {
        let attempt = row.attempts + 1;
        let wait = shared::retry::backoff(attempt, FIRST_RETRY, self.settings.backoff_max);
        let failed = FailedAttempt {
            delivery_id: row.id,
            attempt,
            status_code: answer.status_code,
            error: answer.error.as_deref(),
            at: started,
        };
        let mut tx = self.db.begin().await?;
        let updated =
            store::record_failure(&mut *tx, &failed, wait, self.settings.retry_for).await?;
        let Some(status) = updated else {
            // Cancelled (its endpoint was deleted) while it was in flight.
            return Ok(());
        };
        store::record_attempt(&mut *tx, &failed).await?;
        let error = answer.error.as_deref().unwrap_or_default();
        if status == DeliveryStatus::Failed {
            self.dead_letter(row, attempt, answer).await?;
            tx.commit().await?;
            metrics::counter!("notifier_webhook_deliveries_total", "outcome" => "failed")
                .increment(1);
            tracing::error!(
                error,
                attempts = attempt,
                "webhook delivery failed for good"
            );
        } else {
            tx.commit().await?;
            tracing::warn!(error, retry_in = ?wait, "webhook attempt failed, will retry");
        }
        Ok(())
    }

    /// Publishes a failed delivery to `webhooks.deliveries.dead`: what was
    /// to be sent, where, and why it never arrived.
    async fn dead_letter(
        &self,
        row: &Due,
        attempts: i32,
        answer: &Answer,
    ) -> Result<(), SweepError> {
        let message = serde_json::json!({
            "webhook_id": row.id,
            "endpoint_id": row.endpoint_id,
            "url": row.url,
            "event_id": row.event_id,
            "type": row.event_type,
            "attempts": attempts,
            "last_status_code": answer.status_code,
            "last_error": answer.error,
            "payload": row.payload,
        });
        let payload = serde_json::to_vec(&message).expect("JSON values serialize");
        let mut headers = FieldTable::default();
        amqp::header(
            &mut headers,
            HEADER_DEATH_REASON,
            answer.error.as_deref().unwrap_or_default(),
        );
        amqp::header(&mut headers, "x-booking-id", &row.booking_id.to_string());
        headers.insert(HEADER_ATTEMPTS.into(), AMQPValue::LongInt(attempts));
        self.dead_letters
            .publish(Outgoing {
                exchange: DEAD_LETTER_EXCHANGE,
                routing_key: WEBHOOK_DELIVERIES_DEAD_QUEUE,
                payload: &payload,
                message_id: row.id.to_string(),
                headers,
                mandatory: true,
            })
            .await?;
        Ok(())
    }
}

/// One POST's place in the process's and its endpoint's limits; given back
/// when dropped, whatever became of the POST.
struct Slot {
    sweeper: Arc<Sweeper>,
    endpoint: Uuid,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = self.sweeper.in_flight.lock().expect("not poisoned");
        if let Some(count) = in_flight.get_mut(&self.endpoint) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.endpoint);
            }
        }
        // A slot is free: due deliveries need not wait for the next pass.
        self.sweeper.wake.notify_one();
    }
}

/// Resolves names for the webhook client, refusing any that resolves to a
/// loopback, private or otherwise non-public address.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !shared::webhooks::is_public(a.ip())) {
                return Err(format!(
                    "{} resolves to {}, which is not public",
                    name.as_str(),
                    bad.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// An error with its causes, which reqwest keeps apart ("error sending
/// request" alone says little).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
