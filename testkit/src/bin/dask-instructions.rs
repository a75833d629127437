//! The instruction-count guard (issue 19 item 5): instructions per task of
//! the scheduler's and the workers' event paths, and of the codec, on
//! fixed small graphs, counted by callgrind. Counts do not depend on the
//! machine's speed or load, so CI holds them to a committed budget
//! (`bench/instructions.txt`): a change that makes the per-task work 20%
//! larger fails there instead of going unnoticed until a benchmark.
//!
//! The graphs run on [`dask_testkit::sim`]: the real `SchedulerState` (as
//! in production: no invariant checks) and two `WorkerState`s of one
//! thread each, their jobs run by the built-in functions, every frame
//! encoded and decoded, all on the calling thread with a virtual clock.
//! The sim calls each side through a function of its own (`in_scheduler`,
//! `in_worker`, `through_codec`), and callgrind counts inside one of them
//! per run (`--toggle-collect`).
//!
//! ```text
//! dask-instructions run SHAPE              # one graph (what callgrind measures)
//! dask-instructions check BUDGET [--update] # every shape and side, against BUDGET
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use dask_core::client::task_spec;
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use dask_scheduler::SchedulerStateConfig;
use dask_testkit::graphs;
use dask_testkit::sim::Sim;
use rmpv::Value;

/// The shapes, as the benchmark's (bench/src/main.rs), smaller.
const SHAPES: [&str; 3] = ["independent", "tree", "chain"];

/// The sides counted: a name, and the function of `sim` callgrind
/// collects inside.
const SIDES: [(&str, &str); 3] = [
    ("scheduler", "*sim::in_scheduler*"),
    ("worker", "*sim::in_worker*"),
    ("codec", "*sim::through_codec*"),
];

/// Growth over the budget that fails.
const GROWTH_ALLOWED: f64 = 0.20;

/// Shrink under the budget past which the check suggests re-baselining
/// (a guard whose budget is far above the truth lets growth through).
const SHRINK_NOTED: f64 = 0.10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["run", shape] => match graph(shape) {
            Some((tasks, wanted)) => {
                run(tasks, &wanted);
                ExitCode::SUCCESS
            }
            None => usage(&format!("unknown shape {shape:?}")),
        },
        ["check", budget] => check(Path::new(budget), false),
        ["check", budget, "--update"] => check(Path::new(budget), true),
        _ => usage("expected `run SHAPE` or `check BUDGET [--update]`"),
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "dask-instructions: {problem}\n\
         usage: dask-instructions run SHAPE            (SHAPE: {})\n\
         \x20      dask-instructions check BUDGET [--update]",
        SHAPES.join(", ")
    );
    ExitCode::from(2)
}

/// A shape's tasks and wanted keys.
fn graph(shape: &str) -> Option<(Vec<TaskSpec>, Vec<Key>)> {
    let key = |s: String| Key::from(s);
    let inc = |k: Key, arg: Value| task_spec(k, "inc", &[arg], &[]);
    Some(match shape {
        "independent" => {
            let tasks: Vec<TaskSpec> = (0..2000)
                .map(|i| inc(key(format!("inc-{i}")), Value::from(i)))
                .collect();
            let wanted = tasks.iter().map(|t| t.key.clone()).collect();
            (tasks, wanted)
        }
        "tree" => {
            // Keys `tree-{level}-{i}`, as before it used the shared builder,
            // so instruction counts compare across commits.
            let mut tasks: Vec<TaskSpec> = (0..1024)
                .map(|i| inc(key(format!("tree-0-{i}")), Value::from(i)))
                .collect();
            let leaves = tasks.iter().map(|t| t.key.clone()).collect();
            let (sums, root) = graphs::reduction(leaves, 2, |n| {
                let name = key(format!("tree-{}-{}", n.depth, n.index));
                task_spec(name, "add", &graphs::refs(n.inputs), &[])
            });
            tasks.extend(sums);
            (tasks, vec![root])
        }
        "chain" => {
            let name = |i: usize| key(format!("chain-{i}"));
            let mut tasks = vec![inc(name(0), Value::from(0))];
            for i in 1..500 {
                tasks.push(inc(name(i), task_ref_value(name(i - 1).as_str())));
            }
            (tasks, vec![name(499)])
        }
        _ => return None,
    })
}

/// Runs one graph on two one-thread workers until every wanted key
/// finished; panics if it does not within an hour of virtual time.
fn run(tasks: Vec<TaskSpec>, wanted: &[Key]) {
    let config = SchedulerStateConfig::default();
    let mut sim = Sim::with_scheduler_config(0, config);
    sim.set_wire(true);
    sim.add_worker(1, |_| {});
    sim.add_worker(1, |_| {});
    let client = sim.add_client();
    let wanted_names: Vec<&str> = wanted.iter().map(Key::as_str).collect();
    let count = tasks.len();
    sim.submit(client, tasks, &wanted_names);
    let done = sim.run_until(
        |s| s.finished_count(client) == wanted.len(),
        Duration::from_secs(3600),
    );
    assert!(done, "the graph of {count} tasks did not finish");
    println!("tasks {count}");
}

/// Counts every shape and side under callgrind and holds them to the
/// budget file (or rewrites it with `update`).
fn check(budget_path: &Path, update: bool) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("dask-instructions: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let budget = match std::fs::read_to_string(budget_path) {
        Ok(text) => parse_budget(&text),
        Err(_) if update => BTreeMap::new(),
        Err(e) => {
            eprintln!(
                "dask-instructions: cannot read the budget {}: {e}",
                budget_path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut measured = BTreeMap::new();
    let mut failures = Vec::new();
    println!(
        "{:<12} {:<10} {:>14} {:>14} {:>8}",
        "shape", "side", "instr/task", "budget", "change"
    );
    for shape in SHAPES {
        for (side, function) in SIDES {
            let per_task = match count(&exe, shape, function) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("dask-instructions: {shape}/{side}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            measured.insert((shape.to_string(), side.to_string()), per_task);
            let allowed = budget.get(&(shape.to_string(), side.to_string()));
            let change = allowed.map(|&b| per_task as f64 / b as f64 - 1.0);
            println!(
                "{shape:<12} {side:<10} {per_task:>14} {:>14} {:>8}",
                allowed.map_or("-".into(), u64::to_string),
                change.map_or("new".into(), |c| format!("{:+.1}%", c * 100.0)),
            );
            match (allowed, change) {
                (None, _) => failures.push(format!(
                    "{shape}/{side}: no budget in {} (add it with --update)",
                    budget_path.display()
                )),
                (Some(b), Some(c)) if c > GROWTH_ALLOWED => failures.push(format!(
                    "{shape}/{side}: {per_task} instructions per task, {:+.1}% over the \
                     budget of {b} (at most +{:.0}% allowed)",
                    c * 100.0,
                    GROWTH_ALLOWED * 100.0
                )),
                (Some(b), Some(c)) if c < -SHRINK_NOTED => println!(
                    "  note: {shape}/{side} is {:.1}% under its budget of {b}: \
                     re-baseline (--update) so the guard holds the gain",
                    -c * 100.0
                ),
                _ => {}
            }
        }
    }
    if update {
        let text = format_budget(&measured);
        if let Err(e) = std::fs::write(budget_path, text) {
            eprintln!(
                "dask-instructions: cannot write {}: {e}",
                budget_path.display()
            );
            return ExitCode::FAILURE;
        }
        println!("wrote {}", budget_path.display());
        return ExitCode::SUCCESS;
    }
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("\nthe per-task work grew past its budget:");
    for f in &failures {
        eprintln!("  {f}");
    }
    eprintln!(
        "\nFind where with `valgrind --tool=callgrind --collect-atstart=no \
         --toggle-collect='*sim::in_scheduler*' target/release/dask-instructions run SHAPE` \
         and callgrind_annotate, and make it cheaper. If the growth is the price of \
         something worth it (a feature, a fix), re-baseline with \
         `scripts/ci/instructions.sh --update` and say in the commit why the work grew."
    );
    ExitCode::FAILURE
}

/// Instructions per task of `shape` inside `function`, from one callgrind
/// run of this executable.
fn count(exe: &Path, shape: &str, function: &str) -> Result<u64, String> {
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--collect-atstart=no",
            &format!("--toggle-collect={function}"),
        ])
        .arg(exe)
        .args(["run", shape])
        .output()
        .map_err(|e| format!("cannot run valgrind ({e}): install it (apt-get install valgrind)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("the run failed ({}):\n{stderr}", output.status));
    }
    let tasks: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tasks ")?.trim().parse().ok())
        .ok_or_else(|| format!("the run printed no task count:\n{stdout}"))?;
    // callgrind's summary: "==PID== Collected : 123456".
    let collected: u64 = stderr
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("Collected :")?;
            rest.trim().parse().ok()
        })
        .ok_or_else(|| format!("no `Collected :` line in callgrind's output:\n{stderr}"))?;
    if collected == 0 {
        return Err(format!(
            "callgrind collected nothing inside {function}: was it inlined or renamed?"
        ));
    }
    Ok(collected.div_ceil(tasks.max(1)))
}

/// `shape side instructions` lines; `#` starts a comment.
fn parse_budget(text: &str) -> BTreeMap<(String, String), u64> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let mut words = l.split_whitespace();
            let (shape, side, n) = (words.next()?, words.next()?, words.next()?);
            Some(((shape.to_string(), side.to_string()), n.parse().ok()?))
        })
        .collect()
}

fn format_budget(measured: &BTreeMap<(String, String), u64>) -> String {
    let mut text = String::from(
        "# Instructions per task (callgrind), checked by scripts/ci/instructions.sh:\n\
         # a count more than 20% over its line fails CI. Rewritten by\n\
         # `scripts/ci/instructions.sh --update`; say in the commit why it moved.\n\
         # shape side instructions-per-task\n",
    );
    for shape in SHAPES {
        for (side, _) in SIDES {
            if let Some(n) = measured.get(&(shape.to_string(), side.to_string())) {
                text.push_str(&format!("{shape} {side} {n}\n"));
            }
        }
    }
    text
}
