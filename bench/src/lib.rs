//! What the benchmark binaries share: the graph shapes they build, and
//! reading a process's CPU time.

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

/// A shape of `dask-bench --scale` (`tree` or `independent`, see
/// `scale.rs`): its tasks, its wanted keys and the sum of their results.
pub fn scale_graph(shape: &str, tasks: usize) -> (Vec<TaskSpec>, Vec<Key>, i64) {
    match shape {
        "independent" => {
            let specs: Vec<TaskSpec> = (0..tasks)
                .map(|i| task_spec(Key(format!("i-{i}")), "inc", &[Value::from(i)], &[]))
                .collect();
            let wanted = specs.iter().map(|s| s.key.clone()).collect();
            (specs, wanted, (1..=tasks as i64).sum())
        }
        "tree" => {
            let leaves = (tasks / 2).max(1);
            let name = |level: u32, i: usize| Key(format!("t-{level}-{i}"));
            let mut specs: Vec<TaskSpec> = Vec::with_capacity(2 * leaves);
            specs.extend((0..leaves).map(|i| task_spec(name(0, i), "inc", &[Value::from(i)], &[])));
            // Each level: pairs summed, an odd last one carried up.
            let mut level_keys: Vec<Key> = (0..leaves).map(|i| name(0, i)).collect();
            let mut level = 0;
            while level_keys.len() > 1 {
                level += 1;
                let mut next = Vec::with_capacity(level_keys.len().div_ceil(2));
                for (i, pair) in level_keys.chunks(2).enumerate() {
                    match pair {
                        [a, b] => {
                            let key = name(level, i);
                            let args = [task_ref_value(a.as_str()), task_ref_value(b.as_str())];
                            specs.push(task_spec(key.clone(), "add", &args, &[]));
                            next.push(key);
                        }
                        [a] => next.push(a.clone()),
                        _ => unreachable!("chunks of 2"),
                    }
                }
                level_keys = next;
            }
            (specs, level_keys, (1..=leaves as i64).sum())
        }
        other => panic!("unknown scale shape {other:?}: tree or independent"),
    }
}

/// A binary reduction over `leaves` leaves (a power of two): leaf `i` is
/// `leaf_function(leaf_args(i))`, each node `node_function` of its two
/// children; keys from `name(level, index)`. The tasks, leaves first, and
/// the root's key.
pub fn binary_tree(
    leaves: usize,
    name: impl Fn(u32, usize) -> Key,
    leaf_function: &str,
    leaf_args: impl Fn(usize) -> Vec<Value>,
    node_function: &str,
) -> (Vec<TaskSpec>, Key) {
    let mut tasks: Vec<TaskSpec> = Vec::with_capacity(2 * leaves);
    tasks.extend((0..leaves).map(|i| task_spec(name(0, i), leaf_function, &leaf_args(i), &[])));
    let (mut level, mut width) = (0, leaves);
    while width > 1 {
        for i in 0..width / 2 {
            let args = [
                task_ref_value(name(level, 2 * i).as_str()),
                task_ref_value(name(level, 2 * i + 1).as_str()),
            ];
            tasks.push(task_spec(name(level + 1, i), node_function, &args, &[]));
        }
        level += 1;
        width /= 2;
    }
    (tasks, name(level, 0))
}

/// CPU time (user + system, all threads) of process `pid` ("self": this
/// one), from /proc/PID/stat, in seconds (ticks of 10 ms).
pub fn cpu_seconds(pid: &str) -> f64 {
    // utime and stime: fields 14 and 15 of the line.
    stat_seconds(pid, [14, 15])
}

/// The sum of two tick fields of /proc/PID/stat (numbered from 1, as in
/// proc(5)), in seconds.
pub fn stat_seconds(pid: &str, fields: [usize; 2]) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses (field 2):
    // field N is the (N - 3)th after ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let values: Vec<&str> = after.split_whitespace().collect();
    let ticks = |n: usize| {
        values
            .get(n.saturating_sub(3))
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(fields[0]) + ticks(fields[1])) / 100.0
}

/// This process's CPU time (user + system, every thread, ended ones
/// included) in seconds, to the nanosecond: short runs read as they are,
/// where `cpu_seconds("self")` would count whole ticks of 10 ms.
pub fn own_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill; the clock id
    // is a constant every Linux knows.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    if status != 0 {
        return cpu_seconds("self");
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// CPU time of each live thread of process `pid`, by thread name, in
/// seconds to the nanosecond (/proc/PID/task/TID/schedstat: time on a
/// CPU), where [`cpu_seconds`] counts 10 ms ticks of the whole process.
pub fn thread_cpu_seconds(pid: &str) -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let dir = t.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_owned(), ns / 1e9))
        })
        .collect()
}

/// CPU time the whole machine spent busy (every CPU; user, system,
/// interrupts, steal: all but idle and I/O wait), from /proc/stat, in
/// seconds. Other work on the machine counts too: read it on an idle one.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| ![3, 4].contains(i) && *i < 8)
        .map(|(_, t)| t)
        .sum();
    busy / 100.0
}
