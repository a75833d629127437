//! A large graph submitted in parts (`parts.rs`).

use std::collections::HashSet;

use super::*;
use crate::messages::UpdateGraph;
use crate::msgpack::Reader;

/// A binary reduction over `leaves` leaves, leaves first (level by
/// level), and its root.
pub(super) fn tree(leaves: usize) -> (Vec<TaskSpec>, Key) {
    let name = |level: u32, i: usize| Key::from(format!("t-{level}-{i}"));
    let mut tasks: Vec<TaskSpec> = (0..leaves)
        .map(|i| task_spec(name(0, i), "inc", &[Value::from(i)], &[]))
        .collect();
    let (mut level, mut width) = (0, leaves);
    while width > 1 {
        for i in 0..width / 2 {
            let args = [
                task_ref_value(name(level, 2 * i).as_str()),
                task_ref_value(name(level, 2 * i + 1).as_str()),
            ];
            tasks.push(task_spec(name(level + 1, i), "add", &args, &[]));
        }
        level += 1;
        width /= 2;
    }
    (tasks, name(level, 0))
}

/// The `update-graph`s among `out`.
fn update_graphs(out: &[Message]) -> Vec<&UpdateGraph> {
    out.iter()
        .filter_map(|m| match m {
            Message::UpdateGraph(g) => Some(g),
            _ => None,
        })
        .collect()
}

fn references(spec: &TaskSpec) -> Vec<String> {
    let mut found = Vec::new();
    let _ = Reader::new(spec.args.as_bytes()).skip_value(&mut |k| found.push(k.to_owned()));
    found
}

#[test]
fn a_large_graph_goes_in_parts_each_referring_only_to_what_came_before() {
    let mut s = connected();
    let (tasks, root) = tree(64);
    s.set_submit_part_bytes(1000);
    s.submit(tasks, vec![root.clone()]);
    let out = drain(&mut s);
    let (graphs, rest): (Vec<_>, Vec<_>) = out
        .iter()
        .partition(|m| matches!(m, Message::UpdateGraph(_)));
    assert!(graphs.len() >= 4, "{} parts", graphs.len());
    let mut known: HashSet<String> = HashSet::new();
    let mut wanted_for_later: HashSet<String> = HashSet::new();
    let mut defined = 0;
    for (i, m) in graphs.iter().enumerate() {
        let Message::UpdateGraph(g) = m else {
            unreachable!()
        };
        let here: HashSet<String> = g.tasks.iter().map(|t| t.key.0.clone()).collect();
        for t in &g.tasks {
            for r in references(t) {
                assert!(
                    known.contains(&r) || here.contains(&r),
                    "part {i}: {} refers to {r}, not sent yet",
                    t.key
                );
                if !here.contains(&r) {
                    // Wanted by its own part, so the scheduler kept it.
                    assert!(wanted_for_later.contains(&r), "{r} was not kept");
                }
            }
        }
        for k in &g.wanted {
            assert!(here.contains(&k.0), "part {i} wants {k}, not its own");
            wanted_for_later.insert(k.0.clone());
        }
        defined += g.tasks.len();
        known.extend(here);
    }
    assert_eq!(defined, 127);
    let Some(Message::UpdateGraph(last)) = graphs.last() else {
        unreachable!()
    };
    assert_eq!(last.wanted, vec![root.clone()]);
    // The keys wanted for later parts are released once all are sent.
    match &rest[..] {
        [Message::ReleaseKeys(r)] => {
            let released: HashSet<String> = r.keys.iter().map(str::to_owned).collect();
            wanted_for_later.remove(&root.0);
            assert_eq!(released, wanted_for_later);
        }
        other => panic!("expected one release-keys after the parts, got {other:?}"),
    }
    assert_eq!(s.ref_count(root.as_str()), 1);
    assert_eq!(s.held_keys(), 1);
    // Only the root's want is outstanding; an event of a released key is
    // not the user's.
    assert_eq!(s.requests.len(), 1);
    let released = wanted_for_later.iter().next().expect("a kept key");
    s.handle_message(finished(&Key::from(released.as_str())));
    assert_eq!(events(&mut s), vec![]);
    s.handle_message(finished(&root));
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::KeyUpdated {
            key: root,
            state: KeyState::Finished { nbytes: 1 }
        }]
    );
    assert!(s.requests.is_empty());
}

#[test]
fn a_graph_under_the_part_size_goes_whole() {
    let mut s = connected();
    let (tasks, root) = tree(8);
    s.set_submit_part_bytes(1 << 20);
    s.submit(tasks, vec![root]);
    let out = drain(&mut s);
    assert!(matches!(&out[..], [Message::UpdateGraph(g)] if g.tasks.len() == 15));
}

#[test]
fn a_graph_with_a_cycle_goes_whole_for_the_scheduler_to_refuse() {
    let mut s = connected();
    let (mut tasks, root) = tree(32);
    // The first leaf now refers to the root: a cycle.
    tasks[0] = task_spec(
        tasks[0].key.clone(),
        "inc",
        &[task_ref_value(root.as_str())],
        &[],
    );
    s.set_submit_part_bytes(100);
    s.submit(tasks, vec![root]);
    let out = drain(&mut s);
    assert!(matches!(&out[..], [Message::UpdateGraph(g)] if g.tasks.len() == 63));
}

#[test]
fn wanted_keys_go_with_the_part_that_defines_them() {
    let mut s = connected();
    let tasks: Vec<TaskSpec> = (0..40)
        .map(|i| task_spec(Key::from(format!("i-{i}")), "inc", &[Value::from(i)], &[]))
        .collect();
    let mut wanted: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    wanted.push(Key::from("known-before"));
    wanted.push(Key::from("i-3")); // twice: two references
    s.set_submit_part_bytes(300);
    s.submit(tasks, wanted);
    let out = drain(&mut s);
    assert!(out.len() >= 3, "{} messages", out.len());
    for m in &out {
        let Message::UpdateGraph(g) = m else {
            panic!("nothing to release for independent tasks: {m:?}")
        };
        let here: HashSet<&Key> = g.tasks.iter().map(|t| &t.key).collect();
        let elsewhere: Vec<&Key> = g.wanted.iter().filter(|k| !here.contains(k)).collect();
        assert!(elsewhere.is_empty() || elsewhere == [&Key::from("known-before")]);
        assert_eq!(g.wanted.len(), here.len() + elsewhere.len());
    }
    assert_eq!(s.ref_count("i-3"), 2);
    assert_eq!(s.ref_count("known-before"), 1);
    assert_eq!(s.held_keys(), 41);
}

#[test]
fn a_tree_listed_leaves_first_goes_subtree_by_subtree() {
    // Level by level, every key of a part but the last's is referred to
    // by a later part; subtree by subtree, only a subtree's top is.
    let mut s = connected();
    let (tasks, root) = tree(1024);
    s.set_submit_part_bytes(4000);
    s.submit(tasks, vec![root]);
    let out = drain(&mut s);
    let graphs = update_graphs(&out);
    assert!(graphs.len() >= 10, "{} parts", graphs.len());
    let kept: usize = graphs[..graphs.len() - 1]
        .iter()
        .map(|g| g.wanted.len())
        .sum();
    // A part boundary cuts at most one path from a leaf to the root: at
    // most one key per level (11) is kept across it.
    assert!(
        kept <= 11 * graphs.len(),
        "{kept} keys kept for later parts over {} parts",
        graphs.len()
    );
}

#[test]
fn a_chain_listed_from_its_start_goes_in_runs_of_the_list() {
    // Already in dependency order: each part is a run of the list, and
    // keeps the one key the next part refers to.
    let mut s = connected();
    let name = |i: usize| Key::from(format!("c-{i}"));
    let mut tasks = vec![task_spec(name(0), "inc", &[Value::from(0)], &[])];
    for i in 1..60 {
        let args = [task_ref_value(name(i - 1).as_str())];
        tasks.push(task_spec(name(i), "inc", &args, &[]));
    }
    s.set_submit_part_bytes(300);
    s.submit(tasks, vec![name(59)]);
    let out = drain(&mut s);
    let graphs = update_graphs(&out);
    assert!(graphs.len() >= 3, "{} parts", graphs.len());
    let sent: Vec<Key> = graphs
        .iter()
        .flat_map(|g| g.tasks.iter().map(|t| t.key.clone()))
        .collect();
    assert_eq!(sent, (0..60).map(name).collect::<Vec<_>>());
    let mut kept = Vec::new();
    for g in &graphs[..graphs.len() - 1] {
        let last = g.tasks.last().expect("no empty part").key.clone();
        assert_eq!(g.wanted, vec![last.clone()], "the key the next part needs");
        kept.push(last);
    }
    assert_eq!(graphs.last().unwrap().wanted, vec![name(59)]);
    match out.last() {
        Some(Message::ReleaseKeys(r)) => assert_eq!(r.keys, kept),
        other => panic!("expected release-keys last, got {other:?}"),
    }
    assert_eq!(s.held_keys(), 1);
}

#[test]
fn parts_start_small_and_double_up_to_the_largest() {
    // A slow start: the scheduler takes in a small first part at once and
    // the workers start on it while the larger ones come.
    let mut s = connected();
    let n = 20_000;
    // Tasks of one size: parts of one size hold as many tasks.
    let tasks: Vec<TaskSpec> = (0..n)
        .map(|i| {
            task_spec(
                Key::from(format!("i-{i:05}")),
                "inc",
                &[Value::from(0)],
                &[],
            )
        })
        .collect();
    let wanted: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    s.set_submit_part_bytes(256 * 1024);
    s.submit(tasks, wanted);
    let out = drain(&mut s);
    let graphs = update_graphs(&out);
    let sizes: Vec<usize> = graphs.iter().map(|g| g.tasks.len()).collect();
    // ~50 estimated bytes a task: 64 KiB is ~1,300 tasks.
    assert!(
        (1000..2000).contains(&sizes[0]),
        "first part of {} tasks",
        sizes[0]
    );
    assert!(sizes[1].abs_diff(2 * sizes[0]) <= 1, "{sizes:?}");
    assert!(sizes[2].abs_diff(4 * sizes[0]) <= 3, "{sizes:?}");
    // Capped at 256 KiB: every later part but the last as large as the third.
    assert!(sizes.len() > 5, "{sizes:?}");
    for &later in &sizes[3..sizes.len() - 1] {
        assert_eq!(later, sizes[2], "{sizes:?}");
    }
    assert_eq!(sizes.iter().sum::<usize>(), n);
    let sent: Vec<&Key> = graphs
        .iter()
        .flat_map(|g| g.tasks.iter().map(|t| &t.key))
        .collect();
    assert!(sent
        .iter()
        .enumerate()
        .all(|(i, k)| k.as_str() == format!("i-{i:05}")));
}

#[test]
fn a_graph_of_up_to_two_first_parts_goes_whole() {
    let tasks = |n: usize| -> Vec<TaskSpec> {
        (0..n)
            .map(|i| task_spec(Key::from(format!("i-{i}")), "inc", &[Value::from(i)], &[]))
            .collect()
    };
    // ~50 estimated bytes a task: 2,000 tasks are under 128 KiB, 4,000 over.
    for (n, whole) in [(2_000, true), (4_000, false)] {
        let mut s = connected();
        let t = tasks(n);
        let wanted: Vec<Key> = t.iter().map(|t| t.key.clone()).collect();
        s.submit(t, wanted);
        let graphs = drain(&mut s)
            .iter()
            .filter(|m| matches!(m, Message::UpdateGraph(_)))
            .count();
        assert_eq!(
            graphs == 1,
            whole,
            "{n} tasks went in {graphs} update-graphs"
        );
    }
}

#[test]
fn a_plan_handed_over_part_by_part_sends_each_part_before_the_next_is_built() {
    // The Rust client plans without the session and hands it one part at
    // a time: the first part can go, and its keys finish, before the
    // later parts are registered.
    let (tasks, root) = tree(256);
    let mut whole = connected();
    whole.set_submit_part_bytes(1000);
    whole.submit(tasks.clone(), vec![root.clone()]);
    let all_at_once = drain(&mut whole);

    let mut s = connected();
    s.set_submit_part_bytes(1000);
    let mut plan = SubmitPlan::new(tasks, vec![root.clone()], s.submit_part_bytes());
    let mut out = Vec::new();
    let mut first_keys = Vec::new();
    while let Some(part) = plan.next_part() {
        s.submit_part(part);
        let sent = drain(&mut s);
        let graphs = update_graphs(&sent);
        assert_eq!(graphs.len(), 1, "one part queued per call");
        if first_keys.is_empty() {
            first_keys = graphs[0].wanted.clone();
            // Its keys finish while the rest is still being built.
            for k in &first_keys {
                s.handle_message(finished(k));
            }
            assert!(first_keys
                .iter()
                .all(|k| s.key_state(k.as_str()) == Some(&KeyState::Finished { nbytes: 1 })));
        }
        out.extend(sent);
    }
    assert!(
        !first_keys.is_empty(),
        "the first part keeps a key for later"
    );
    // The same messages as submitted at once, in the same order.
    assert_eq!(out, all_at_once);
    // Only the root is held at the end: the keys kept for later parts
    // were released after the last part.
    assert_eq!(s.held_keys(), 1);
    assert_eq!(s.ref_count(root.as_str()), 1);
}

#[test]
fn a_small_graph_plans_as_one_part() {
    let mut s = connected();
    let t = inc(&mut s, Value::from(1));
    let key = t.key.clone();
    let mut plan = SubmitPlan::new(vec![t], vec![key.clone()], s.submit_part_bytes());
    let part = plan.next_part().expect("one part");
    assert!(plan.next_part().is_none());
    s.submit_part(part);
    let out = drain(&mut s);
    assert!(
        matches!(&out[..], [Message::UpdateGraph(g)] if g.tasks.len() == 1 && g.wanted == [key.clone()])
    );
    assert_eq!(s.ref_count(key.as_str()), 1);
}
