//! Lazy task graphs: a [`Delayed`] is a function call whose arguments may
//! be plain values, other delayed calls or futures. Computing one submits
//! every call it reaches as one graph.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use dask_core::client::{task_spec, KeyGenerator, TaskOptions};
use dask_core::messages::TaskSpec;
use dask_core::msgpack::task_ref_value;
use dask_core::Key;
use rmpv::Value;

use crate::future::Future;

/// One argument of a call.
#[derive(Clone, Debug)]
pub enum Arg {
    /// A plain value.
    Value(Value),
    /// The result of another call, computed first.
    Delayed(Delayed),
    /// The result of a submitted task.
    Future(Future),
    /// A list whose items may themselves be results of calls or futures.
    List(Vec<Arg>),
}

impl Arg {
    /// Binary data (a `Vec<u8>` converts to a list of integers instead).
    pub fn bytes(data: impl Into<Vec<u8>>) -> Arg {
        Arg::Value(Value::Binary(data.into()))
    }

    /// The wire value: results of calls and futures become task references.
    fn to_value(&self, children: &mut Vec<Delayed>) -> Value {
        match self {
            Arg::Value(v) => v.clone(),
            Arg::Delayed(d) => {
                children.push(d.clone());
                task_ref_value(d.key().as_str())
            }
            Arg::Future(f) => task_ref_value(f.key().as_str()),
            Arg::List(items) => Value::Array(items.iter().map(|a| a.to_value(children)).collect()),
        }
    }
}

macro_rules! arg_from_value {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Arg {
                Arg::Value(Value::from(v))
            }
        }
    )*};
}
arg_from_value!(i64, i32, u64, u32, f64, bool, &str, String);

impl From<usize> for Arg {
    fn from(v: usize) -> Arg {
        Arg::Value(Value::from(v as u64))
    }
}

impl From<Value> for Arg {
    fn from(v: Value) -> Arg {
        Arg::Value(v)
    }
}

impl From<Delayed> for Arg {
    fn from(d: Delayed) -> Arg {
        Arg::Delayed(d)
    }
}

impl From<&Delayed> for Arg {
    fn from(d: &Delayed) -> Arg {
        Arg::Delayed(d.clone())
    }
}

impl From<Future> for Arg {
    fn from(f: Future) -> Arg {
        Arg::Future(f)
    }
}

impl From<&Future> for Arg {
    fn from(f: &Future) -> Arg {
        Arg::Future(f.clone())
    }
}

impl<T: Into<Arg>> From<Vec<T>> for Arg {
    fn from(items: Vec<T>) -> Arg {
        Arg::List(items.into_iter().map(Into::into).collect())
    }
}

/// Builds a `Vec<Arg>`: `args![1, "x", &future, delayed_call]`.
#[macro_export]
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$($crate::Arg::from($arg)),*]
    };
}

/// The process-wide generator of task keys: `{function}-{seed}-{n}` with
/// a random seed per process, so keys of different clients do not clash.
fn next_key(function: &str) -> Key {
    static KEYS: OnceLock<Mutex<KeyGenerator>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| Mutex::new(KeyGenerator::new(crate::shared::random_seed())));
    let mut g = keys.lock().unwrap_or_else(|p| p.into_inner());
    g.next_key(function)
}

/// A new key for a value or task of this kind, unique to this process.
pub fn new_key(function: &str) -> Key {
    next_key(function)
}

#[derive(Clone, Debug)]
struct Node {
    key: Key,
    function: String,
    args: Vec<Arg>,
    kwargs: Vec<(String, Arg)>,
    options: TaskOptions,
}

impl Drop for Node {
    /// Long chains of calls would drop recursively and overflow the stack:
    /// unlink them with an explicit stack instead.
    fn drop(&mut self) {
        let mut stack: Vec<Arg> = std::mem::take(&mut self.args);
        stack.extend(std::mem::take(&mut self.kwargs).into_iter().map(|(_, a)| a));
        while let Some(arg) = stack.pop() {
            match arg {
                Arg::Delayed(d) => {
                    if let Ok(mut node) = Arc::try_unwrap(d.0) {
                        stack.append(&mut node.args);
                        stack.extend(std::mem::take(&mut node.kwargs).into_iter().map(|(_, a)| a));
                    }
                }
                Arg::List(items) => stack.extend(items),
                Arg::Value(_) | Arg::Future(_) => {}
            }
        }
    }
}

/// A lazy function call: `delayed("add", args![1, 2])`. Cheap to clone
/// (shared); its key is fixed when it is made.
#[derive(Clone, Debug)]
pub struct Delayed(Arc<Node>);

/// A lazy call of `function` with positional `args`.
pub fn delayed(function: &str, args: Vec<Arg>) -> Delayed {
    Delayed(Arc::new(Node {
        key: next_key(function),
        function: function.to_owned(),
        args,
        kwargs: Vec::new(),
        options: TaskOptions::default(),
    }))
}

impl Delayed {
    /// The key its result will have.
    pub fn key(&self) -> &Key {
        &self.0.key
    }

    /// The function it calls.
    pub fn function(&self) -> &str {
        &self.0.function
    }

    fn node_mut(&mut self) -> &mut Node {
        Arc::make_mut(&mut self.0)
    }

    /// Adds a keyword argument.
    pub fn kwarg(mut self, name: &str, value: impl Into<Arg>) -> Delayed {
        self.node_mut().kwargs.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the key (instead of the generated one).
    pub fn with_key(mut self, key: impl Into<Key>) -> Delayed {
        self.node_mut().key = key.into();
        self
    }

    /// Higher runs first.
    pub fn priority(mut self, priority: i64) -> Delayed {
        self.node_mut().options.priority = Some(priority);
        self
    }

    /// Reruns after an error before reporting it.
    pub fn retries(mut self, retries: u32) -> Delayed {
        self.node_mut().options.retries = Some(retries);
        self
    }

    /// An amount of a resource one run holds, e.g. `("GPU", 1.0)`.
    pub fn resource(mut self, name: &str, amount: f64) -> Delayed {
        self.node_mut()
            .options
            .resources
            .insert(name.to_owned(), amount);
        self
    }

    /// The only workers (names or addresses) allowed to run it.
    pub fn workers(mut self, workers: Vec<String>) -> Delayed {
        self.node_mut().options.workers = Some(workers);
        self
    }

    /// All options at once.
    pub fn options(mut self, options: TaskOptions) -> Delayed {
        self.node_mut().options = options;
        self
    }

    /// This call's task spec, and the delayed calls it depends on.
    fn spec(&self, children: &mut Vec<Delayed>) -> TaskSpec {
        let node = &self.0;
        let args: Vec<Value> = node.args.iter().map(|a| a.to_value(children)).collect();
        let kwargs: Vec<(String, Value)> = node
            .kwargs
            .iter()
            .map(|(k, a)| (k.clone(), a.to_value(children)))
            .collect();
        let mut spec = task_spec(node.key.clone(), &node.function, &args, &kwargs);
        node.options.apply(&mut spec);
        spec
    }
}

/// The task specs of `roots` and every call they reach, each key once
/// (iterative: chains of any length are fine).
pub fn build_graph(roots: &[Delayed]) -> Vec<TaskSpec> {
    let mut seen: HashSet<Key> = HashSet::new();
    let mut stack: Vec<Delayed> = roots.to_vec();
    let mut specs = Vec::new();
    let mut children = Vec::new();
    while let Some(d) = stack.pop() {
        if !seen.insert(d.key().clone()) {
            continue;
        }
        specs.push(d.spec(&mut children));
        stack.append(&mut children);
    }
    specs
}
