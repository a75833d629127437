//! Tests of the graph order.

use super::*;
use proptest::prelude::*;

fn dag(deps: &[&[u32]]) -> Dag {
    let mut g = Dag::new();
    for d in deps {
        g.push(d.iter().copied());
    }
    g
}

fn assert_topological(g: &Dag, order: &[u32]) {
    let mut seen = vec![false; g.len()];
    for &p in order {
        assert!(!seen[p as usize], "place {p} given twice");
        seen[p as usize] = true;
    }
    for i in 0..g.len() as u32 {
        for &d in g.deps(i) {
            assert!(order[d as usize] < order[i as usize], "{d} after {i}");
        }
    }
}

/// A binary reduction over `leaves` leaves, leaves first.
fn tree(leaves: u32) -> Dag {
    let mut g = Dag::new();
    let mut level: Vec<u32> = (0..leaves).map(|_| g.push([])).collect();
    while level.len() > 1 {
        level = level.chunks(2).map(|c| g.push(c.iter().copied())).collect();
    }
    g
}

#[test]
fn an_empty_graph_has_an_empty_order() {
    assert_eq!(Dag::new().order().unwrap(), Vec::<u32>::new());
}

#[test]
fn cycles_and_unknown_positions_are_errors() {
    assert_eq!(dag(&[&[1], &[0]]).order(), Err(OrderError::Cycle));
    // 0 <-> 1 is the cycle, 2 hangs below it, 3 is fine.
    assert_eq!(dag(&[&[1], &[0], &[1], &[]]).on_cycles(), [0, 1]);
    assert_eq!(dag(&[&[], &[0]]).on_cycles(), Vec::<u32>::new());
    assert_eq!(dag(&[&[1], &[2], &[0], &[1]]).cycle_path(), [0, 1, 2, 0]);
    assert_eq!(dag(&[&[], &[1]]).cycle_path(), [1, 1]);
    assert_eq!(dag(&[&[], &[0]]).cycle_path(), Vec::<u32>::new());
    assert_eq!(dag(&[&[0]]).order(), Err(OrderError::Cycle));
    assert_eq!(
        dag(&[&[], &[5]]).order(),
        Err(OrderError::UnknownTask { task: 1, dep: 5 })
    );
}

#[test]
fn a_tree_reduction_holds_one_result_per_level() {
    // 2^k leaves: a depth-first walk holds one result per level, and
    // both inputs of the last node.
    let g = tree(1 << 10);
    let order = g.order().unwrap();
    assert_topological(&g, &order);
    assert_eq!(g.peak_pressure(&order), 11);
}

#[test]
fn the_deeper_dependency_goes_first() {
    // 4 = f(3, 0); 3 = g(1, 2): computing 3 needs two results held, so
    // computing it before the leaf 0 holds two at most, not three.
    let g = dag(&[&[], &[], &[], &[1, 2], &[0, 3]]);
    let order = g.order().unwrap();
    assert_topological(&g, &order);
    assert_eq!(g.peak_pressure(&order), 2);
    assert!(order[3] < order[0]);
}

#[test]
fn reductions_sharing_their_inputs_advance_together() {
    // Inputs x_i feed a_i, b_i and c_i; A, B and C reduce the a's, b's
    // and c's. Finishing A first would hold every x_i for B and C.
    let n = 64;
    let mut g = Dag::new();
    let xs: Vec<u32> = (0..n).map(|_| g.push([])).collect();
    let reduce = |g: &mut Dag| {
        let mut level: Vec<u32> = xs.iter().map(|&x| g.push([x])).collect();
        while level.len() > 1 {
            level = level.chunks(2).map(|c| g.push(c.iter().copied())).collect();
        }
    };
    reduce(&mut g);
    reduce(&mut g);
    reduce(&mut g);
    let order = g.order().unwrap();
    assert_topological(&g, &order);
    assert!(
        g.peak_pressure(&order) <= 3 * 7,
        "{}",
        g.peak_pressure(&order)
    );
}

#[test]
fn a_shared_input_is_consumed_by_all_its_dependents_before_moving_on() {
    // x feeds 100 chains of two tasks, each its own sink.
    let mut g = Dag::new();
    let x = g.push([]);
    for _ in 0..100 {
        let a = g.push([x]);
        g.push([a]);
    }
    let order = g.order().unwrap();
    assert_topological(&g, &order);
    assert_eq!(g.peak_pressure(&order), 2);
}

#[test]
fn repeated_dependencies_count_once() {
    let g = dag(&[&[], &[0, 0, 0], &[1, 0, 1]]);
    let order = g.order().unwrap();
    assert_topological(&g, &order);
    assert_eq!(g.peak_pressure(&order), 2);
}

/// A random graph: each task depends on up to `fan` earlier ones, the
/// positions then shuffled by a rotation so dependencies come later too.
fn random_dag(n: u32, fan: usize, seed: &[u32], rotate: u32) -> Dag {
    let mut g = Dag::new();
    let shift = |i: u32| (i + rotate) % n;
    let mut by_place = vec![Vec::new(); n as usize];
    for i in 1..n {
        for k in 0..fan {
            let r = seed[(i as usize * fan + k) % seed.len()];
            if matches!(r % 3, 1 | 2) {
                by_place[shift(i) as usize].push(shift(r % i));
            }
        }
    }
    for deps in by_place {
        g.push(deps);
    }
    g
}

proptest! {
    #[test]
    fn every_order_is_a_topological_permutation(
        n in 1u32..200,
        fan in 0usize..5,
        seed in proptest::collection::vec(any::<u32>(), 1..64),
        rotate in any::<u32>(),
    ) {
        let g = random_dag(n, fan, &seed, rotate);
        let order = g.order().unwrap();
        assert_topological(&g, &order);
    }
}

/// Orders `g`, checks the order is topological, returns its peak.
fn peak(g: &Dag) -> usize {
    let order = g.order().unwrap();
    assert_topological(g, &order);
    g.peak_pressure(&order)
}

/// The same graph with positions permuted by `p` (a bijection).
fn permuted(g: &Dag, p: impl Fn(u32) -> u32) -> Dag {
    let n = g.len() as u32;
    let mut by_position = vec![Vec::new(); n as usize];
    for i in 0..n {
        by_position[p(i) as usize] = g.deps(i).iter().map(|&d| p(d)).collect();
    }
    let mut out = Dag::new();
    for deps in by_position {
        out.push(deps);
    }
    out
}

/// A permutation of 0..n that scatters neighbours (n odd or even).
fn scatter(n: u32) -> impl Fn(u32) -> u32 {
    // Multiplying by a unit modulo n is a bijection.
    let mut k = n / 2 + 1;
    while gcd(k, n) != 1 {
        k += 1;
    }
    move |i| ((i as u64 * k as u64) % n as u64) as u32
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// map_overlap on an n x n grid: each chunk, its borders (one per
/// neighbour), the chunk with its neighbours' borders, mapped, trimmed.
fn map_overlap_2d(n: u32) -> Dag {
    let mut g = Dag::new();
    let idx = |i: u32, j: u32| i * n + j;
    let x: Vec<u32> = (0..n * n).map(|_| g.push([])).collect();
    let mut edge = std::collections::HashMap::new();
    for i in 0..n {
        for j in 0..n {
            for di in -1i32..=1 {
                for dj in -1i32..=1 {
                    if (di, dj) != (0, 0) {
                        let e = g.push([x[idx(i, j) as usize]]);
                        edge.insert((i, j, di, dj), e);
                    }
                }
            }
        }
    }
    for i in 0..n {
        for j in 0..n {
            let mut parts = vec![x[idx(i, j) as usize]];
            for di in -1i32..=1 {
                for dj in -1i32..=1 {
                    let (a, b) = (i as i32 + di, j as i32 + dj);
                    if (di, dj) != (0, 0)
                        && (0..n as i32).contains(&a)
                        && (0..n as i32).contains(&b)
                    {
                        parts.push(edge[&(a as u32, b as u32, -di, -dj)]);
                    }
                }
            }
            let overlap = g.push(parts);
            let mapped = g.push([overlap]);
            g.push([mapped]);
        }
    }
    g
}

#[test]
fn an_overlapping_grid_is_swept_by_a_front_whatever_the_submission_order() {
    // Memory grows with the side of the grid (a front of borders), not its
    // area, also when the tasks come in a scattered order.
    let n = 24;
    let g = map_overlap_2d(n);
    let scattered = permuted(&g, scatter(g.len() as u32));
    assert!(peak(&g) <= 4 * n as usize + 8, "{}", peak(&g));
    assert!(
        peak(&scattered) <= 4 * n as usize + 8,
        "{}",
        peak(&scattered)
    );
}

#[test]
fn side_inputs_of_a_chain_of_joins_are_made_just_in_time() {
    // d_i = f(d_{i-1}, b_i, c_i), where every b_i derives from b_0 and every
    // c_i from c_0: computing all b_i as soon as b_0 exists would hold them
    // all; just in time holds b_0, c_0, d_{i-1}, b_i, c_i.
    let mut g = Dag::new();
    let (a0, b0, c0) = (g.push([]), g.push([]), g.push([]));
    let mut d = g.push([a0, b0, c0]);
    for _ in 1..10 {
        let b = g.push([b0]);
        let c = g.push([c0]);
        d = g.push([d, b, c]);
    }
    assert_eq!(peak(&g), 5);
}

#[test]
fn a_result_split_into_tails_is_freed_by_finishing_them() {
    // Four groups cross-joined pairwise (dask/dask#5859's shape): each
    // join's result splits into two tails ending in sinks. Left waiting,
    // the split results pile up while the other joins run.
    let groups = 4;
    let mut g = Dag::new();
    let mut left = Vec::new();
    let mut right = Vec::new();
    for _ in 0..groups {
        let x0 = g.push([]);
        let x1 = g.push([x0]);
        left.push(g.push([x0]));
        right.push(g.push([x1]));
    }
    for &l in &left {
        for &r in &right {
            let join = g.push([l, r]);
            let split = g.push([join]);
            let first = g.push([split]);
            let first = g.push([first]);
            g.push([first]);
            let second = g.push([split]);
            g.push([second]);
        }
    }
    assert!(peak(&g) <= 10, "{}", peak(&g));
}
