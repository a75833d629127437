//! Orders graphs for `bench/order_pressure.py`: reads one graph per line
//! on stdin (JSON: task `i`'s dependency positions at index `i`) and
//! prints one JSON line per graph with two orders (each task's place):
//! `order`, dask-core's graph order (`dask_core::order`), and
//! `depth_first`, the scheduler's order before it (a post-order walk from
//! each task without dependents, in submission order, dependencies in
//! order of appearance), and `micros`, the time dask-core's order took;
//! `{"error": ...}` for a graph with a cycle.

use std::io::{BufRead, Write};
use std::time::Instant;

use dask_core::order::Dag;

fn main() {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    for line in stdin.lines() {
        let line = line.expect("stdin");
        let deps: Vec<Vec<u32>> = serde_json::from_str(&line).expect("a JSON list of lists");
        let mut dag = Dag::with_capacity(deps.len(), deps.iter().map(Vec::len).sum());
        for d in &deps {
            dag.push(d.iter().copied());
        }
        let started = Instant::now();
        let order = match dag.order() {
            Ok(order) => order,
            Err(e) => {
                writeln!(out, "{}", serde_json::json!({ "error": e.to_string() })).expect("stdout");
                continue;
            }
        };
        let micros = started.elapsed().as_micros();
        let line = serde_json::json!({
            "order": order,
            "depth_first": depth_first(&deps),
            "micros": micros,
        });
        writeln!(out, "{line}").expect("stdout");
    }
}

/// The scheduler's graph order as it was (scheduler/src/state/graph.rs
/// `graph_order`): from each task nothing depends on, in submission order,
/// a depth-first post-order walk of its dependencies.
fn depth_first(deps: &[Vec<u32>]) -> Vec<u32> {
    const UNSEEN: u32 = u32::MAX;
    let n = deps.len();
    let mut has_dependent = vec![false; n];
    for d in deps.iter().flatten() {
        has_dependent[*d as usize] = true;
    }
    let mut order = vec![UNSEEN; n];
    let mut next = 0;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for sink in (0..n).filter(|&p| !has_dependent[p]) {
        order[sink] = UNSEEN - 1;
        stack.push((sink, 0));
        while let Some(top) = stack.last_mut() {
            let (p, i) = *top;
            match deps[p].get(i) {
                Some(&q) => {
                    top.1 += 1;
                    if order[q as usize] == UNSEEN {
                        order[q as usize] = UNSEEN - 1;
                        stack.push((q as usize, 0));
                    }
                }
                None => {
                    order[p] = next;
                    next += 1;
                    stack.pop();
                }
            }
        }
    }
    order
}
