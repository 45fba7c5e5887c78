//! Private PostgreSQL and RabbitMQ servers for fault-injection tests.
//!
//! A test that crashes the database or the broker must not take the shared
//! servers (and every other test) down with it, so it starts its own
//! instances here: own directories under the temp dir, own ports, own node
//! name. Each server process is our own child and is always reaped, because
//! PID 1 on these machines leaves orphans as zombies.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// How long any start, crash or restart may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cluster node may take to boot: one that comes back after a
/// crash first syncs its tables with its peers, which on a loaded machine
/// (the rest of the suite beside a sale) has taken longer than [`TIMEOUT`].
const CLUSTER_BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";
/// As `scripts/services.sh` runs a cluster: a peer that stops answering
/// (frozen, cut off) is declared down after 7.5–12.5 s instead of the
/// default 45–75 s, during which it stalls every node that sends to it.
/// The CLI tools get the same, or their sessions would look dead.
const NET_TICKTIME: &str = "-kernel net_ticktime 10";

/// A server a fault test can crash and bring back.
pub trait Restartable {
    /// Dies at once, like a power cut.
    fn crash(&mut self) -> impl std::future::Future<Output = ()>;
    /// Starts again on the same data, ports and name.
    fn start_again(&mut self) -> impl std::future::Future<Output = ()>;
}

impl Restartable for PrivatePostgres {
    async fn crash(&mut self) {
        PrivatePostgres::crash(self).await
    }
    async fn start_again(&mut self) {
        PrivatePostgres::start_again(self).await
    }
}

impl Restartable for PrivateBroker {
    async fn crash(&mut self) {
        PrivateBroker::crash(self).await
    }
    async fn start_again(&mut self) {
        PrivateBroker::start_again(self).await
    }
}

/// A private PostgreSQL cluster for one test (Debian's
/// `/usr/lib/postgresql/<version>/bin`), crashable and restartable on the
/// same port and data directory.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The postmaster.
    server: Option<Child>,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let mut pg = Self {
            bin: pg_bin_dir(),
            dir: fresh_dir("pg"),
            port: restartable_port(),
            server: None,
        };
        let (data, sockets) = (pg.data(), pg.dir.join("sockets"));
        for dir in [&data, &sockets] {
            std::fs::create_dir(dir).unwrap();
        }
        if let Some((uid, gid)) = postgres_user() {
            for dir in [&pg.dir, &data, &sockets] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
            }
            let mut reach = as_postgres("test");
            reach.arg("-w").arg(&data);
            assert!(
                output(reach).await.status.success(),
                "the postgres user cannot write {}: make every parent directory traversable \
                 or point TMPDIR elsewhere",
                data.display()
            );
        }
        let mut initdb = as_postgres(pg.bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "booking",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            // Crashes here kill processes, not the kernel: the page cache
            // survives them, so syncing the fresh cluster would only cost time.
            "--no-sync",
        ]);
        run(initdb, "initdb").await;
        // Crash recovery first fsyncs every file of the cluster one by one,
        // which takes seconds on these machines; one syncfs is as safe.
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             max_connections = 200\nfsync = on\nrecovery_init_sync_method = syncfs\n",
            pg.port,
            sockets.display()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap();
        pg.start_again().await;
        pg
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://booking@127.0.0.1:{}/postgres", self.port)
    }

    /// Like a power cut for the server: `pg_ctl stop -m immediate` kills it
    /// without a checkpoint, so the next start runs crash recovery.
    pub async fn crash(&mut self) {
        let mut server = self.server.take().expect("PostgreSQL is not running");
        run(self.pg_ctl_stop(), "pg_ctl stop -m immediate").await;
        reap(&mut server, "PostgreSQL").await;
        assert!(
            !accepts_tcp(self.port).await,
            "PostgreSQL still accepts connections after the crash"
        );
    }

    /// Starts the server on the same port and data directory and waits until
    /// it accepts connections (after crash recovery).
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "PostgreSQL is already running");
        let log = append(&self.log());
        let mut postgres = as_postgres(self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.data())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let server = self
            .server
            .insert(postgres.spawn().expect("cannot start postgres"));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = server.try_wait().unwrap() {
                panic!(
                    "PostgreSQL exited during start-up ({status}):\n{}",
                    tail(&self.log())
                );
            }
            let mut ready = Command::new(self.bin.join("pg_isready"));
            ready.args(["-q", "-h", "127.0.0.1", "-U", "booking", "-d", "postgres"]);
            ready.arg("-p").arg(self.port.to_string());
            if output(ready).await.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL not ready within {TIMEOUT:?}:\n{}",
                tail(&self.log())
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the postmaster and every backend (SIGSTOP) without closing
    /// a connection: the server is there and answers nothing, as when its
    /// machine hangs or its disk stalls.
    pub fn freeze(&self) {
        signal_tree(self.postmaster(), "-STOP");
    }

    /// Lets a [`Self::freeze`]d server go on where it stopped.
    pub fn thaw(&self) {
        signal_tree(self.postmaster(), "-CONT");
    }

    fn postmaster(&self) -> u32 {
        self.server
            .as_ref()
            .expect("PostgreSQL is not running")
            .id()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn pg_ctl_stop(&self) -> Command {
        let mut stop = as_postgres(self.bin.join("pg_ctl"));
        stop.arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "60"]);
        stop
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self
                .pg_ctl_stop()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            reap_blocking(server);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private RabbitMQ node (Debian's 3.10), crashable and restartable with
/// its durable state.
pub struct PrivateBroker {
    dir: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
    /// Where the management API answers, if the node has it.
    management_port: Option<u16>,
    /// How long a start may take.
    boot_timeout: Duration,
    /// The `rabbitmq-server` script; the Erlang VM is its child, so the
    /// script reaps the VM when we kill it, and we reap the script.
    server: Option<Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        Self::start_node(None, false).await
    }

    /// A node with the Erlang `cookie` (nodes that share one can form a
    /// cluster) and, if asked, the management API (on [`Self::management_url`],
    /// with statistics every half second so tests see queue rates quickly).
    pub(crate) async fn start_node(cookie: Option<&str>, management: bool) -> Self {
        let dir = fresh_dir("rabbitmq");
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }
        let management_port = management.then(restartable_port);
        let plugins = if management {
            "[rabbitmq_management].\n"
        } else {
            "[].\n"
        };
        std::fs::write(dir.join("enabled_plugins"), plugins).unwrap();
        let mut conf = String::new();
        if let Some(port) = management_port {
            conf.push_str(&format!(
                "management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {port}\n\
                 collect_statistics_interval = 500\n"
            ));
        }
        if cookie.is_some() {
            // As `scripts/services.sh` runs a cluster: after a partition (a
            // node frozen, then thawed), the smaller side restarts and rejoins.
            conf.push_str("cluster_partition_handling = autoheal\n");
        }
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        if let Some(cookie) = cookie {
            let path = dir.join("home").join(".erlang.cookie");
            std::fs::write(&path, cookie).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o400))
                .unwrap();
        }
        let mut broker = Self {
            node: format!(
                "fault{}@localhost",
                &Uuid::new_v4().simple().to_string()[..12]
            ),
            dir,
            port: restartable_port(),
            dist_port: restartable_port(),
            management_port,
            boot_timeout: if cookie.is_some() {
                CLUSTER_BOOT_TIMEOUT
            } else {
                TIMEOUT
            },
            server: None,
        };
        broker.start_again().await;
        broker
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The Erlang node name, as RabbitMQ reports it (`…@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// `http://127.0.0.1:<port>` of the management API.
    pub fn management_url(&self) -> String {
        let port = self
            .management_port
            .expect("this node has no management API");
        format!("http://127.0.0.1:{port}")
    }

    /// Stops the node the way an operator does (`rabbitmqctl stop`: clients
    /// are disconnected, queues hand over leadership) and waits until it
    /// is gone.
    pub async fn stop(&mut self) {
        let mut server = self.server.take().expect("RabbitMQ is not running");
        run(self.ctl(&["stop"]), "rabbitmqctl stop").await;
        reap(&mut server, "rabbitmq-server").await;
    }

    /// Makes this (fresh) node a member of `seed`'s cluster.
    pub(crate) async fn join(&mut self, seed: &str) {
        for args in [
            &["stop_app"][..],
            &["reset"],
            &["join_cluster", seed],
            &["start_app"],
        ] {
            run(self.ctl(args), &format!("rabbitmqctl {}", args[0])).await;
        }
        let deadline = Instant::now() + self.boot_timeout;
        while !accepts_tcp(self.port).await {
            assert!(
                Instant::now() < deadline,
                "{} not back after joining:\n{}",
                self.node,
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `rabbitmqctl` against this node, with its cookie.
    fn ctl(&self, args: &[&str]) -> Command {
        let mut ctl = Command::new(Path::new(RABBITMQ_BIN).join("rabbitmqctl"));
        clear_rabbitmq_env(&mut ctl);
        ctl.env("HOME", self.dir.join("home"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CTL_ERL_ARGS", NET_TICKTIME)
            .args(["-n", &self.node])
            .args(args);
        ctl
    }

    /// SIGKILLs the Erlang VM: no clean shutdown, like a power cut for the
    /// broker (confirmed messages in durable queues are on disk already).
    ///
    /// Let half a second pass between declaring a quorum queue and a crash:
    /// RabbitMQ 3.10 (Ra 2.2) records a new queue in a DETS table saved 500 ms
    /// after its last change, and a queue killed before that comes back empty
    /// and without a leader (every operation on it times out).
    pub async fn crash(&mut self) {
        let mut server = self.server.take().expect("RabbitMQ is not running");
        let beams = self.beams();
        assert!(!beams.is_empty(), "RabbitMQ's Erlang VM is not running");
        let mut kill = Command::new("kill");
        kill.arg("-KILL").args(&beams);
        run(kill, "kill").await;
        reap(&mut server, "rabbitmq-server").await;
        assert!(
            !accepts_tcp(self.port).await,
            "RabbitMQ still accepts connections after the crash"
        );
    }

    /// Starts the node again under the same name, ports and mnesia directory
    /// (so durable queues and persistent messages come back) and waits until
    /// it accepts AMQP connections.
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "RabbitMQ is already running");
        let log = append(&self.dir.join("server.log"));
        let mut server = Command::new(Path::new(RABBITMQ_BIN).join("rabbitmq-server"));
        clear_rabbitmq_env(&mut server);
        let file = |name: &str| self.dir.join(name);
        server
            // The Erlang cookie lives in $HOME: a private one per node.
            .env("HOME", file("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", file("mnesia"))
            .env("RABBITMQ_LOG_BASE", file("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", file("enabled_plugins"))
            // Files that do not exist, so that nothing in /etc/rabbitmq applies.
            .env("RABBITMQ_CONFIG_FILE", file("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", file("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", file("rabbitmq-env.conf"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                format!("-kernel inet_dist_use_interface {{127,0,0,1}} {NET_TICKTIME}"),
            )
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let server = self
            .server
            .insert(server.spawn().expect("cannot start rabbitmq-server"));
        // Client listeners start last, after plugins and queue recovery, so
        // an open AMQP port means the node has booted.
        let deadline = Instant::now() + self.boot_timeout;
        loop {
            if let Some(status) = server.try_wait().unwrap() {
                panic!(
                    "RabbitMQ exited during start-up ({status}):\n{}",
                    self.logs()
                );
            }
            if accepts_tcp(self.port).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "RabbitMQ not ready within {:?}:\n{}",
                self.boot_timeout,
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the node's Erlang VM (SIGSTOP) without closing a connection:
    /// clients and peers see a node that answers nothing.
    pub fn freeze(&self) {
        for beam in self.beams() {
            signal_tree(beam.parse().expect("a pid"), "-STOP");
        }
    }

    /// Lets a [`Self::freeze`]d node go on where it stopped.
    pub fn thaw(&self) {
        for beam in self.beams() {
            signal_tree(beam.parse().expect("a pid"), "-CONT");
        }
    }

    /// Pids of this node's Erlang VM, found by the `-home <dir>` argument on
    /// its command line rather than by the pid file: the VM writes that file
    /// only some way into its boot, and a killed VM leaves it behind. A
    /// zombie has an empty command line, so it never matches.
    fn beams(&self) -> Vec<String> {
        let home = self.dir.join("home");
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().into_string().ok()?;
                pid.parse::<u32>().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let mut args = cmdline.split(|&b| b == 0);
                (args.any(|arg| arg == b"-home")
                    && args.next() == Some(home.as_os_str().as_bytes()))
                .then_some(pid)
            })
            .collect()
    }

    pub fn logs(&self) -> String {
        let node_log = self.dir.join("log").join(format!("{}.log", self.node));
        format!(
            "{}\n{}",
            tail(&self.dir.join("server.log")),
            tail(&node_log)
        )
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let beams = self.beams();
            if !beams.is_empty() {
                let _ = Command::new("kill").arg("-KILL").args(&beams).status();
            }
            reap_blocking(server);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `signal` to `root` and then to every process below it: a parent
/// is signalled before its children are listed, so a stopped one cannot
/// fork a child that the signal misses.
fn signal_tree(root: u32, signal: &str) {
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .expect("kill runs");
        // A child may have exited since it was listed; the root may not.
        assert!(status.success() || pid != root, "kill {signal} {pid}");
        pending.extend(children_of(pid));
    }
}

/// The processes whose parent is `pid` (from `/proc/<pid>/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// Inherited RABBITMQ_* or ERL_* settings could point at the shared node.
fn clear_rabbitmq_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.as_bytes();
        if name.starts_with(b"RABBITMQ_") || name.starts_with(b"ERL_") {
            cmd.env_remove(OsStr::from_bytes(name));
        }
    }
}

/// A free port between the shared broker's 25672 and the kernel's ephemeral
/// range (32768 and up). A crashed server must get its port back on restart,
/// and an ephemeral port could meanwhile become the local end of some
/// outgoing connection. Ports are never handed out twice in this process, so
/// that a server that is down does not lose its port to another one.
fn restartable_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = 26_000 + (Uuid::new_v4().as_u128() % 6_768) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port between 26000 and 32767");
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn pg_bin_dir() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed in /usr/lib/postgresql")
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max()
        .expect("no /usr/lib/postgresql/<version>/bin/initdb")
        .1
}

/// The uid and gid of the `postgres` user if we are root (root owns
/// `/proc/self`), as PostgreSQL refuses to run as root.
fn postgres_user() -> Option<(u32, u32)> {
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let user = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    Some(user.expect("running as root needs a `postgres` user in /etc/passwd"))
}

/// A command run as `postgres` when we are root. Not through `runuser`: the
/// command is our own child then, which we can kill and must reap.
fn as_postgres(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = postgres_user() {
        cmd.uid(uid).gid(gid);
    }
    // The postgres user may not be allowed into our working directory.
    cmd.current_dir("/");
    cmd
}

/// A new directory for one server, unique across parallel tests.
fn fresh_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("booking-{kind}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn append(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

async fn accepts_tcp(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Runs a short command to completion. It is killed after the timeout, or
/// when the caller gives up on it, together with what it started (initdb's
/// bootstrap `postgres` outlives a killed initdb).
async fn output(cmd: Command) -> std::process::Output {
    let what = format!("{:?}", cmd.get_program());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let group = KillGroup(child.id().expect("a running child has a pid"));
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    std::mem::forget(group);
    out
}

/// SIGKILLs a process group when dropped.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a short command that must succeed; returns its standard output.
async fn run(cmd: Command, what: &str) -> String {
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for a server process we killed or stopped to exit.
async fn reap(child: &mut Child, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {TIMEOUT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `reap` for `Drop`: blocking, and kills the child if it does not exit.
fn reap_blocking(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// The end of a log file, for panic messages.
fn tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    use super::*;

    async fn select_one(pg: &PrivatePostgres) {
        let mut psql = Command::new("psql");
        psql.args([&pg.admin_url(), "-XqAt", "-c", "SELECT 1"]);
        assert_eq!(run(psql, "psql").await.trim(), "1");
    }

    #[tokio::test]
    async fn servers_crash_and_come_back() {
        let (mut pg, mut broker) = tokio::join!(PrivatePostgres::start(), PrivateBroker::start());
        select_one(&pg).await;
        assert!(accepts_tcp(broker.port).await);

        tokio::join!(pg.crash(), broker.crash());
        tokio::join!(pg.start_again(), broker.start_again());

        select_one(&pg).await;
        assert!(accepts_tcp(broker.port).await);
    }

    #[tokio::test]
    async fn confirmed_messages_in_a_quorum_queue_survive_a_broker_crash() {
        let mut broker = PrivateBroker::start().await;
        let url = broker.amqp_url();
        let connect = || Connection::connect(&url, ConnectionProperties::default());
        let conn = connect().await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare("survivors".into(), durable, args)
            .await
            .unwrap();
        // See `PrivateBroker::crash` on why not to crash at once.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 0..100 {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    "survivors".into(),
                    BasicPublishOptions::default(),
                    format!("message {i}").as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(confirm.is_ack());
        }

        broker.crash().await;
        broker.start_again().await;

        let conn = connect().await.unwrap();
        let channel = conn.create_channel().await.unwrap();
        let no_ack = BasicGetOptions { no_ack: true };
        for i in 0..100 {
            let message = channel
                .basic_get("survivors".into(), no_ack)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("message {i} was lost"));
            assert_eq!(message.delivery.data, format!("message {i}").as_bytes());
        }
        let rest = channel.basic_get("survivors".into(), no_ack).await.unwrap();
        assert!(rest.is_none(), "more messages than were published");
    }
}
