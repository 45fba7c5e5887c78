//! What a booking costs in work rather than time: PostgreSQL transactions,
//! rows written (per table) and WAL bytes; RabbitMQ messages published,
//! delivered and acknowledged, and bytes on the wire. Counted from the
//! servers' own statistics before and after a sale (this system's database
//! and vhost only, except the WAL, which is the server's) and divided by
//! its decisions, over the booking's whole life: the request, its
//! decision, its event and what consumes it.
//!
//! Both servers publish their statistics late: a PostgreSQL backend
//! reports its counts when it goes idle, at most a second late, and the
//! management plugin aggregates RabbitMQ's every few seconds (5 s by
//! default). So the closing count is taken once they stop moving.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

/// The servers' counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    commits: i64,
    wal_bytes: i64,
    /// Rows inserted, updated and deleted, per table.
    rows: BTreeMap<String, i64>,
    published: i64,
    delivered: i64,
    acked: i64,
    /// Bytes the broker received from and sent to this vhost's clients.
    broker_bytes: i64,
}

/// A sale's work divided by its decisions.
#[derive(Debug, Clone, Serialize)]
pub struct PerBooking {
    pub commits: f64,
    pub rows_written: f64,
    /// Rows inserted, updated or deleted per decided booking, by table
    /// (tables with none left out).
    pub rows_by_table: BTreeMap<String, f64>,
    /// The server's WAL, whatever wrote it.
    pub wal_bytes: f64,
    pub messages_published: f64,
    pub messages_delivered: f64,
    pub messages_acked: f64,
    pub broker_bytes: f64,
}

impl Counters {
    /// The counters now; a server that does not answer counts nothing.
    pub async fn take(db: &PgPool, vhost: Option<&str>) -> Self {
        let (commits, wal_bytes): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                    (SELECT wal_bytes::int8 FROM pg_stat_wal)",
        )
        .fetch_one(db)
        .await
        .unwrap_or_default();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT relname::text, (n_tup_ins + n_tup_upd + n_tup_del)::int8 FROM pg_stat_user_tables",
        )
        .fetch_all(db)
        .await
        .unwrap_or_default();
        let mut counters = Self {
            commits,
            wal_bytes,
            rows: rows.into_iter().collect(),
            ..Self::default()
        };
        let vhost = vhost.unwrap_or("%2f");
        if let Some(stats) = harness::system::management_get(&format!("/api/vhosts/{vhost}")).await
        {
            let stat = |path: &[&str]| {
                path.iter()
                    .fold(&stats, |v, key| &v[*key])
                    .as_i64()
                    .unwrap_or(0)
            };
            counters.published = stat(&["message_stats", "publish"]);
            counters.delivered = stat(&["message_stats", "deliver_get"]);
            counters.acked = stat(&["message_stats", "ack"]);
            counters.broker_bytes = stat(&["recv_oct"]) + stat(&["send_oct"]);
        }
        counters
    }

    /// The counters once the servers have published everything done so
    /// far: taken every second until two in a row agree (at most 10 s).
    pub async fn settled(db: &PgPool, vhost: Option<&str>) -> Self {
        let mut last = Self::take(db, vhost).await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = Self::take(db, vhost).await;
            if now.same_work(&last) {
                return now;
            }
            last = now;
        }
        last
    }

    /// Whether nothing of this system moved between the two (the WAL
    /// moves with every checkpoint and other database too).
    fn same_work(&self, other: &Self) -> bool {
        Self {
            wal_bytes: other.wal_bytes,
            ..self.clone()
        } == *other
    }

    /// The work done since `before`, per decided booking.
    pub fn per_booking(&self, before: &Self, decided: usize) -> Option<PerBooking> {
        if decided == 0 {
            return None;
        }
        let per = |n: i64| n as f64 / decided as f64;
        let rows_by_table: BTreeMap<String, f64> = self
            .rows
            .iter()
            .map(|(table, n)| (table, n - before.rows.get(table).copied().unwrap_or(0)))
            .filter(|&(_, n)| n > 0)
            .map(|(table, n)| (table.clone(), per(n)))
            .collect();
        Some(PerBooking {
            commits: per(self.commits - before.commits),
            rows_written: rows_by_table.values().sum(),
            rows_by_table,
            wal_bytes: per(self.wal_bytes - before.wal_bytes),
            messages_published: per(self.published - before.published),
            messages_delivered: per(self.delivered - before.delivered),
            messages_acked: per(self.acked - before.acked),
            broker_bytes: per(self.broker_bytes - before.broker_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_divided_by_the_decisions_and_tables_without_rows_are_left_out() {
        let before = Counters {
            commits: 10,
            wal_bytes: 1_000,
            rows: BTreeMap::from([("bookings".to_owned(), 5), ("shows".to_owned(), 2)]),
            published: 3,
            delivered: 3,
            acked: 3,
            broker_bytes: 100,
        };
        let after = Counters {
            commits: 30,
            wal_bytes: 5_000,
            rows: BTreeMap::from([
                ("bookings".to_owned(), 25),
                ("shows".to_owned(), 2),
                ("outbox".to_owned(), 10),
            ]),
            published: 13,
            delivered: 23,
            acked: 23,
            broker_bytes: 2_100,
        };

        let work = after.per_booking(&before, 10).unwrap();

        assert_eq!(work.commits, 2.0);
        assert_eq!(work.wal_bytes, 400.0);
        assert_eq!(
            work.rows_by_table,
            BTreeMap::from([("bookings".to_owned(), 2.0), ("outbox".to_owned(), 1.0)])
        );
        assert_eq!(work.rows_written, 3.0);
        assert_eq!(work.messages_published, 1.0);
        assert_eq!(work.messages_delivered, 2.0);
        assert_eq!(work.broker_bytes, 200.0);
        assert!(after.per_booking(&before, 0).is_none());
    }
}
