//! Building graphs from delayed calls, without a cluster.

use std::collections::HashSet;

use dask_client::{args, build_graph, delayed, Arg};
use dask_core::client::Graph;
use rmpv::Value;

#[test]
fn shared_calls_appear_once_and_refs_point_at_them() {
    let x = delayed("inc", args![1]);
    let a = delayed("add", args![&x, &x]);
    let b = delayed("mul", args![&x, 3]);
    let top = delayed(
        "sum",
        args![vec![Arg::from(&a), Arg::from(&b), Arg::from(4)]],
    );
    let specs = build_graph(std::slice::from_ref(&top));
    assert_eq!(specs.len(), 4);
    let keys: HashSet<&str> = specs.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys.len(), 4);
    let root = specs.iter().find(|s| &s.key == top.key()).unwrap();
    assert_eq!(root.args.refs(), vec![a.key().as_str(), b.key().as_str()]);
    let sum_args = root.args.to_value().unwrap();
    assert_eq!(sum_args[0][2], Value::from(4));
    let mut g = Graph::new();
    for s in specs {
        g.add(s).unwrap();
    }
    assert_eq!(g.leaves(), vec![top.key().clone()]);
    assert!(g.external_refs().is_empty());
}

#[test]
fn keys_are_unique_and_name_the_function() {
    let a = delayed("inc", args![1]);
    let b = delayed("inc", args![1]);
    assert_ne!(a.key(), b.key());
    assert!(a.key().as_str().starts_with("inc-"));
    let named = delayed("inc", args![1]).with_key("my-key");
    assert_eq!(named.key().as_str(), "my-key");
}

#[test]
fn options_and_kwargs_reach_the_spec() {
    let d = delayed("exec", args!["echo", "hi"])
        .kwarg("timeout_ms", 1000)
        .priority(7)
        .retries(2)
        .resource("GPU", 1.0)
        .workers(vec!["local-0".into()]);
    let spec = build_graph(&[d]).remove(0);
    assert_eq!(spec.priority, Some(7));
    assert_eq!(spec.retries, Some(2));
    assert_eq!(spec.resources.unwrap()["GPU"], 1.0);
    assert_eq!(spec.workers, Some(vec!["local-0".to_string()]));
    let kwargs = spec.kwargs.unwrap().to_value().unwrap();
    assert_eq!(kwargs.to_string(), "{\"timeout_ms\": 1000}");
    assert_eq!(
        spec.args.to_value().unwrap().to_string(),
        "[\"echo\", \"hi\"]"
    );
}

#[test]
fn modifying_a_shared_call_leaves_the_other_handle_alone() {
    let a = delayed("inc", args![1]);
    let b = a.clone().priority(3);
    assert_eq!(a.key(), b.key());
    assert_eq!(build_graph(&[a]).remove(0).priority, None);
    assert_eq!(build_graph(&[b]).remove(0).priority, Some(3));
}

#[test]
fn long_chains_build_and_drop_without_deep_recursion() {
    let mut d = delayed("inc", args![0]);
    for _ in 0..200_000 {
        d = delayed("inc", args![d]);
    }
    let specs = build_graph(std::slice::from_ref(&d));
    assert_eq!(specs.len(), 200_001);
    drop(specs);
    drop(d);
}

#[test]
fn binary_arguments_stay_binary() {
    let d = delayed("len", vec![Arg::bytes(vec![1u8, 2, 3])]);
    let spec = build_graph(&[d]).remove(0);
    assert_eq!(
        spec.args.to_value().unwrap(),
        Value::Array(vec![Value::Binary(vec![1, 2, 3])])
    );
}
