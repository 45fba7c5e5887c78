//! Schemathesis (PyPI) against the API's own OpenAPI document: every
//! operation, all its checks, with the admin's token. No server error, and
//! no answer (status, media type, body, headers) the document does not
//! describe; valid requests accepted, invalid ones refused.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tests::system::ADMIN_TOKEN;
use tests::System;

/// 50 examples per operation and phase: 30 to 60 s on a 2-core machine
/// against debug binaries, inside the two minutes this test may take, and
/// enough for the coverage phase's boundary values plus a fuzzing sample
/// of each operation and a dozen stateful scenarios (show → booking →
/// confirm → cancel, webhook → delete). One worker: with two, Hypothesis'
/// caches (not thread-safe) now and then crash the run, and it is no
/// faster here.
const MAX_EXAMPLES: &str = "50";
const WORKERS: &str = "1";
/// A hung run fails the test instead of the suite's time limit.
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// `SCHEMATHESIS` (what scripts/test installs), else `schemathesis` on the
/// PATH; a test that cannot run it fails, saying how to get it.
fn schemathesis() -> PathBuf {
    let program = std::env::var_os("SCHEMATHESIS").map_or("schemathesis".into(), PathBuf::from);
    let version = std::process::Command::new(&program)
        .arg("--version")
        .output();
    match version {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("version 4.") => program,
        found => panic!(
            "Schemathesis 4 is needed at {} (SCHEMATHESIS, else the PATH) but {}: run the \
             tests with scripts/test, which installs it into .local/schemathesis, or \
             `pip install 'schemathesis==4.32.5'` and set SCHEMATHESIS to its `schemathesis`",
            program.display(),
            match found {
                Ok(out) => format!("it answers {:?}", String::from_utf8_lossy(&out.stdout)),
                Err(err) => format!("it cannot be run ({err})"),
            }
        ),
    }
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let program = schemathesis();
    let sys = System::start().await;
    // The fuzzer registers webhooks at URLs it makes up, real domains among
    // them: with no notifier, nothing is ever sent there.
    sys.kill("notifier");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let started = Instant::now();
    let run = tokio::process::Command::new(&program)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", sys.base_url)])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--max-examples", MAX_EXAMPLES, "--workers", WORKERS])
        .args(["--continue-on-failure", "--no-color"])
        // Whatever it writes (reports, its cache) stays with the logs.
        .current_dir(sys.log_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIME_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis still running after {TIME_LIMIT:?}"))
        .expect("schemathesis runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems ({}; service logs in {}):\n{report}",
        out.status,
        sys.log_dir().display()
    );
    eprintln!(
        "schemathesis passed in {:.0?}:\n{report}",
        started.elapsed()
    );
    sys.finish().await;
}
