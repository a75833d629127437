use super::*;

// ---- the clients ---------------------------------------------------------------------

/// A tree reduction of `leaves` sleeping leaves (each returns its number)
/// with fan-in 4; the root's expected value.
fn tree(prefix: &str, leaves: usize, sleep: f64, offset: i64) -> (Vec<TaskSpec>, Key, i64) {
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|i| {
            let key = Key::from(format!("{prefix}-leaf-{i}"));
            let n = Value::from(offset + i as i64);
            task_spec(key, "sleep", &[Value::from(sleep), n], &[])
        })
        .collect();
    let keys = tasks.iter().map(|t| t.key.clone()).collect();
    let (sums, root) = graphs::reduction(keys, 4, |n| {
        let key = Key::from(format!("{prefix}-sum-{}-{}", n.depth, n.index));
        task_spec(key, "sum", &[Value::Array(graphs::refs(n.inputs))], &[])
    });
    tasks.extend(sums);
    let expected = (0..leaves as i64).map(|i| offset + i).sum();
    (tasks, root, expected)
}

/// Values moving between workers: `leaves` binaries of random sizes, the
/// length of each, and one task that takes them all (so they are fetched
/// to one worker); the root adds the lengths and the count.
fn transfers(prefix: &str, leaves: usize, rng: &mut Rng) -> (Vec<TaskSpec>, Key, i64) {
    let mut tasks = Vec::new();
    let mut lengths = Vec::new();
    let mut all = Vec::new();
    let mut expected = leaves as i64;
    for i in 0..leaves {
        let size = 64 * 1024 + rng.below(2 * 1024 * 1024);
        expected += size as i64;
        let leaf = Key::from(format!("{prefix}-bytes-{i}"));
        tasks.push(task_spec(
            leaf.clone(),
            "random_bytes",
            &[Value::from(size as u64), Value::from(i as u64 + 1)],
            &[],
        ));
        let len = Key::from(format!("{prefix}-len-{i}"));
        tasks.push(task_spec(
            len.clone(),
            "len",
            &[task_ref_value(leaf.as_str())],
            &[],
        ));
        lengths.push(task_ref_value(len.as_str()));
        all.push(task_ref_value(leaf.as_str()));
    }
    let count = Key::from(format!("{prefix}-count"));
    tasks.push(task_spec(count.clone(), "len", &[Value::Array(all)], &[]));
    lengths.push(task_ref_value(count.as_str()));
    let root = Key::from(format!("{prefix}-total"));
    tasks.push(task_spec(
        root.clone(),
        "sum",
        &[Value::Array(lengths)],
        &[],
    ));
    (tasks, root, expected)
}

/// Runs graphs until `stop`; each result checked. Returns how many ran.
pub(super) fn client_loop(
    cluster_client: Client,
    index: usize,
    seed: u64,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1)) | 1);
    let mut graphs = 0;
    while !stop.load(Ordering::SeqCst) {
        let prefix = format!("c{index}-g{graphs}");
        let (leaves, (tasks, root, expected)) = if rng.chance(30) {
            let leaves = 4 + rng.below(20);
            (leaves, transfers(&prefix, leaves, &mut rng))
        } else {
            let leaves = 16 + rng.below(240);
            let sleep = [0.0, 0.001, 0.01][rng.below(3)];
            let offset = rng.below(1_000_000) as i64;
            (leaves, tree(&prefix, leaves, sleep, offset))
        };
        let futures = cluster_client.submit_tasks(tasks, vec![root.clone()]);
        let got = futures[0].result_timeout(GRAPH_PATIENCE).map_err(|e| {
            // Where the work stands, for the report.
            let workers = cluster_client.workers().map_or_else(
                |e| format!("(workers: {e})"),
                |ws| {
                    ws.iter()
                        .map(|w| {
                            format!(
                                "{}: {} processing, {} stored",
                                w.name, w.processing, w.stored_keys
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            );
            format!("client {index}, graph {prefix} ({leaves} leaves): {e}; workers: {workers}")
        })?;
        if got != Value::from(expected) {
            return Err(format!(
                "client {index}, graph {prefix} ({leaves} leaves): got {got}, expected {expected}"
            ));
        }
        drop(futures);
        graphs += 1;
    }
    Ok(graphs)
}

/// A client connection without the client library, proving the client
/// secret. Its requests may stop being read (backpressure): a send gives
/// up after a second instead of blocking for ever.
fn raw_client(address: &str, credentials: &Credentials, name: &str) -> Option<BlockingConn> {
    let (conn, _) = BlockingConn::connect_proving(
        address,
        Role::Client,
        Role::Scheduler,
        Some(name.into()),
        Duration::from_secs(10),
        Some(credentials),
    )
    .ok()?;
    conn.stream()
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    Some(conn)
}

/// Asks for the large value again and again on connections it never
/// reads, each kept a few seconds; the scheduler's bounds hold it back.
pub(super) fn slow_reader(
    address: &str,
    credentials: &Credentials,
    big: &Key,
    stop: &AtomicBool,
) -> u64 {
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut conn) = raw_client(address, credentials, "chaos-slow-reader") else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let until = Instant::now() + Duration::from_secs(8);
        let mut request = 0;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            request += 1;
            let gather = Message::Gather(Gather {
                request,
                keys: vec![big.clone()],
            });
            if conn.send(&[gather]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    sent
}

/// Connects, submits a graph, asks for some of its keys, and vanishes
/// (the socket dropped, no `close`) at a random point, again and again:
/// the scheduler releases what it wanted, gathers in flight included.
pub(super) fn vanishing_client(
    address: &str,
    credentials: &Credentials,
    seed: u64,
    stop: &AtomicBool,
) -> u64 {
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut vanished = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut conn) = raw_client(address, credentials, "chaos-vanishing") else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let prefix = format!("vanishing-{vanished}");
        let leaves = 8 + rng.below(120);
        let (tasks, root, _) = tree(&prefix, leaves, 0.005, 0);
        let some: Vec<Key> = tasks.iter().take(4).map(|t| t.key.clone()).collect();
        let update = Message::UpdateGraph(UpdateGraph {
            request: 1,
            tasks,
            wanted: vec![root],
            ack: None,
        });
        if conn.send(&[update]).is_ok() {
            std::thread::sleep(Duration::from_millis(rng.below(500) as u64));
            let gather = Message::Gather(Gather {
                request: 2,
                keys: some,
            });
            let _ = conn.send(&[gather]);
            std::thread::sleep(Duration::from_millis(rng.below(300) as u64));
        }
        drop(conn);
        vanished += 1;
    }
    vanished
}
