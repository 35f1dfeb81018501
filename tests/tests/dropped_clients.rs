//! A client that disappears mid-query (a killed `tributary load`, a Lambda
//! timeout) does not leave its query running on the server: every
//! connection Tributary opens asks PostgreSQL to check the socket while a
//! query runs.

use std::time::{Duration, Instant};

use tributary_e2e::TestDb;
use tributary_pipeline::db::{CLIENT_CHECK_INTERVAL, connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_of_a_vanished_client_stops_within_seconds() {
    let Some(db) = TestDb::create("dropped_client").await else {
        return;
    };
    let observer = db.connect().await;

    // The client lives in a runtime of its own, so that shutting the
    // runtime down closes its socket mid-query, as a killed process would.
    let url = db.url.clone();
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = connect(&url, "warehouse", "WAREHOUSE_DATABASE_URL", None)
                .await
                .unwrap();
            let row = client
                .query_one(
                    "SELECT pg_backend_pid(), current_setting('client_connection_check_interval')",
                    &[],
                )
                .await
                .unwrap();
            pid_tx
                .send((row.get::<_, i32>(0), row.get::<_, String>(1)))
                .unwrap();
            tokio::spawn(async move {
                let _ = client.batch_execute("SELECT pg_sleep(120)").await;
            });
            tokio::task::spawn_blocking(move || stop_rx.recv())
                .await
                .ok();
        });
        runtime.shutdown_background();
    });
    let (pid, interval) = pid_rx.recv().unwrap();
    assert_eq!(interval, CLIENT_CHECK_INTERVAL);
    // Wait until the sleep is running, then take the client away.
    let started = Instant::now();
    loop {
        let active: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if active == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the query never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    thread.join().unwrap();
    let dropped = Instant::now();
    loop {
        let alive: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if alive == 0 {
            break;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(20),
            "the vanished client's query still runs after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "the server ended the query {:?} after the client vanished",
        dropped.elapsed()
    );
}
