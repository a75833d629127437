//! Task specs, options and graphs (and graph files).

use super::*;

#[test]
fn graph_leaves_and_external_refs() {
    let mut g = Graph::new();
    let a = task_spec(Key::from("a"), "inc", &[Value::from(1)], &[]);
    let b = task_spec(
        Key::from("b"),
        "add",
        &[task_ref_value("a"), task_ref_value("outside")],
        &[("k".into(), task_ref_value("z"))],
    );
    g.add(a.clone()).unwrap();
    g.add(b).unwrap();
    g.add(a).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g.leaves(), vec![Key::from("b")]);
    assert_eq!(
        g.external_refs(),
        vec![Key::from("outside"), Key::from("z")]
    );
    let other = task_spec(Key::from("a"), "inc", &[Value::from(2)], &[]);
    assert!(g.add(other).is_err());
}

#[test]
fn graph_files_read_from_json() {
    let text = r#"{"tasks": [
        {"key": "x", "function": "inc", "args": [1]},
        {"key": "y", "function": "add", "args": [{"$ref": "x"}, 2], "priority": 3,
         "resources": {"GPU": 1}, "retries": 2}
    ]}"#;
    let (g, wanted) = Graph::from_json(text).unwrap();
    assert_eq!(wanted, vec![Key::from("y")]);
    assert_eq!(g.tasks()[1].priority, Some(3));
    assert_eq!(g.tasks()[1].retries, Some(2));
    let explicit = r#"{"tasks": [{"key": "x", "function": "inc", "args": [1]}], "wanted": ["x"]}"#;
    assert_eq!(Graph::from_json(explicit).unwrap().1, vec![Key::from("x")]);
    for bad in [
        "[]",
        "{}",
        r#"{"tasks": [{"key": "x", "function": "inc", "args": 1}]}"#,
        r#"{"tasks": [{"key": "", "function": "inc", "args": []}]}"#,
        "not json",
    ] {
        assert!(Graph::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_graph_file_whose_every_task_is_needed_is_a_cycle() {
    let cycle = r#"{"tasks": [
        {"key": "a", "function": "inc", "args": [{"$ref": "b"}]},
        {"key": "b", "function": "inc", "args": [{"$ref": "c"}]},
        {"key": "c", "function": "inc", "args": [{"$ref": "a"}]}
    ]}"#;
    let e = Graph::from_json(cycle).unwrap_err().0;
    assert!(e.contains("no key is a leaf"), "{e}");
    assert!(
        e.contains(r#"cycle: "a" -> "b" -> "c" -> "a" (each"#),
        "{e}"
    );
    let me = r#"{"tasks": [{"key": "me", "function": "inc", "args": [{"$ref": "me"}]}]}"#;
    let e = Graph::from_json(me).unwrap_err().0;
    assert!(e.contains(r#"cycle: "me" -> "me" (each"#), "{e}");
    // Explicit wanted, or an empty graph, is left to the scheduler.
    let wanted = r#"{"tasks": [{"key": "me", "function": "inc", "args": [{"$ref": "me"}]}],
                     "wanted": ["me"]}"#;
    assert!(Graph::from_json(wanted).is_ok());
    assert!(Graph::from_json(r#"{"tasks": []}"#).is_ok());
}

#[test]
fn options_apply_to_a_spec() {
    let mut spec = task_spec(Key::from("a"), "f", &[], &[]);
    let mut opts = TaskOptions {
        priority: Some(5),
        retries: Some(1),
        workers: Some(vec!["w1".into()]),
        ..Default::default()
    };
    opts.resources.insert("GPU".into(), 1.0);
    opts.apply(&mut spec);
    assert_eq!(spec.priority, Some(5));
    assert_eq!(spec.resources.as_ref().map(|r| r.len()), Some(1));
    assert_eq!(spec.workers, Some(vec!["w1".to_string()]));
}
