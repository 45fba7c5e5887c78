//! What the figures were measured on. Throughput means little without the
//! machine, and on a shared box the load before the run matters too.

use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average when the benchmark started: anything well
    /// above zero means something else competes for the cores.
    pub load_average_at_start: f64,
    pub rabbitmq_version: String,
    pub erlang_version: String,
    pub postgres_version: String,
}

impl Machine {
    pub async fn describe(db: &PgPool) -> Self {
        let overview = harness::system::management_get("/api/overview")
            .await
            .unwrap_or_default();
        let field = |name: &str| overview[name].as_str().unwrap_or("unknown").to_owned();
        let postgres_version = sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(db)
            .await
            .unwrap_or_else(|_| "unknown".to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: meminfo_kib("MemTotal").map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0),
            cpu_model: cpu_model(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            load_average_at_start: load_average(),
            rabbitmq_version: field("rabbitmq_version"),
            erlang_version: field("erlang_version"),
            postgres_version,
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
