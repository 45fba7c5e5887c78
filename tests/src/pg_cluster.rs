//! A private PostgreSQL cluster for the tests that lose the primary: three
//! nodes under Patroni with etcd, behind HAProxy, started by the same
//! `scripts/services.sh --postgres-nodes 3` that runs one for operators, in
//! a directory and on ports of its own (so such tests run beside the
//! others, and prove the script's own settings).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde::Deserialize;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

/// Nodes of the cluster.
const NODES: u16 = 3;
/// Ports the script takes from `PG_PORT` on: HAProxy's write and read
/// ports, then (from `PG_PORT` + 10) the nodes, their REST APIs, etcd and
/// HAProxy's stats page; and one more, the last, for a restored copy.
const PORT_SPAN: u16 = 34;

pub struct PgCluster {
    dir: PathBuf,
    pg_port: u16,
    http: Client,
}

/// One member as Patroni's REST API reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub name: String,
    /// `leader`, `sync_standby` or `replica`.
    pub role: String,
    /// `running`, `streaming`, `stopped`, …
    pub state: String,
    #[serde(default)]
    pub timeline: Option<i64>,
}

impl Member {
    pub fn is_replica(&self) -> bool {
        matches!(&*self.role, "sync_standby" | "replica")
            && matches!(&*self.state, "running" | "streaming")
    }
}

impl PgCluster {
    /// Starts the nodes and waits, as the script does, for a leader with
    /// a synchronous standby and for HAProxy to pass writes to it.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "booking-pgcluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap();
        let cluster = Self {
            dir,
            pg_port: free_port_block(),
            http: Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        let out = tokio::task::spawn_blocking({
            let mut cmd = cluster.script();
            cmd.args(["up", "postgres"]);
            move || cmd.output().expect("scripts/services.sh runs")
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "the PostgreSQL cluster did not start:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
        cluster
    }

    /// `scripts/services.sh --postgres-nodes 3` for this cluster; the
    /// caller adds the command.
    pub fn script(&self) -> Command {
        self.command("services.sh")
    }

    /// Another script of `scripts/` (`backup`, say) with this cluster's
    /// environment.
    pub fn command(&self, script: &str) -> Command {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let mut cmd = Command::new(scripts.join(script));
        cmd.arg("--postgres-nodes")
            .arg(NODES.to_string())
            .env("SERVICES_DIR", &self.dir)
            .env("PG_PORT", self.pg_port.to_string())
            .env_remove("PG_CLUSTER_PORT")
            .env_remove("POSTGRES_NODES");
        cmd
    }

    /// Runs `scripts/backup` for this cluster with `args`; returns what it
    /// printed on stdout.
    pub async fn backup(&self, args: &[&str]) -> String {
        let mut cmd = self.command("backup");
        cmd.args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("scripts/backup runs"))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/backup {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A free port of the cluster's block that the script leaves alone:
    /// for a restored copy.
    pub fn spare_port(&self) -> u16 {
        self.pg_port + PORT_SPAN - 1
    }

    /// The directory the cluster lives in (`SERVICES_DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The superuser's URL of database `postgres`, through HAProxy's write
    /// port: where a sandbox creates its database.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://booking:booking@127.0.0.1:{}/postgres",
            self.pg_port
        )
    }

    /// HAProxy's write port: always the leader.
    pub fn write_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.pg_port))
    }

    /// HAProxy's read port: the replicas.
    pub fn read_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.pg_port + 1))
    }

    /// Each node's own PostgreSQL port.
    pub fn node_ports(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=NODES).map(|node| self.pg_port + 10 + node - 1)
    }

    /// Waits (up to a minute) until a new connection through the write
    /// port reaches a primary; returns when it did.
    pub async fn wait_writes_again(&self) -> Instant {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.pg_port)
            .username("booking")
            .password("booking")
            .database("postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(1), async {
                let mut conn = options.connect().await?;
                sqlx::query_scalar::<_, bool>("SELECT NOT pg_is_in_recovery()")
                    .fetch_one(&mut conn)
                    .await
            })
            .await;
            if let Ok(Ok(true)) = attempt {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "no writes through the proxy for a minute\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn rest_port(&self, node: u16) -> u16 {
        self.pg_port + 20 + node - 1
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        let node = name.trim_start_matches("pg-");
        self.dir.join(format!("postgres-cluster/node-{node}/data"))
    }

    /// The members, from the first Patroni that answers; empty if none.
    pub async fn members(&self) -> Vec<Member> {
        #[derive(Deserialize)]
        struct Cluster {
            members: Vec<Member>,
        }
        for node in 1..=NODES {
            let url = format!("http://127.0.0.1:{}/cluster", self.rest_port(node));
            if let Ok(res) = self.http.get(&url).send().await {
                if let Ok(cluster) = res.json::<Cluster>().await {
                    return cluster.members;
                }
            }
        }
        Vec::new()
    }

    /// The running leader, waiting up to a minute for one.
    pub async fn leader(&self) -> Member {
        self.wait_for("a running leader", |members| {
            members
                .iter()
                .find(|m| m.role == "leader" && m.state == "running")
                .cloned()
        })
        .await
    }

    /// Waits up to a minute until `found` finds something in the members.
    pub async fn wait_for<T>(&self, what: &str, found: impl Fn(&[Member]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let members = self.members().await;
            if let Some(found) = found(&members) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after a minute: {members:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kill -9 of a node's postmaster: the machine's PostgreSQL dies, its
    /// Patroni lives on.
    pub fn kill_postmaster(&self, name: &str) {
        let pid_file = self.data_dir(name).join("postmaster.pid");
        let pids = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let pid = pids.lines().next().unwrap().trim();
        let status = Command::new("kill").args(["-9", pid]).status().unwrap();
        assert!(status.success(), "kill -9 {pid} failed");
    }

    /// A planned switchover from the leader to its synchronous standby,
    /// as an operator asks Patroni for one; returns the new leader's name.
    pub async fn switchover(&self) -> String {
        let (leader, candidate) = self
            .wait_for("a leader with a synchronous standby", |members| {
                let leader = members.iter().find(|m| m.role == "leader")?;
                let standby = members
                    .iter()
                    .find(|m| m.role == "sync_standby" && m.is_replica())?;
                Some((leader.name.clone(), standby.name.clone()))
            })
            .await;
        let node: u16 = leader.trim_start_matches("pg-").parse().unwrap();
        let res = self
            .http
            .post(format!(
                "http://127.0.0.1:{}/switchover",
                self.rest_port(node)
            ))
            .timeout(Duration::from_secs(60))
            .json(&json!({"leader": leader, "candidate": candidate}))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "switchover refused: {status} {body}");
        candidate
    }

    /// The tail of every node's Patroni and PostgreSQL log, and HAProxy's.
    pub fn logs(&self) -> String {
        let logs = self.dir.join("logs");
        let mut out = String::new();
        let mut names: Vec<_> = std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.script().args(["down", "postgres"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A base port with the [`PORT_SPAN`] ports from it free (random, so that
/// parallel test processes rarely try the same block; checked here), below
/// the kernel's range for outgoing connections (32768 on).
fn free_port_block() -> u16 {
    for _ in 0..100 {
        let base = 20_000 + (uuid::Uuid::new_v4().as_u128() % 300) as u16 * 40;
        if (base..base + PORT_SPAN).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return base;
        }
    }
    panic!("no block of {PORT_SPAN} free ports");
}
