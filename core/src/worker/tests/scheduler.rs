//! The scheduler connection: registration, heartbeats, batched reports,
//! its end, and registering again after losing it.

use super::*;

fn scheduler_hello() -> Message {
    let mut hello = handshake::offer(Role::Scheduler, None);
    hello.id = Some(1);
    Message::from(hello)
}

fn worker_registered(id: u64) -> Message {
    Message::WorkerRegistered(WorkerRegistered {
        id,
        heartbeat_interval_ms: 1000,
        inline_bytes_max: None,
    })
}

fn finished(out: &[WorkerOutput]) -> Option<&Option<WorkerError>> {
    out.iter().find_map(|o| match o {
        WorkerOutput::Finished { error } => Some(error),
        _ => None,
    })
}

/// A worker that loses its scheduler after registering and tries to
/// register again for 30 s, every second.
fn reconnecting_worker() -> (WorkerState, Timestamp) {
    let now = Timestamp::ZERO;
    let mut config = config(1);
    config.reconnect_timeout = Duration::from_secs(30);
    (register(WorkerState::new(config, now), now), now)
}

#[test]
fn registration_pipelines_the_hello_alone_in_its_frame_then_register_worker() {
    let now = Timestamp::ZERO;
    let mut config = config(3);
    config.pid = Some(42);
    config.memory_limit = Some(1_000_000);
    config.resources.insert("GPU".into(), 2.0);
    let mut w = WorkerState::new(config, now);
    let out = drain(&mut w);
    let s = w.scheduler_conn().unwrap();
    let [WorkerOutput::Connect { address }, WorkerOutput::Send(c1, Message::Hello(hello)), WorkerOutput::EndFrame(c2), WorkerOutput::Send(c3, Message::RegisterWorker(r))] =
        &out[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(address, SCHEDULER_ADDRESS);
    assert_eq!([*c1, *c2, *c3], [s; 3]);
    assert_eq!(
        (hello.role, hello.name.as_deref()),
        (Role::Worker, Some("w"))
    );
    assert_eq!(
        (r.name.as_str(), r.address.as_str(), r.nthreads, r.pid),
        ("w", ME, 3, Some(42))
    );
    assert_eq!(r.memory_limit, Some(1_000_000));
    assert_eq!(r.functions, vec!["f", "g"]);
    assert_eq!(r.resources.as_ref().unwrap()["GPU"], 2.0);
    assert!(!w.is_registered());
    // Nothing but the registration before it: a compute-task is a
    // protocol error.
    w.handle_message(now, s, scheduler_hello());
    w.handle_message(now, s, compute("x", vec![], &[]));
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::Send(c1, Message::ErrorReport(e)),
            WorkerOutput::Close(c2),
            WorkerOutput::Finished { error: Some(WorkerError { kind: WorkerErrorKind::Protocol, .. }) },
        ] if e.code == ErrorCode::UnexpectedMessage.number() && [*c1, *c2] == [s; 2]
    ));
}

#[test]
fn heartbeats_follow_the_registered_interval() {
    let now = Timestamp::ZERO;
    let mut w = WorkerState::new(config(1), now);
    let _ = drain(&mut w);
    let s = w.scheduler_conn().unwrap();
    w.handle_message(now, s, scheduler_hello());
    assert_eq!(
        w.poll_timeout(),
        Some(now + REGISTER_TIMEOUT),
        "only the registration's deadline"
    );
    w.handle_scheduler_message(
        now,
        Message::WorkerRegistered(WorkerRegistered {
            id: 1,
            heartbeat_interval_ms: 50,
            inline_bytes_max: None,
        }),
    );
    let due = w.poll_timeout().unwrap();
    assert_eq!(due, now + Duration::from_millis(50));
    let _ = drain(&mut w);
    w.handle_timeout(now + Duration::from_millis(10));
    assert!(drain(&mut w).is_empty());
    w.handle_timeout(due);
    let out = drain(&mut w);
    assert!(matches!(
        to_scheduler(&out)[..],
        [Message::Heartbeat(Heartbeat { metrics: Some(_) })]
    ));
    assert_eq!(w.poll_timeout().unwrap(), due + Duration::from_millis(50));
}

#[test]
fn close_and_protocol_errors_end_the_scheduler_connection() {
    let (mut w, now) = worker(1);
    let s = w.scheduler_conn().unwrap();
    w.handle_scheduler_message(
        now,
        Message::Close(Close {
            reason: None,
            reconnect: None,
        }),
    );
    assert!(matches!(
        &drain(&mut w)[..],
        [
            WorkerOutput::Close(c),
            WorkerOutput::Finished { error: None }
        ] if *c == s
    ));
    assert!(w.is_finished());

    let (mut w, now) = worker(1);
    let s = w.scheduler_conn().unwrap();
    w.handle_scheduler_message(
        now,
        Message::GetDataset(crate::messages::GetDataset {
            request: 1,
            name: "x".into(),
        }),
    );
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::Send(
                c1,
                Message::ErrorReport(ErrorReport {
                    code: 2004,
                    fatal: true,
                    ..
                })
            ),
            WorkerOutput::Close(c2),
            WorkerOutput::Finished {
                error: Some(WorkerError {
                    kind: WorkerErrorKind::Lost,
                    ..
                })
            }
        ] if [*c1, *c2] == [s; 2]
    ));
    w.handle_scheduler_message(now, compute("x", vec![], &[]));
    assert!(drain(&mut w).is_empty(), "nothing after close");
}

#[test]
fn a_refusal_an_unreachable_scheduler_and_silence_end_the_registration() {
    let now = Timestamp::ZERO;
    let mut w = WorkerState::new(config(1), now);
    let _ = drain(&mut w);
    let s = w.scheduler_conn().unwrap();
    let e = WireError::new(ErrorCode::NameInUse, "taken");
    w.handle_message(now, s, Message::error(&e, None));
    let out = drain(&mut w);
    let Some(Some(error)) = finished(&out) else {
        panic!("{out:?}");
    };
    assert_eq!(error.kind, WorkerErrorKind::Refused);
    assert!(error.message.contains("(3004): taken"), "{error}");

    let mut w = WorkerState::new(config(1), now);
    let _ = drain(&mut w);
    let s = w.scheduler_conn().unwrap();
    w.handle_closed(now, s, "connection refused");
    let out = drain(&mut w);
    let Some(Some(error)) = finished(&out) else {
        panic!("{out:?}");
    };
    assert_eq!(error.kind, WorkerErrorKind::Unreachable);
    assert!(error.message.contains("connection refused"), "{error}");

    let mut w = WorkerState::new(config(1), now);
    let _ = drain(&mut w);
    let s = w.scheduler_conn().unwrap();
    w.handle_message(now, s, scheduler_hello());
    w.handle_timeout(now + REGISTER_TIMEOUT);
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::Send(c1, Message::Close(_)),
            WorkerOutput::Close(c2),
            WorkerOutput::Finished {
                error: Some(WorkerError {
                    kind: WorkerErrorKind::TimedOut,
                    ..
                })
            },
        ] if [*c1, *c2] == [s; 2]
    ));

    // A connect that cannot even start.
    let mut w = WorkerState::new(config(1), now);
    assert!(matches!(
        w.poll_output(),
        Some(WorkerOutput::Connect { .. })
    ));
    w.handle_connecting(now, Err("invalid address".into()));
    let out = drain(&mut w);
    let Some(Some(error)) = finished(&out) else {
        panic!("{out:?}");
    };
    assert_eq!(error.kind, WorkerErrorKind::Unreachable);
    assert!(error.message.contains("invalid address"), "{error}");
}

#[test]
fn stop_says_close_and_finishes() {
    let (mut w, now) = worker(1);
    let s = w.scheduler_conn().unwrap();
    let peer = incoming(&mut w, now);
    w.handle_stop(now);
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::Send(c1, Message::Close(_)),
            WorkerOutput::Close(c2),
            WorkerOutput::Close(p),
            WorkerOutput::Finished { error: None },
        ] if [*c1, *c2] == [s; 2] && *p == peer
    ));
    let late = new_conn();
    w.handle_connected(now, late);
    assert!(
        matches!(&drain(&mut w)[..], [WorkerOutput::Close(c)] if *c == late),
        "no peer once finished"
    );
    assert_eq!(w.poll_timeout(), None);
}

#[test]
fn a_lost_scheduler_makes_a_new_worker_that_registers_again_listing_its_values() {
    let (mut w, now) = reconnecting_worker();
    let s = w.scheduler_conn().unwrap();
    let r = task_ref_value;
    let peer = incoming(&mut w, now);
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 1,
            data: [(Key::from("p"), raw(Value::from(1)))]
                .into_iter()
                .collect(),
        }),
    );
    w.handle_scheduler_message(now, compute("run", vec![], &[]));
    w.handle_scheduler_message(now, compute("t", vec![r("d")], &[("d", &[PEER_A])]));
    let out = drain(&mut w);
    let run = jobs(out).remove(0);
    let holder = w.outgoing[PEER_A];

    w.handle_closed(now, s, "connection reset by peer");
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [
            WorkerOutput::Close(c0),
            WorkerOutput::Log(log),
            WorkerOutput::Close(c1),
            WorkerOutput::Close(c2),
            WorkerOutput::Withdraw { run_id },
            WorkerOutput::Listen,
        ] if log.message.contains("connection reset by peer")
            && log.message.contains("registering again as a new worker (for up to 30 s)")
            && *c0 == s && [*c1, *c2] == [peer, holder] && *run_id == run.run_id
    ));
    assert!(
        w.holds("p"),
        "its values are kept, for a restarted scheduler to adopt"
    );
    assert_eq!(w.metrics().ready, 0, "its tasks are not");
    w.handle_withdrawn(now, run.run_id, false);
    // The new listener is up; the attempt waits for the delay.
    let new_address = "tcp://127.0.0.1:1001";
    w.handle_listening(now, new_address.into());
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.poll_timeout(), Some(now + RECONNECT_DELAY));
    let at = now + RECONNECT_DELAY;
    w.handle_timeout(at);
    let out = drain(&mut w);
    let [WorkerOutput::Connect { .. }, _, _, WorkerOutput::Send(conn, Message::RegisterWorker(reg))] =
        &out[..]
    else {
        panic!("{out:?}");
    };
    let conn = *conn;
    assert_eq!(
        (reg.name.as_str(), reg.address.as_str()),
        ("w", new_address)
    );
    let held: Vec<&str> = reg.held.iter().flatten().map(|(k, _)| k.as_str()).collect();
    assert_eq!(held, ["p"], "listed in register-worker (dask/1.1)");
    // The run that had started ends unheard.
    w.handle_task_done(at, done(run.run_id, Value::Nil));
    w.handle_frame(at, conn, vec![scheduler_hello(), worker_registered(9)]);
    let out = drain(&mut w);
    assert!(matches!(
        &out[..],
        [WorkerOutput::Registered { id: 9, address }] if address == new_address
    ));
    assert_eq!(w.scheduler_conn(), Some(conn));
    assert_eq!(w.running(), 0);
    assert!(w.holds("p"), "a dask/1.1 scheduler adopts or frees it");
    // A close now is final.
    w.handle_message(
        at,
        conn,
        Message::Close(Close {
            reason: None,
            reconnect: None,
        }),
    );
    assert!(matches!(finished(&drain(&mut w)), Some(None)));
}

#[test]
fn failed_attempts_are_repeated_until_the_reconnect_timeout_then_the_worker_finishes() {
    let (mut w, now) = reconnecting_worker();
    let fatal = ErrorReport {
        code: 2001,
        message: "bad".into(),
        fatal: true,
        request: None,
        keys: None,
    };
    w.handle_scheduler_message(now, Message::ErrorReport(fatal));
    let _ = drain(&mut w);
    w.handle_listening(now, ME.into());
    let mut attempts = 0;
    let (at, end) = loop {
        let at = w.poll_timeout().expect("an attempt is due");
        w.handle_timeout(at);
        if let Some(end) = finished(&drain(&mut w)) {
            break (at, end.clone());
        }
        let Some(conn) = w.scheduler_conn() else {
            continue;
        };
        attempts += 1;
        // The scheduler is not there; then it refuses; then it is silent
        // (the registration deadline comes).
        match attempts % 3 {
            0 => w.handle_closed(at, conn, "connection refused"),
            1 => {
                let e = WireError::new(ErrorCode::NameInUse, "taken");
                w.handle_message(at, conn, Message::error(&e, None));
            }
            _ => {}
        }
        if let Some(end) = finished(&drain(&mut w)) {
            break (at, end.clone());
        }
    };
    let error = end.expect("an error");
    assert!(at >= now + Duration::from_secs(30), "{at}");
    assert!(attempts >= 3, "{attempts}");
    assert!(
        error.message.starts_with(&format!(
            "could not register again with {SCHEDULER_ADDRESS} within 30 s"
        )),
        "{error}"
    );
}

#[test]
fn without_a_reconnect_timeout_a_lost_scheduler_ends_the_worker() {
    let (mut w, now) = worker(1);
    let s = w.scheduler_conn().unwrap();
    w.handle_closed(now, s, "end of stream");
    let out = drain(&mut w);
    let Some(Some(error)) = finished(&out) else {
        panic!("{out:?}");
    };
    assert_eq!(error.kind, WorkerErrorKind::Lost);
    assert!(error.message.contains("end of stream"), "{error}");
}

#[test]
fn reports_wait_only_while_the_worker_is_busy_and_not_past_the_delay() {
    use super::super::scheduler::report_may_wait;
    let busy = REPORT_BATCH_BACKLOG_PER_THREAD;
    let max = REPORT_DELAY_MAX;
    // An idle or nearly idle worker (a chain, one task) reports at once.
    assert!(!report_may_wait(0, busy, Duration::ZERO, max));
    assert!(!report_may_wait(busy - 1, busy, Duration::ZERO, max));
    // A busy one batches, for at most REPORT_DELAY_MAX.
    assert!(report_may_wait(busy, busy, Duration::ZERO, max));
    assert!(report_may_wait(busy, busy, max / 2, max));
    assert!(!report_may_wait(busy, busy, max, max));
    // Zero: never.
    assert!(!report_may_wait(busy, busy, Duration::ZERO, Duration::ZERO));
}

#[test]
fn a_busy_workers_reports_go_out_together_within_the_delay() {
    let (mut w, now) = worker(1);
    let tasks = REPORT_BATCH_BACKLOG_PER_THREAD + 4;
    for i in 0..tasks {
        w.handle_scheduler_message(now, compute(&format!("t{i}"), vec![], &[]));
    }
    let run = jobs(drain(&mut w)).remove(0);
    w.handle_task_done(now, done(run.run_id, Value::Nil));
    let out = drain(&mut w);
    assert!(to_scheduler(&out).is_empty(), "held: {out:?}");
    let release = now + REPORT_DELAY_MAX;
    assert_eq!(w.poll_timeout(), Some(release));
    let run = jobs(out).remove(0);
    w.handle_task_done(now, done(run.run_id, Value::Nil));
    let _ = drain(&mut w);
    w.handle_timeout(release);
    let out = drain(&mut w);
    let finished: Vec<&str> = to_scheduler(&out).iter().map(|m| m.op()).collect();
    assert_eq!(finished, vec!["task-finished", "task-finished"]);
}

#[test]
fn a_close_asking_to_reconnect_makes_a_new_worker_that_registers_again() {
    let (mut w, now) = reconnecting_worker();
    let s = w.scheduler_conn().unwrap();
    w.handle_scheduler_message(now, compute("t", vec![], &[]));
    let run = jobs(drain(&mut w)).remove(0);
    w.handle_scheduler_message(
        now,
        Message::Close(Close {
            reason: Some("no message for 10000 ms (heartbeat timeout)".into()),
            reconnect: Some(true),
        }),
    );
    let out = drain(&mut w);
    assert!(
        matches!(
            &out[..],
            [
                WorkerOutput::Close(c),
                WorkerOutput::Log(log),
                WorkerOutput::Withdraw { run_id },
                WorkerOutput::Listen,
            ] if *c == s && *run_id == run.run_id
                && log.message.contains("the scheduler said close (no message for 10000 ms")
                && log.message.contains("registering again")
        ),
        "{out:?}"
    );
    assert!(!w.is_finished());
    w.handle_withdrawn(now, run.run_id, true);
    w.handle_listening(now, ME.into());
    w.handle_timeout(now + RECONNECT_DELAY);
    let out = drain(&mut w);
    assert!(
        matches!(out.last(), Some(WorkerOutput::Send(_, Message::RegisterWorker(r))) if r.name == "w"),
        "{out:?}"
    );
}

#[test]
fn a_close_asking_to_reconnect_ends_a_worker_that_does_not_reconnect() {
    let (mut w, now) = worker(1);
    w.handle_scheduler_message(
        now,
        Message::Close(Close {
            reason: None,
            reconnect: Some(true),
        }),
    );
    assert!(matches!(finished(&drain(&mut w)), Some(None)));
}

#[test]
fn a_worker_back_at_a_dask_1_0_scheduler_drops_the_values_it_listed() {
    let (mut w, now) = reconnecting_worker();
    let s = w.scheduler_conn().unwrap();
    w.handle_scheduler_message(
        now,
        Message::PutData(PutData {
            request: 1,
            data: [(Key::from("p"), raw(Value::from(1)))]
                .into_iter()
                .collect(),
        }),
    );
    w.handle_closed(now, s, "reset");
    drain(&mut w);
    w.handle_listening(now, "tcp://127.0.0.1:1001".into());
    let at = now + RECONNECT_DELAY;
    w.handle_timeout(at);
    let out = drain(&mut w);
    let Some(conn) = out.iter().find_map(|o| match o {
        WorkerOutput::Send(c, Message::RegisterWorker(_)) => Some(*c),
        _ => None,
    }) else {
        panic!("{out:?}");
    };
    let Message::Hello(mut hello) = scheduler_hello() else {
        unreachable!()
    };
    hello.version.minor = 0;
    w.handle_frame(at, conn, vec![Message::Hello(hello)]);
    assert!(!w.holds("p"), "a dask/1.0 scheduler would never free it");
}
