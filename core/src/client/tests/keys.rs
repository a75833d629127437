//! Generated keys, key states and reference counts.

use super::*;

#[test]
fn keys_carry_the_function_seed_and_a_counter() {
    let mut g = KeyGenerator::new(0xabc);
    assert_eq!(g.next_key("inc").as_str(), "inc-abc-0");
    assert_eq!(g.next_key("inc").as_str(), "inc-abc-1");
    assert_eq!(format_key("", 1, 2).as_str(), "task-1-2");
    let long = "é".repeat(300);
    let k = format_key(&long, 1, 2);
    assert!(k.as_str().len() <= KEY_FUNCTION_BYTES_MAX + 10);
    assert!(is_valid_key(k.as_str()));
}

#[test]
fn task_errors_cancels_and_losses_reach_the_key() {
    let mut s = connected();
    let specs: Vec<TaskSpec> = (0..3).map(|i| inc(&mut s, Value::from(i))).collect();
    let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
    s.submit(specs, keys.clone());
    s.handle_message(Message::KeyErred(KeyErred {
        key: keys[0].clone(),
        error_type: "ZeroDivisionError".into(),
        message: "division by zero".into(),
        traceback: String::new(),
        cause: Some(Key::from("x")),
        request: None,
    }));
    s.handle_message(Message::KeyCancelled(KeyCancelled {
        key: keys[1].clone(),
        request: None,
    }));
    s.handle_message(Message::KeyLost(KeyLost {
        key: keys[2].clone(),
        message: "worker died".into(),
        request: None,
    }));
    assert!(
        matches!(s.key_state(keys[0].as_str()), Some(KeyState::Erred(f)) if f.cause == Some(Key::from("x")))
    );
    assert_eq!(s.key_state(keys[1].as_str()), Some(&KeyState::Cancelled));
    assert_eq!(
        s.key_state(keys[2].as_str()).map(KeyState::name),
        Some("lost")
    );
    // Events about keys never held are ignored.
    s.handle_message(finished(&Key::from("someone-else")));
    assert_eq!(events(&mut s).len(), 3);
}

#[test]
fn resubmitting_a_cancelled_key_makes_it_pending_again() {
    let mut s = connected();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t.clone()], vec![key.clone()]);
    s.handle_message(Message::KeyCancelled(KeyCancelled {
        key: key.clone(),
        request: None,
    }));
    assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Cancelled));
    s.submit(vec![t], vec![key.clone()]);
    assert_eq!(s.key_state(key.as_str()), Some(&KeyState::Pending));
    assert_eq!(s.ref_count(key.as_str()), 2);
    s.handle_message(finished(&key));
    assert_eq!(
        s.key_state(key.as_str()),
        Some(&KeyState::Finished { nbytes: 1 })
    );
    assert!(s.requests.is_empty());
}

#[test]
fn last_release_sends_release_keys_in_one_batch() {
    let mut s = connected();
    let specs: Vec<TaskSpec> = (0..3).map(|i| inc(&mut s, Value::from(i))).collect();
    let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
    s.submit(specs, keys.clone());
    drain(&mut s);
    assert!(s.retain(keys[0].as_str()));
    assert!(!s.retain("not-held"));
    s.release(keys[0].as_str());
    assert!(!s.wants_transmit(), "one handle is left");
    for k in &keys {
        s.release(k.as_str());
    }
    assert_eq!(s.held_keys(), 0);
    let out = drain(&mut s);
    assert!(matches!(&out[..], [Message::ReleaseKeys(r)] if r.keys == keys));
    // The graph had no reply yet; releasing settles its bookkeeping.
    assert!(s.requests.is_empty());
}

#[test]
fn a_large_release_goes_in_parts_each_in_its_own_frame() {
    let mut s = connected();
    let specs: Vec<TaskSpec> = (0..100).map(|i| inc(&mut s, Value::from(i))).collect();
    let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
    s.submit(specs, keys.clone());
    drain(&mut s);
    // About ten keys a part.
    let key_bytes = keys[0].as_str().len() + 5;
    s.set_submit_part_bytes(10 * key_bytes);
    for k in &keys {
        s.release(k.as_str());
    }
    let out = drain(&mut s);
    let mut released = Vec::new();
    for m in &out {
        let Message::ReleaseKeys(r) = m else {
            panic!("only releases: {m:?}")
        };
        let bytes: usize = r.keys.iter().map(|k| k.len() + 5).sum();
        assert!(bytes <= 10 * key_bytes + 5, "{bytes} bytes in a part");
        released.extend(r.keys.to_keys());
    }
    assert!(out.len() >= 9, "{} parts", out.len());
    // Every key once, in the order released.
    assert_eq!(released, keys);
    // Each part ends its frame: the scheduler takes a frame in one event.
    for k in &keys {
        assert!(s.want(k, None, RequestId(99)));
        s.release(k.as_str());
    }
    let bytes = s.transmit_bytes();
    let mut decoder = crate::frame::FrameDecoder::default();
    decoder.push(&bytes);
    let mut frames = 0;
    while let Some(batch) = decoder.poll().expect("well formed") {
        assert!(matches!(&batch[..], [Message::ReleaseKeys(_)]), "{batch:?}");
        frames += 1;
    }
    assert_eq!(frames, out.len());
}

#[test]
fn a_key_is_released_whatever_its_state() {
    let mut s = connected();
    let specs: Vec<TaskSpec> = (0..4).map(|i| inc(&mut s, Value::from(i))).collect();
    let keys: Vec<Key> = specs.iter().map(|t| t.key.clone()).collect();
    s.submit(specs, keys.clone());
    drain(&mut s);
    s.handle_message(finished(&keys[0]));
    s.handle_message(Message::KeyErred(KeyErred {
        key: keys[1].clone(),
        error_type: "ValueError".into(),
        message: "no".into(),
        traceback: String::new(),
        cause: None,
        request: None,
    }));
    s.handle_message(Message::KeyCancelled(KeyCancelled {
        key: keys[2].clone(),
        request: None,
    }));
    s.handle_message(Message::KeyLost(KeyLost {
        key: keys[3].clone(),
        message: "gone".into(),
        request: None,
    }));
    assert!(!s.wants_transmit(), "no event releases anything");
    for k in &keys {
        s.release(k.as_str());
    }
    // The erred key above all: the scheduler keeps it until then.
    let out = drain(&mut s);
    assert!(
        matches!(&out[..], [Message::ReleaseKeys(r)] if r.keys == keys),
        "{out:?}"
    );
}

#[test]
fn a_release_goes_out_before_a_later_resubmission() {
    let mut s = connected();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    s.submit(vec![t.clone()], vec![key.clone()]);
    drain(&mut s);
    s.release(key.as_str());
    s.submit(vec![t], vec![key.clone()]);
    let ops: Vec<&str> = drain(&mut s).iter().map(Message::op).collect();
    assert_eq!(ops, vec!["release-keys", "update-graph"]);
    assert_eq!(s.ref_count(key.as_str()), 1);
}
