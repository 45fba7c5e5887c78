//! Starting, talking to and stopping one isolated system under test.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use shared::amqp::nodes::Nodes;
use sqlx::PgPool;
use uuid::Uuid;

use crate::proxy::through;

pub const ADMIN_TOKEN: &str = "test-admin-token";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} must be set: run the tests with scripts/test"))
}

/// How to start a system.
#[derive(Debug, Clone)]
pub struct Options {
    pub workers: usize,
    pub hold_seconds: u64,
    pub shards: u16,
    /// Point the services at this AMQP URL instead of a fresh vhost on the
    /// shared test broker.
    pub amqp_url: Option<String>,
    /// Create the database on this server instead of `TEST_DATABASE_URL`'s.
    pub admin_db_url: Option<String>,
    /// The services reach PostgreSQL at this address instead of the
    /// server's own (a [`crate::proxy::Proxy`] to it, say); the test's own
    /// connections ([`Sandbox::db`]) still go straight to the server.
    pub database_via: Option<SocketAddr>,
    /// The api reads what may lag (`DATABASE_READ_URL`) at this address,
    /// with the sandbox's database: a cluster's replicas, say.
    pub database_read_via: Option<SocketAddr>,
    /// The services reach RabbitMQ at this address instead of the node's
    /// own (of a cluster, only the first node's), with this sandbox's
    /// vhost; the test's own connections still go straight to it.
    pub broker_via: Option<SocketAddr>,
    /// Where the `api`, `worker` and `notifier` binaries are; `None` means
    /// the directory above the running test executable (`target/<profile>`
    /// for one in `target/<profile>/deps`). A program that lives next to
    /// the binaries itself, such as the benchmark, passes its own directory.
    pub bin_dir: Option<PathBuf>,
    /// More environment for every service process, set after the defaults
    /// so that it overrides them (e.g. `PREFETCH`, `DB_POOL_SIZE`, `RUST_LOG`).
    pub extra_env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: 1,
            hold_seconds: 300,
            shards: 4,
            amqp_url: None,
            admin_db_url: None,
            database_via: None,
            database_read_via: None,
            broker_via: None,
            bin_dir: None,
            extra_env: Vec::new(),
        }
    }
}

/// What every test has of its own, however its API runs (as a process in
/// [`System`], in the test's process in [`crate::TestApp`]): a fresh
/// database and vhost on the shared servers, the API's address, and the
/// HTTP calls tests make to it.
pub struct Sandbox {
    pub name: String,
    pub base_url: String,
    pub http: Client,
    pub database_url: String,
    /// The AMQP URL of this sandbox (with its vhost), which the services use
    /// unless [`Options::broker_via`] routes them through another address.
    pub amqp_url: String,
    /// The vhost made for this sandbox, if it is on the shared broker.
    pub vhost: Option<String>,
    admin_db_url: String,
    db: tokio::sync::OnceCell<PgPool>,
}

/// One service process of a system, running or stopped, with what it
/// takes to start it again.
struct Process {
    label: String,
    binary: String,
    env: Vec<(String, String)>,
    /// Where it serves `/healthz`: `http://<API_ADDR or METRICS_ADDR>`.
    ops_url: String,
    child: Option<Child>,
}

/// One running system: its sandbox and its processes.
pub struct System {
    sandbox: Sandbox,
    processes: Mutex<Vec<Process>>,
    /// Where each worker serves its metrics, by label.
    worker_metrics: Mutex<Vec<(String, String)>>,
    env: Vec<(&'static str, String)>,
    extra_env: Vec<(String, String)>,
    bin_dir: PathBuf,
    shards: u16,
}

impl std::ops::Deref for System {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let api_port = free_port();
        let sandbox = Sandbox::create(&options, format!("http://127.0.0.1:{api_port}")).await;
        let mut env = vec![
            (
                "DATABASE_URL",
                through(&sandbox.database_url, options.database_via),
            ),
            ("AMQP_URL", through(&sandbox.amqp_url, options.broker_via)),
            ("SMTP_URL", env("TEST_SMTP_URL")),
            (
                "MAIL_FROM",
                "Booking Tests <tickets@booking.test>".to_owned(),
            ),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("HOLD_SECONDS", options.hold_seconds.to_string()),
            ("SHARDS", options.shards.to_string()),
            ("DB_POOL_SIZE", "8".to_owned()),
            ("RUST_LOG", "info,sqlx=warn".to_owned()),
            // Tests receive webhooks on 127.0.0.1.
            ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
            // Tests and the benchmark send everything from one address; a
            // test of a limit sets its own in `Options::extra_env`.
            ("RATE_LIMIT_PER_SECOND", "0".to_owned()),
            ("STREAMS_PER_CLIENT", "1000000".to_owned()),
        ];
        if let Some(via) = options.database_read_via {
            env.push((
                "DATABASE_READ_URL",
                through(&sandbox.database_url, Some(via)),
            ));
        }
        let mut system = Self {
            sandbox,
            processes: Mutex::default(),
            worker_metrics: Mutex::default(),
            env,
            extra_env: options.extra_env,
            bin_dir: options.bin_dir.unwrap_or_else(test_bin_dir),
            shards: options.shards,
        };
        system.spawn(
            "api",
            "api",
            &[("API_ADDR", format!("127.0.0.1:{api_port}"))],
        );
        for _ in 0..options.workers {
            system.start_worker();
        }
        system.spawn(
            "notifier",
            "notifier",
            &[("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))],
        );
        system.wait_ready().await;
        system
    }

    /// The shard queue that carries `show`'s commands, as every service
    /// works it out.
    pub fn shard_queue_of(&self, show: &str) -> String {
        let topology = shared::topology::Topology {
            shards: self.shards,
            delivery_limit: 0,
            quorum_group_size: None,
        };
        let show = uuid::Uuid::parse_str(show).expect("a show id");
        shared::topology::Topology::shard_queue(topology.shard_of(show))
    }

    /// Starts one more worker process; returns its label.
    pub fn start_worker(&self) -> String {
        let mut workers = self.worker_metrics.lock().unwrap();
        let label = format!("worker-{}", workers.len());
        let metrics = format!("127.0.0.1:{}", free_port());
        self.spawn("worker", &label, &[("METRICS_ADDR", metrics.clone())]);
        workers.push((label.clone(), format!("http://{metrics}/metrics")));
        label
    }

    /// Starts one more API process on the same database and broker and
    /// waits until it is healthy; returns its base URL.
    pub async fn start_api(&self) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        let label = format!("api-{}", self.processes.lock().unwrap().len());
        self.spawn("api", &label, &[("API_ADDR", addr.clone())]);
        let url = format!("http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .http
            .get(format!("{url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "{label} not healthy within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        url
    }

    /// Labels of the workers started so far.
    pub fn workers(&self) -> Vec<String> {
        self.worker_metrics
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// SIGKILLs a process (e.g. `worker-0`): no chance to finish anything.
    pub fn kill(&self, label: &str) {
        let mut child = self.take_child(label);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOPs a process (e.g. `worker-0`): it holds what it has and
    /// does nothing until [`Self::resume`].
    pub fn pause(&self, label: &str) {
        self.signal(label, "-STOP");
    }

    /// SIGCONTs a process stopped by [`Self::pause`].
    pub fn resume(&self, label: &str) {
        self.signal(label, "-CONT");
    }

    fn signal(&self, label: &str, signal: &str) {
        let (_, pid) = self
            .pids()
            .into_iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no running process {label}"));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {label}");
    }

    /// SIGTERMs a process and waits (up to `limit`, else the test fails)
    /// for it to exit; returns how it exited.
    pub async fn terminate(&self, label: &str, limit: Duration) -> ExitStatus {
        let mut child = self.take_child(label);
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "cannot send SIGTERM to {label}");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{label} did not exit within {limit:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a stopped process again (same binary, environment and
    /// addresses) and waits until it answers `/healthz`.
    pub async fn restart(&self, label: &str) {
        self.restart_with(label, &[]).await;
    }

    /// [`System::restart`] with some of its environment changed.
    pub async fn restart_with(&self, label: &str, changes: &[(&str, String)]) {
        {
            let mut processes = self.processes.lock().unwrap();
            let process = processes
                .iter_mut()
                .find(|p| p.label == label)
                .expect("known process");
            assert!(process.child.is_none(), "{label} is still running");
            for (name, value) in changes {
                process.env.retain(|(n, _)| n != name);
                process.env.push(((*name).to_owned(), value.clone()));
            }
            process.child = Some(self.launch(&process.binary, label, &process.env));
        }
        let url = self.ops_url(label, "/healthz");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_none_exited();
            let res = self.http.get(&url).send().await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "{label} not healthy within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `path` on the address where a process serves `/healthz`, `/readyz`
    /// and `/metrics`.
    pub fn ops_url(&self, label: &str, path: &str) -> String {
        let processes = self.processes.lock().unwrap();
        let process = processes
            .iter()
            .find(|p| p.label == label)
            .expect("known process");
        format!("{}{path}", process.ops_url)
    }

    /// What a process logged so far (all its runs).
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.log_dir().join(format!("{label}.log"))).unwrap_or_default()
    }

    fn take_child(&self, label: &str) -> Child {
        let mut processes = self.processes.lock().unwrap();
        let process = processes
            .iter_mut()
            .find(|p| p.label == label)
            .expect("known process");
        process
            .child
            .take()
            .unwrap_or_else(|| panic!("{label} is not running"))
    }

    /// Fails the test if a process that should be running has exited.
    fn assert_none_exited(&self) {
        let mut processes = self.processes.lock().unwrap();
        for process in processes.iter_mut() {
            if let Some(Ok(Some(status))) = process.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited during start-up ({status}); see {}",
                    process.label,
                    self.log_dir().display()
                );
            }
        }
    }

    /// A metric of a worker, summed over its label sets, as its `/metrics`
    /// shows it (`None` if absent or the worker does not answer).
    pub async fn worker_metric(&self, label: &str, metric: &str) -> Option<f64> {
        let url = {
            let workers = self.worker_metrics.lock().unwrap();
            workers.iter().find(|(l, _)| l == label)?.1.clone()
        };
        self.metric_at(&url, metric).await
    }

    /// Waits until `workers` own all `shards` between them, each at least
    /// its fair share; returns how long that took.
    pub async fn wait_for_balance(
        &self,
        workers: &[String],
        shards: u16,
        limit: Duration,
    ) -> Duration {
        let started = Instant::now();
        let share = f64::from(shards).div_euclid(workers.len() as f64);
        loop {
            let mut owned = Vec::new();
            for w in workers {
                owned.push(
                    self.worker_metric(w, "worker_shards_owned")
                        .await
                        .unwrap_or(0.0),
                );
            }
            if owned.iter().sum::<f64>() == f64::from(shards) && owned.iter().all(|&o| o >= share) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "shards not balanced within {limit:?}: {owned:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs the worker binary with a subcommand against this system.
    pub async fn worker_command(&self, args: &[&str]) -> std::process::Output {
        let out = tokio::process::Command::new(self.bin_dir.join("worker"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "worker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Process ids of the running processes, by label (`api`, `worker-0`, …),
    /// e.g. to account their CPU time.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let processes = self.processes.lock().unwrap();
        processes
            .iter()
            .filter_map(|p| Some((p.label.clone(), p.child.as_ref()?.id())))
            .collect()
    }

    /// Where the processes of this system write their logs.
    pub fn log_dir(&self) -> PathBuf {
        self.bin_dir.join("test-logs").join(&self.name)
    }

    fn spawn(&self, binary: &str, label: &str, extra: &[(&str, String)]) {
        let env: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let addr = env
            .iter()
            .find(|(k, _)| k == "API_ADDR" || k == "METRICS_ADDR")
            .map(|(_, addr)| addr.clone())
            .expect("every service gets API_ADDR or METRICS_ADDR");
        let child = self.launch(binary, label, &env);
        self.processes.lock().unwrap().push(Process {
            label: label.to_owned(),
            binary: binary.to_owned(),
            env,
            ops_url: format!("http://{addr}"),
            child: Some(child),
        });
    }

    /// Starts `binary`, logging to `<label>.log` (appending across restarts).
    fn launch(&self, binary: &str, label: &str, extra: &[(String, String)]) -> Child {
        let logs = self.log_dir();
        std::fs::create_dir_all(&logs).unwrap();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(logs.join(format!("{label}.log")))
            .unwrap();
        Command::new(self.bin_dir.join(binary))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (run `cargo build --bins` first): {e}")
            })
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_none_exited();
            // Health, not readiness: some tests start a system whose broker is down.
            let ready = self
                .http
                .get(format!("{}/healthz", self.base_url))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "api not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the processes and removes the database and vhost.
    pub async fn finish(mut self) {
        self.kill_all();
        self.sandbox.remove().await;
    }

    fn kill_all(&mut self) {
        // Also after a test failed while holding the lock: never leave
        // processes behind.
        let processes = self
            .processes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for process in processes {
            if let Some(mut child) = process.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.kill_all();
    }
}

impl Sandbox {
    /// Creates the database and, unless `options.amqp_url` names a broker,
    /// a vhost of the same name; the API that will serve them is to listen
    /// at `base_url`. Migrations are the API's to run.
    pub async fn create(options: &Options, base_url: String) -> Self {
        let name = format!("t_{}", Uuid::new_v4().simple());
        let admin_db_url = options
            .admin_db_url
            .clone()
            .unwrap_or_else(|| env("TEST_DATABASE_URL"));
        let database_url = create_database(&admin_db_url, &name).await;
        let vhost = options.amqp_url.is_none().then(|| name.clone());
        if let Some(vhost) = &vhost {
            create_vhost(vhost).await;
        }
        // TEST_AMQP_URL may list the nodes of a cluster: each gets the vhost.
        let amqp_url = options.amqp_url.clone().unwrap_or_else(|| {
            let nodes: Nodes = env("TEST_AMQP_URL")
                .parse()
                .expect("TEST_AMQP_URL lists AMQP URLs");
            nodes
                .urls()
                .map(|node| {
                    let mut url = reqwest::Url::parse(node).expect("an AMQP URL is a URL");
                    url.set_path(&format!("/{name}"));
                    url.to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
        });
        Self {
            name,
            base_url,
            http: Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            database_url,
            amqp_url,
            vhost,
            admin_db_url,
            db: tokio::sync::OnceCell::new(),
        }
    }

    /// Removes the database and vhost (whatever still uses them is cut off).
    pub async fn remove(&self) {
        if let Some(pool) = self.db.get() {
            pool.close().await;
        }
        drop_database(&self.admin_db_url, &self.name).await;
        if let Some(vhost) = &self.vhost {
            delete_vhost(vhost).await;
        }
    }

    /// A metric of the API, summed over its label sets, as its `/metrics`
    /// shows it (`None` if absent).
    pub async fn api_metric(&self, metric: &str) -> Option<f64> {
        self.metric_at(&format!("{}/metrics", self.base_url), metric)
            .await
    }

    async fn metric_at(&self, url: &str, metric: &str) -> Option<f64> {
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with([' ', '{']))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    }

    /// This sandbox's database, for checking invariants directly.
    pub async fn db(&self) -> &PgPool {
        self.db
            .get_or_init(|| async { PgPool::connect(&self.database_url).await.unwrap() })
            .await
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(ADMIN_TOKEN)
    }

    pub async fn create_show(&self, body: Value) -> Value {
        let res = self
            .admin(Method::POST, "/v1/shows")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "creating show: {}",
            res.text().await.unwrap()
        );
        res.json().await.unwrap()
    }

    /// A general-admission show; returns its id.
    pub async fn ga_show(&self, capacity: i32) -> String {
        let show = self
            .create_show(json!({
                "name": "Open Air", "venue": "The Park", "starts_at": "2030-06-01T19:00:00Z",
                "capacity": capacity, "price_cents": 2500
            }))
            .await;
        show["id"].as_str().unwrap().to_owned()
    }

    /// A seated show with one section of `rows` rows of `per_row` seats.
    pub async fn seated_show(&self, rows: usize, per_row: i32) -> String {
        let rows: Vec<Value> = (0..rows)
            .map(|r| json!({"row": ((b'A' + r as u8) as char).to_string(), "seats": per_row}))
            .collect();
        let show = self
            .create_show(json!({
                "name": "Hamlet", "venue": "The Globe", "starts_at": "2030-06-01T19:00:00Z",
                "sections": [{"name": "Stalls", "price_cents": 4000, "rows": rows}]
            }))
            .await;
        show["id"].as_str().unwrap().to_owned()
    }

    pub async fn seat_ids(&self, show: &str) -> Vec<String> {
        self.seat_map(show).await["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn seat_map(&self, show: &str) -> Value {
        self.get_json(&format!("/v1/shows/{show}/seats")).await
    }

    pub async fn show(&self, show: &str) -> Value {
        self.get_json(&format!("/v1/shows/{show}")).await
    }

    /// A show's sales, through the admin API.
    pub async fn sales(&self, show: &str) -> Value {
        self.admin_json(&format!("/v1/shows/{show}/sales")).await
    }

    /// `GET path` as the bootstrap admin; expects 200.
    pub async fn admin_json(&self, path: &str) -> Value {
        let res = self.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.request(Method::GET, path).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    pub async fn book(&self, show: &str, body: Value) -> Response {
        self.request(Method::POST, &format!("/v1/shows/{show}/bookings"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Books and expects a 202; returns the booking id.
    pub async fn book_accepted(&self, show: &str, body: Value) -> String {
        let res = self.book(show, body).await;
        assert_eq!(res.status(), 202, "booking: {}", res.text().await.unwrap());
        let booking: Value = res.json().await.unwrap();
        booking["id"].as_str().unwrap().to_owned()
    }

    pub async fn booking(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/bookings/{id}")).await
    }

    /// Polls a booking until `done` holds for it (30 s at most).
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let booking = self.booking(id).await;
            if done(&booking) {
                return booking;
            }
            assert!(
                Instant::now() < deadline,
                "booking {id} never became {what}: {booking}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Confirms a held booking with a good card: expects 202, then polls
    /// until it is confirmed and returns it.
    pub async fn confirm(&self, id: &str) -> Value {
        let res = self
            .post(
                &format!("/v1/bookings/{id}/confirm"),
                json!({"payment_token": "tok_visa"}),
            )
            .await;
        assert_eq!(res.status(), 202, "confirming {id}");
        self.wait_for(id, "confirmed", |b| b["status"] == "confirmed")
            .await
    }

    /// Polls until the booking has left `queued`.
    pub async fn decided(&self, id: &str) -> Value {
        self.wait_for(id, "decided", |b| b["status"] != "queued")
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Every booking of a show, through the admin API.
    pub async fn bookings_of(&self, show: &str) -> Vec<Value> {
        let res = self
            .admin(
                Method::GET,
                &format!("/v1/bookings?show_id={show}&limit=1000"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let list: Value = res.json().await.unwrap();
        list["bookings"].as_array().unwrap().clone()
    }
}

/// Where the binaries under test are by default: next to this test's own
/// executable.
fn test_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap().to_path_buf()
}

/// A port for a service to listen on. The kernel's free port is free only
/// until the service binds it, and the tests run as many processes (one
/// per test under nextest): another test could be handed the same port in
/// between, and its `/healthz` would then answer for ours. So every port
/// handed out is also reserved by creating a file named after it; a
/// reservation older than any test lasts is stale and may be taken over.
pub fn free_port() -> u16 {
    const STALE: Duration = Duration::from_secs(30 * 60);
    let dir = std::env::temp_dir().join("booking-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = dir.join(port.to_string());
        let reserved = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .is_ok();
        let stale = || {
            std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default() > STALE)
        };
        if reserved || (stale() && std::fs::write(&file, std::process::id().to_string()).is_ok()) {
            return port;
        }
    }
}

async fn psql(admin_url: &str, sql: &str) {
    let status = tokio::process::Command::new("psql")
        .args([admin_url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .await
        .expect("psql is installed");
    assert!(status.success(), "psql failed: {sql}");
}

async fn create_database(admin_url: &str, name: &str) -> String {
    psql(admin_url, &format!("CREATE DATABASE {name}")).await;
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

async fn drop_database(admin_url: &str, name: &str) {
    psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
}

/// The management API base URL and its credentials.
pub fn management() -> (String, String, String) {
    let url = reqwest::Url::parse(&env("TEST_RABBITMQ_MANAGEMENT_URL")).unwrap();
    let user = if url.username().is_empty() {
        "guest"
    } else {
        url.username()
    }
    .to_owned();
    let pass = url.password().unwrap_or("guest").to_owned();
    let base = format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    );
    (base, user, pass)
}

/// A GET on the RabbitMQ management HTTP API (`path` from `/api` on), as
/// JSON; `None` if it does not answer within 2 s or answers nonsense: for
/// callers that watch a run and must not stop it (the benchmark).
pub async fn management_get(path: &str) -> Option<Value> {
    let (base, user, pass) = management();
    Client::new()
        .get(format!("{base}{path}"))
        .basic_auth(user, Some(pass))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Calls the RabbitMQ management HTTP API; panics unless it succeeds.
pub async fn management_call(method: Method, path: &str, body: Option<Value>) -> Value {
    let (base, user, pass) = management();
    let mut req = Client::new()
        .request(method, format!("{base}{path}"))
        .basic_auth(user, Some(pass));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

/// The messages waiting in `queue` (a dead-letter queue, say), left in place.
pub async fn dead_letters(vhost: &str, queue: &str) -> Vec<Value> {
    let got = management_call(
        Method::POST,
        &format!("/api/queues/{vhost}/{queue}/get"),
        Some(json!({"count": 50, "ackmode": "ack_requeue_true", "encoding": "auto"})),
    )
    .await;
    got.as_array().cloned().unwrap_or_default()
}

async fn create_vhost(vhost: &str) {
    let (base, user, pass) = management();
    let http = Client::new();
    let res = http
        .put(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth(&user, Some(&pass))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "creating vhost: {}",
        res.status()
    );
    let res = http
        .put(format!("{base}/api/permissions/{vhost}/{user}"))
        .basic_auth(&user, Some(&pass))
        .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "granting vhost: {}",
        res.status()
    );
}

async fn delete_vhost(vhost: &str) {
    let (base, user, pass) = management();
    let _ = Client::new()
        .delete(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth(&user, Some(&pass))
        .send()
        .await;
}
