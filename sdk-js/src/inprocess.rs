//! A graph run in this process with JS functions, one task at a time: the
//! in-process scheduler's plan and state machine (`dask-inprocess`, built
//! without threads) hold the order, the results and the errors; JS calls
//! the functions. Results stay msgpack bytes; a task's arguments come with
//! its dependencies' results spliced in where the references were.
//!
//! The calls, in order: [`InProcessDriver::new`] with the graph; then, until
//! it says `done`, [`InProcessDriver::next_task`] and, for the task it gave,
//! [`InProcessDriver::finished`] or [`InProcessDriver::failed`]; then
//! [`InProcessDriver::results`].

use std::collections::HashMap;
use std::sync::Arc;

use dask_core::client::Graph;
use dask_core::msgpack::write;
use dask_core::worker::TaskError;
use dask_core::RawValue;
use dask_inprocess::{OnError, Outcome, Plan, RunState, Stopped, TaskId};

use crate::pack::{Command, MapWriter};
use crate::worker::{splice_refs, task_error};

/// One run of a graph.
pub struct InProcessDriver {
    state: RunState,
    /// Results held: those some task still needs, and the wanted ones.
    values: Vec<Option<RawValue>>,
    errors: HashMap<TaskId, TaskError>,
    /// The task handed out and not yet reported.
    running: Option<TaskId>,
}

impl InProcessDriver {
    /// A run of `graph`, the msgpack of `{tasks: [task spec...], wanted:
    /// [key...]}` (wanted absent: every key no task depends on). A graph
    /// refused as a scheduler refuses one gives the msgpack of `{code,
    /// code_name, message}` (code nil when the bytes are no graph).
    /// `stop_on_error`: the first failure ends the run; else only what
    /// depends on a failed task is not run.
    pub fn new(graph: &[u8], stop_on_error: bool) -> Result<InProcessDriver, Vec<u8>> {
        let refusal = |code: Option<dask_core::ErrorCode>, message: String| {
            let mut out = Vec::new();
            MapWriter::new(&mut out, 3)
                .with("code", |w| match code {
                    Some(c) => write::uint(w, c as u64),
                    None => write::nil(w),
                })
                .str_or_nil("code_name", code.map(|c| c.name()))
                .str("message", &message);
            out
        };
        let (graph, wanted) =
            Graph::from_msgpack(graph).map_err(|e| refusal(None, e.to_string()))?;
        let plan = Plan::new(graph.into_tasks(), &wanted)
            .map_err(|e| refusal(Some(e.code), e.to_string()))?;
        let on_error = if stop_on_error {
            OnError::Stop
        } else {
            OnError::Continue
        };
        let n = plan.len();
        Ok(InProcessDriver {
            state: RunState::new(Arc::new(plan), on_error),
            values: vec![None; n],
            errors: HashMap::new(),
            running: None,
        })
    }

    /// The next task to run: `{task, function, args, kwargs, retries}`
    /// (args and kwargs as binaries holding their msgpack, kwargs nil when
    /// there are none), or `{done: true}` when the run is over.
    pub fn next_task(&mut self) -> Result<Vec<u8>, String> {
        if let Some(t) = self.running {
            return Err(format!("task {} was not reported yet", t.0));
        }
        let mut out = Vec::new();
        let Some(t) = self.state.poll_run() else {
            MapWriter::new(&mut out, 1).bool("done", true);
            return Ok(out);
        };
        let plan = Arc::clone(self.state.plan());
        let deps: HashMap<&str, &[u8]> = plan
            .deps(t)
            .iter()
            .filter_map(|&d| {
                let value = self.values[d.0 as usize].as_ref()?;
                Some((plan.task(d).key.as_str(), value.as_bytes()))
            })
            .collect();
        let task = plan.task(t);
        let spliced = splice_refs(task.args.as_bytes(), &deps).and_then(|args| {
            let kwargs = task
                .kwargs
                .as_ref()
                .map(|k| splice_refs(k.as_bytes(), &deps))
                .transpose()?;
            Ok((args, kwargs))
        });
        drop(deps);
        while let Some(r) = self.state.poll_release() {
            self.values[r.0 as usize] = None;
        }
        let (args, kwargs) = match spliced {
            Ok(both) => both,
            Err(e) => {
                // Cannot happen for a planned graph; reported as a worker would.
                self.errors
                    .insert(t, TaskError::new("MissingDependency", e));
                self.state.handle_failed(t);
                return self.next_task();
            }
        };
        self.running = Some(t);
        MapWriter::new(&mut out, 5)
            .uint("task", t.0 as u64)
            .str("function", &plan.functions()[task.function as usize])
            .with("args", |w| write::bin(w, &args))
            .with("kwargs", |w| match &kwargs {
                Some(k) => write::bin(w, k),
                None => write::nil(w),
            })
            .uint("retries", task.retries as u64);
        Ok(out)
    }

    /// The task handed out returned `value` (msgpack bytes, checked as a
    /// worker checks a result).
    pub fn finished(&mut self, task: u32, value: &[u8]) -> Result<(), String> {
        let t = self.take_running(task)?;
        match RawValue::from_bytes(value.to_vec()) {
            Ok(v) => {
                self.values[t.0 as usize] = Some(v);
                self.state.handle_finished(t);
                self.drop_released();
            }
            Err(e) => self.fail(
                t,
                TaskError::value_error(format!(
                    "result is not a valid dask/1 value: {}",
                    e.message
                )),
            ),
        }
        Ok(())
    }

    /// The task handed out failed: `error` is the msgpack of
    /// `{error: {error_type, message, traceback}}`.
    pub fn failed(&mut self, task: u32, error: &[u8]) -> Result<(), String> {
        let t = self.take_running(task)?;
        let e = task_error(&Command::parse(error)?)?;
        self.fail(t, e);
        Ok(())
    }

    /// Each wanted key's outcome, in the order asked: `[{key, value}]` for a
    /// result (a binary holding its msgpack), `[{key, error: {error_type, message, traceback}, cause}]`
    /// for a failure (cause: the key that raised it, nil when this one),
    /// `[{key, cancelled: true}]` for a key that did not run.
    pub fn results(&self) -> Vec<u8> {
        let plan = self.state.plan();
        let wanted = plan.wanted();
        let mut out = Vec::new();
        write::array_len(&mut out, wanted.len());
        for &t in wanted {
            let key = plan.task(t).key.as_str();
            let failed = match self.state.outcome(t) {
                Outcome::Finished => {
                    let value = self.values[t.0 as usize].as_ref();
                    MapWriter::new(&mut out, 2)
                        .str("key", key)
                        .with("value", |w| match value {
                            Some(v) => write::bin(w, v.as_bytes()),
                            None => write::nil(w),
                        });
                    continue;
                }
                Outcome::Failed => Some(t),
                Outcome::Blocked { cause } => Some(cause),
                Outcome::NotRun => match self.state.stopped() {
                    Some(Stopped::Failed(f)) => Some(f),
                    _ => None,
                },
            };
            let Some(f) = failed else {
                MapWriter::new(&mut out, 2)
                    .str("key", key)
                    .bool("cancelled", true);
                continue;
            };
            let error = self.errors.get(&f);
            let cause = (f != t).then(|| plan.task(f).key.as_str());
            MapWriter::new(&mut out, 3)
                .str("key", key)
                .with("error", |w| {
                    let (ty, message, traceback) =
                        error.map_or(("Error", "the task failed", ""), |e| {
                            (
                                e.error_type.as_str(),
                                e.message.as_str(),
                                e.traceback.as_str(),
                            )
                        });
                    MapWriter::new(w, 3)
                        .str("error_type", ty)
                        .str("message", message)
                        .str("traceback", traceback);
                })
                .str_or_nil("cause", cause);
        }
        out
    }

    fn take_running(&mut self, task: u32) -> Result<TaskId, String> {
        match self.running {
            Some(t) if t.0 == task => {
                self.running = None;
                Ok(t)
            }
            _ => Err(format!("task {task} is not the one running")),
        }
    }

    fn fail(&mut self, t: TaskId, error: TaskError) {
        self.errors.insert(t, error);
        self.state.handle_failed(t);
        self.drop_released();
    }

    fn drop_released(&mut self) {
        while let Some(r) = self.state.poll_release() {
            self.values[r.0 as usize] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dask_core::client::task_spec;
    use dask_core::msgpack::task_ref_value;
    use dask_core::Key;
    use rmpv::Value;

    fn graph(tasks: &[(&str, &str, Vec<Value>)], wanted: &[&str]) -> Vec<u8> {
        let specs: Vec<dask_core::messages::TaskSpec> = tasks
            .iter()
            .map(|(k, f, args)| task_spec(Key::from(*k), f, args, &[]))
            .collect();
        let mut out = Vec::new();
        MapWriter::new(&mut out, 2).wire("tasks", &specs).wire(
            "wanted",
            &wanted.iter().map(|&k| Key::from(k)).collect::<Vec<_>>(),
        );
        out
    }

    fn decode(bytes: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &bytes[..]).unwrap()
    }

    fn field<'v>(v: &'v Value, name: &str) -> &'v Value {
        v.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
            .map(|(_, v)| v)
            .unwrap_or(&Value::Nil)
    }

    /// Runs the driver with `f` standing for JS: (function, args) -> result.
    fn drive(
        d: &mut InProcessDriver,
        mut f: impl FnMut(&str, &Value) -> Result<Value, &'static str>,
    ) {
        loop {
            let next = decode(&d.next_task().unwrap());
            if field(&next, "done") == &Value::Boolean(true) {
                return;
            }
            let task = field(&next, "task").as_u64().unwrap() as u32;
            let function = field(&next, "function").as_str().unwrap().to_owned();
            let args = decode(field(&next, "args").as_slice().unwrap_or(&[]));
            match f(&function, &args) {
                Ok(v) => d
                    .finished(task, &RawValue::from_value(&v).into_bytes())
                    .unwrap(),
                Err(message) => {
                    let mut e = Vec::new();
                    MapWriter::new(&mut e, 1).with("error", |w| {
                        MapWriter::new(w, 2)
                            .str("error_type", "JsError")
                            .str("message", message);
                    });
                    d.failed(task, &e).unwrap();
                }
            }
        }
    }

    #[test]
    fn tasks_come_with_their_inputs_spliced_in_and_results_go_back_in_order() {
        let g = graph(
            &[
                ("a", "one", vec![]),
                ("b", "inc", vec![task_ref_value("a")]),
                ("c", "pair", vec![task_ref_value("a"), task_ref_value("b")]),
            ],
            &["c", "b"],
        );
        let mut d = InProcessDriver::new(&g, true).unwrap();
        let mut seen = Vec::new();
        drive(&mut d, |function, args| {
            seen.push(function.to_owned());
            let items = args.as_array().unwrap();
            Ok(match function {
                "one" => Value::from(1),
                "inc" => Value::from(items[0].as_i64().unwrap() + 1),
                _ => Value::Array(items.clone()),
            })
        });
        let results = decode(&d.results());
        let results = results.as_array().unwrap();
        assert_eq!(field(&results[0], "key").as_str(), Some("c"));
        let value = |r: &Value| decode(field(r, "value").as_slice().unwrap());
        assert_eq!(
            value(&results[0]),
            Value::Array(vec![Value::from(1), Value::from(2)])
        );
        assert_eq!(value(&results[1]), Value::from(2));
        assert!(d.next_task().is_ok(), "done stays done");
    }

    #[test]
    fn failures_name_their_cause_and_protocol_misuse_is_an_error() {
        let g = graph(
            &[
                ("bad", "boom", vec![]),
                ("below", "inc", vec![task_ref_value("bad")]),
                ("fine", "one", vec![]),
            ],
            &["below", "fine"],
        );
        let mut d = InProcessDriver::new(&g, false).unwrap();
        assert!(d.finished(0, &[0xc0]).is_err(), "nothing is running");
        drive(&mut d, |function, _| match function {
            "boom" => Err("no"),
            _ => Ok(Value::from(1)),
        });
        let results = decode(&d.results());
        let results = results.as_array().unwrap();
        assert_eq!(field(&results[0], "cause").as_str(), Some("bad"));
        assert_eq!(
            field(field(&results[0], "error"), "error_type").as_str(),
            Some("JsError")
        );
        assert_eq!(
            decode(field(&results[1], "value").as_slice().unwrap()),
            Value::from(1)
        );
        let refused = InProcessDriver::new(
            &graph(&[("a", "f", vec![task_ref_value("x")])], &["a"]),
            true,
        );
        let refusal = decode(&refused.err().unwrap());
        assert_eq!(field(&refusal, "code_name").as_str(), Some("unknown-key"));
        assert_eq!(field(&refusal, "code").as_u64(), Some(4001));
    }
}
