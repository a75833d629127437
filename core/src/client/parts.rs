//! Submitting a large graph in parts (spec/PROTOCOL.md, Advice to
//! implementers, "A graph larger than a frame"): a graph of more than [`SUBMIT_PART_BYTES`]
//! goes as several `update-graph`s, so neither side builds or holds one
//! giant message (a 10M-task graph is ~500 MB of msgpack, over the frame
//! limit). It needs nothing new from the scheduler:
//!
//! - the parts go in dependency order (a depth-first post-order from the
//!   graph's outputs, the tasks no other task refers to, in their given
//!   order, so a tree goes subtree by subtree whatever order its tasks were
//!   listed in, and few keys cross a part boundary), each task referring only to tasks
//!   of its own or an earlier part, or to keys the scheduler already knows;
//! - a part also wants its keys that later parts refer to (the scheduler
//!   forgets at once new tasks nothing wants or needs), and the user's
//!   wanted keys go with the part that defines them (the last part: the
//!   others);
//! - once the last part is queued, those extra wants are released (the
//!   scheduler keeps such a key while a task that needs it waits).
//!
//! A refused part refuses only its own keys: parts before it stay
//! submitted. A graph with a cycle or a key defined twice is sent whole,
//! as before, for the scheduler to refuse.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::messages::TaskSpec;
use crate::msgpack::Reader;
use crate::wire::Key;

/// The largest part of a graph submitted in parts, in estimated encoded
/// bytes (4 MiB: about 90,000 small tasks). The scheduler takes a part in
/// one event, answering no one meanwhile: a 16 MiB part of a tree took it
/// 2-6 s at load 10, a 4 MiB one a quarter, and it holds a quarter of the
/// decoded specs at once.
pub const SUBMIT_PART_BYTES: usize = 4 * 1024 * 1024;

/// The first part of a graph submitted in parts (64 KiB: about 1,400
/// small tasks); each next part is twice the last, up to the largest
/// ([`SUBMIT_PART_BYTES`] or what the session set). A "slow start": the
/// scheduler takes in a small first part at once and the workers start on
/// it while the rest comes, where a first part of 4 MiB kept them idle
/// for its whole intake (100k independent tasks: 40% of the run went by
/// before the first result). A graph of up to twice this goes whole.
pub const SUBMIT_FIRST_PART_BYTES: usize = 64 * 1024;

/// A submit planned apart from the session ([`SubmitPlan::new`] needs
/// only the tasks): the Rust client plans a graph without its session's
/// lock, then hands the session one part at a time
/// ([`SubmitPlan::next_part`], [`ClientSession::submit_part`](super::ClientSession::submit_part)),
/// releasing the lock between parts so that its I/O thread sends the first
/// while the next ones are built. [`ClientSession::submit`](super::ClientSession::submit)
/// is the same, all at once.
#[derive(Debug)]
pub struct SubmitPlan {
    kind: PlanKind,
    /// Keys wanted only because a later part refers to them: released
    /// once the last part is queued.
    needed_later: Vec<Key>,
    /// The next part is the first.
    first: bool,
}

#[derive(Debug)]
enum PlanKind {
    /// One `update-graph` (small, a cycle, a key defined twice), until taken.
    Whole(Option<(Vec<TaskSpec>, Vec<Key>)>),
    Parts(Plan),
}

/// One part of a [`SubmitPlan`], for [`ClientSession::submit_part`](super::ClientSession::submit_part).
#[derive(Debug)]
pub struct GraphPart {
    pub(super) kind: PartKind,
    /// Room to reserve in the key table (the first part: every part's
    /// wants, so the table grows once).
    pub(super) reserve: usize,
    /// The keys to release after this part, the last: wanted only for the
    /// later parts that refer to them.
    pub(super) release_after: Vec<Key>,
}

#[derive(Debug)]
pub(super) enum PartKind {
    Whole {
        tasks: Vec<TaskSpec>,
        wanted: Vec<Key>,
    },
    Part(Part),
}

impl SubmitPlan {
    /// Plans submitting `tasks` and wanting each key of `wanted` (one
    /// local reference per entry): in parts when the graph is over twice
    /// the first part (see [`ClientSession::submit`](super::ClientSession::submit)),
    /// none larger than `part_bytes` ([`ClientSession::submit_part_bytes`](super::ClientSession::submit_part_bytes)).
    pub fn new(tasks: Vec<TaskSpec>, wanted: Vec<Key>, part_bytes: usize) -> SubmitPlan {
        let kind = match split(tasks, part_bytes.max(1), wanted) {
            Ok(plan) => PlanKind::Parts(plan),
            Err(whole) => PlanKind::Whole(Some(whole)),
        };
        SubmitPlan {
            kind,
            needed_later: Vec::new(),
            first: true,
        }
    }

    /// The next part to hand to the session; `None` once every part went.
    pub fn next_part(&mut self) -> Option<GraphPart> {
        let first = std::mem::replace(&mut self.first, false);
        match &mut self.kind {
            PlanKind::Whole(whole) => {
                let (tasks, wanted) = whole.take()?;
                Some(GraphPart {
                    reserve: wanted.len(),
                    kind: PartKind::Whole { tasks, wanted },
                    release_after: Vec::new(),
                })
            }
            PlanKind::Parts(plan) => {
                let part = plan.next_part()?;
                self.needed_later.extend(part.needed_later.iter().cloned());
                let last = plan.is_done();
                Some(GraphPart {
                    reserve: if first { plan.refs } else { 0 },
                    kind: PartKind::Part(part),
                    release_after: if last {
                        std::mem::take(&mut self.needed_later)
                    } else {
                        Vec::new()
                    },
                })
            }
        }
    }
}

/// One part of a graph.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) tasks: Vec<TaskSpec>,
    /// Keys of this part that later parts refer to.
    pub(super) needed_later: Vec<Key>,
    /// The user's wanted keys this part defines (the last part also those
    /// the graph does not define), one entry per wanted entry.
    pub(super) wanted: Vec<Key>,
    /// The keys its `update-graph` wants: those of `wanted` and
    /// `needed_later`, each once.
    pub(super) listed: Vec<Key>,
}

/// A graph cut into parts, each built when it is to go ([`Plan::next_part`]):
/// the first part leaves while the later ones are built and registered
/// (100k independent tasks: the whole submit was ~80 ms before anything
/// went).
#[derive(Debug)]
pub(super) struct Plan {
    /// Per part still to go: its wanted entries, each with whether its
    /// `update-graph` lists it (the first entry of its key).
    wanted: std::vec::IntoIter<Vec<(Key, bool)>>,
    tasks: Tasks,
    /// Wants (local references) of every part: reserved at once.
    pub(super) refs: usize,
}

/// Where each part's tasks come from.
#[derive(Debug)]
enum Tasks {
    /// Already in dependency order (independent tasks, a chain listed from
    /// its start): each part is the next run of the list, moved once, when
    /// it goes.
    Run {
        tasks: std::vec::IntoIter<TaskSpec>,
        /// Per part, its number of tasks.
        counts: std::vec::IntoIter<usize>,
        /// Per task: a later part refers to it; a user's wanted key lists it.
        needed_later: Vec<bool>,
        listed: Vec<bool>,
        /// Position of the next task.
        at: usize,
    },
    /// Reordered: every part built at once (tasks, keys later parts need,
    /// the needed keys not listed by a wanted entry).
    Built(std::vec::IntoIter<(Vec<TaskSpec>, Vec<Key>, Vec<Key>)>),
}

impl Plan {
    /// Whether every part was built.
    fn is_done(&self) -> bool {
        self.wanted.len() == 0
    }

    /// The next part, or `None` after the last.
    pub(super) fn next_part(&mut self) -> Option<Part> {
        let wanted_entries = self.wanted.next()?;
        let mut listed = Vec::new();
        let mut wanted = Vec::with_capacity(wanted_entries.len());
        for (k, list) in wanted_entries {
            if list {
                listed.push(k.clone());
            }
            wanted.push(k);
        }
        let (tasks, needed_later) = match &mut self.tasks {
            Tasks::Run {
                tasks,
                counts,
                needed_later: needed,
                listed: listed_at,
                at,
            } => {
                let n = counts.next().unwrap_or(0);
                let part: Vec<TaskSpec> = tasks.by_ref().take(n).collect();
                let start = *at;
                *at += part.len();
                let mut needed_later = Vec::new();
                for (i, spec) in part.iter().enumerate() {
                    if needed[start + i] {
                        needed_later.push(spec.key.clone());
                        if !listed_at[start + i] {
                            listed.push(spec.key.clone());
                        }
                    }
                }
                (part, needed_later)
            }
            Tasks::Built(parts) => {
                let (tasks, needed_later, unlisted) = parts.next().unwrap_or_default();
                listed.extend(unlisted);
                (tasks, needed_later)
            }
        };
        Some(Part {
            tasks,
            needed_later,
            wanted,
            listed,
        })
    }
}

/// Roughly what a task spec costs in an `update-graph`.
fn spec_bytes(spec: &TaskSpec) -> usize {
    // The map header and field names of key, function and args: ~24 bytes.
    24 + spec.key.as_str().len()
        + spec.function.len()
        + spec.args.as_bytes().len()
        + spec.kwargs.as_ref().map_or(0, |k| k.as_bytes().len() + 8)
        + spec
            .workers
            .as_ref()
            .map_or(0, |w| w.iter().map(|n| n.len() + 2).sum())
        + spec.resources.as_ref().map_or(0, |r| r.len() * 24)
        + 16
}

/// `tasks` in parts in dependency order, the first of about
/// [`SUBMIT_FIRST_PART_BYTES`] (at most `part_bytes`), each next twice the
/// last up to `part_bytes`, the `wanted` keys with the part that defines
/// them; the tasks and `wanted` back when they fit in two first parts, have
/// a cycle or define a key twice.
pub(super) fn split(
    tasks: Vec<TaskSpec>,
    part_bytes: usize,
    wanted: Vec<Key>,
) -> Result<Plan, (Vec<TaskSpec>, Vec<Key>)> {
    let sizes: Vec<usize> = tasks.iter().map(spec_bytes).collect();
    let first_bytes = SUBMIT_FIRST_PART_BYTES.min(part_bytes);
    if sizes.iter().sum::<usize>() <= 2 * first_bytes || tasks.len() > u32::MAX as usize {
        return Err((tasks, wanted));
    }
    let Some(index) = key_index(&tasks) else {
        return Err((tasks, wanted));
    };
    let deps = dependencies(&tasks, &index);
    // Position of each wanted key's task (`None`: defined elsewhere).
    let mut near = Nearby::default();
    let wanted_at: Vec<Option<u32>> = wanted
        .iter()
        .map(|k| near.find(&tasks, &index, k.as_str()))
        .collect();
    drop(index);
    // No task refers to another (independent tasks): the order is the
    // list's and no key is needed by a later part, with no walk (the
    // post-order was ~15% of planning 100k independent tasks).
    let order = if deps.refs.is_empty() {
        None
    } else {
        let Some(order) = post_order(&deps) else {
            return Err((tasks, wanted));
        };
        Some(order)
    };
    // Part of each task, filling parts in post-order, each twice the last.
    let mut part_of = vec![0u32; tasks.len()];
    let (mut part, mut filled, mut limit) = (0u32, 0usize, first_bytes);
    let mut fill = |t: usize| {
        if filled > 0 && filled + sizes[t] > limit {
            part += 1;
            filled = 0;
            limit = limit.saturating_mul(2).min(part_bytes);
        }
        filled += sizes[t];
        part_of[t] = part;
    };
    match &order {
        Some(order) => order.iter().for_each(|&t| fill(t as usize)),
        None => (0..tasks.len()).for_each(fill),
    }
    let mut needed_later = vec![false; tasks.len()];
    if !deps.refs.is_empty() {
        for t in 0..tasks.len() {
            for &d in deps.of(t) {
                if part_of[d as usize] < part_of[t] {
                    needed_later[d as usize] = true;
                }
            }
        }
    }
    drop(deps);
    let parts = part as usize + 1;
    // Each key listed once, told by its task's position (no sort or hash of
    // the keys: sorting each part's keys to drop repeats was 86% of
    // submitting 100k independent tasks). The keys are copied for the
    // lists when their part is built.
    let part_of_wanted = |at: &Option<u32>| at.map_or(part, |t| part_of[t as usize]);
    let mut wanted_counts = vec![0usize; parts];
    for at in &wanted_at {
        wanted_counts[part_of_wanted(at) as usize] += 1;
    }
    // At their final sizes: grown by doubling, the entries were copied again.
    let mut wanted_of: Vec<Vec<(Key, bool)>> =
        wanted_counts.into_iter().map(Vec::with_capacity).collect();
    let mut listed_at = vec![false; tasks.len()];
    let mut outside: HashSet<Key> = HashSet::new();
    let refs = wanted.len() + needed_later.iter().filter(|&&n| n).count();
    for (k, at) in wanted.into_iter().zip(wanted_at) {
        let (p, list) = match at {
            Some(t) => (
                part_of[t as usize],
                !std::mem::replace(&mut listed_at[t as usize], true),
            ),
            None => (part, outside.insert(k.clone())),
        };
        wanted_of[p as usize].push((k, list));
    }
    let wanted = wanted_of.into_iter();
    let in_list_order = order
        .as_ref()
        .is_none_or(|order| order.iter().enumerate().all(|(at, &t)| at == t as usize));
    if in_list_order {
        // Already in dependency order: each part is a run of the list.
        // Moving every spec twice (into slots, then into its part), each
        // new list's pages faulted in, was most of the split.
        let mut counts = vec![0usize; parts];
        for &p in &part_of {
            counts[p as usize] += 1;
        }
        return Ok(Plan {
            wanted,
            tasks: Tasks::Run {
                tasks: tasks.into_iter(),
                counts: counts.into_iter(),
                needed_later,
                listed: listed_at,
                at: 0,
            },
            refs,
        });
    }
    // Each part's list at its final size: grown by doubling, every spec
    // was copied again and the pages faulted in twice.
    let mut built: Vec<(Vec<TaskSpec>, Vec<Key>, Vec<Key>)> =
        (0..parts).map(|_| Default::default()).collect();
    let mut counts = vec![0usize; parts];
    for &p in &part_of {
        counts[p as usize] += 1;
    }
    for (part, n) in built.iter_mut().zip(counts) {
        part.0.reserve_exact(n);
    }
    let mut slots: Vec<Option<TaskSpec>> = tasks.into_iter().map(Some).collect();
    for t in order.unwrap_or_default() {
        let t = t as usize;
        let Some(spec) = slots[t].take() else {
            continue;
        };
        let p = &mut built[part_of[t] as usize];
        if needed_later[t] {
            p.1.push(spec.key.clone());
            if !listed_at[t] {
                p.2.push(spec.key.clone());
            }
        }
        p.0.push(spec);
    }
    Ok(Plan {
        wanted,
        tasks: Tasks::Built(built.into_iter()),
        refs,
    })
}

/// The position of each task by key, or `None` when a key is defined
/// twice. Hashed with foldhash, not std's SipHash: these are the user's own
/// keys, and hashing was most of the client's time splitting a 10M-task
/// graph.
fn key_index(tasks: &[TaskSpec]) -> Option<HashMap<&str, u32>> {
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(tasks.len());
    for (i, spec) in tasks.iter().enumerate() {
        if index.insert(spec.key.as_str(), i as u32).is_some() {
            return None;
        }
    }
    Some(index)
}

/// Each task's references to tasks of the graph (by position), flattened:
/// task `t`'s are `refs[start[t]..start[t + 1]]`. One allocation for the
/// graph, not one per task (10M of them, with their frees, were a good part
/// of the client's time splitting a 10M-task tree).
struct Dependencies {
    refs: Vec<u32>,
    start: Vec<usize>,
}

impl Dependencies {
    fn len(&self) -> usize {
        self.start.len() - 1
    }

    fn of(&self, t: usize) -> &[u32] {
        &self.refs[self.start[t]..self.start[t + 1]]
    }
}

fn dependencies(tasks: &[TaskSpec], index: &HashMap<&str, u32>) -> Dependencies {
    let mut refs = Vec::with_capacity(tasks.len());
    let mut start = Vec::with_capacity(tasks.len() + 1);
    let mut near = Nearby::default();
    for spec in tasks {
        start.push(refs.len());
        let mut on_ref = |k: &str| {
            if let Some(d) = near.find(tasks, index, k) {
                refs.push(d);
            }
        };
        // Malformed arguments: the scheduler refuses them; here they only
        // have no references.
        if may_refer(spec.args.as_bytes()) {
            let _ = Reader::new(spec.args.as_bytes()).skip_value(&mut on_ref);
        }
        if let Some(kwargs) = &spec.kwargs {
            if may_refer(kwargs.as_bytes()) {
                let _ = Reader::new(kwargs.as_bytes()).skip_value(&mut on_ref);
            }
        }
    }
    start.push(refs.len());
    Dependencies { refs, start }
}

/// Whether msgpack `bytes` may hold a task reference: a reference is an
/// ext value, so its marker byte (ext 8/16/32, fixext) is among them. Most
/// tasks' arguments (a leaf's numbers) have none, and this look at a few
/// bytes spares parsing them (a third of splitting 100k independent
/// tasks); a byte that only looks like a marker (inside a number or a
/// string) costs the parse, as before.
fn may_refer(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| matches!(b, 0xc7..=0xc9 | 0xd4..=0xd8))
}

/// Finds keys by position, trying the task after the last one found
/// before the index: graphs are mostly listed so that a task's references
/// (and the wanted keys) follow one another (a tree level by level, a map
/// over partitions, a chain), and that one comparison with a key read in
/// order saves a probe of a table of every key, a cache miss or two at
/// random in it (at 10M tasks, 2.2 of the 2.8 s of a tree's split before
/// this).
#[derive(Default)]
struct Nearby {
    next: usize,
}

impl Nearby {
    fn find(&mut self, tasks: &[TaskSpec], index: &HashMap<&str, u32>, key: &str) -> Option<u32> {
        let at = match tasks.get(self.next) {
            Some(spec) if spec.key.as_str() == key => self.next as u32,
            _ => *index.get(key)?,
        };
        self.next = at as usize + 1;
        Some(at)
    }
}

/// The tasks in depth-first post-order (each after its dependencies),
/// starting from the outputs (tasks no task refers to) in the given order,
/// then from any task not reached (only those on a cycle); `None` on a
/// cycle. Starting from the outputs matters: from the leaves of a tree
/// listed leaves first, the order would be level by level, and every key
/// of every part but the last would be needed by a later part (a part
/// wants those, so the scheduler and the client tracked a want per task).
fn post_order(deps: &Dependencies) -> Option<Vec<u32>> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut has_dependents = vec![false; deps.len()];
    for &d in &deps.refs {
        has_dependents[d as usize] = true;
    }
    let outputs = (0..deps.len() as u32).filter(|&t| !has_dependents[t as usize]);
    let mut mark = vec![NEW; deps.len()];
    let mut order = Vec::with_capacity(deps.len());
    // (task, next dependency to look at)
    let mut stack: Vec<(u32, usize)> = Vec::new();
    for root in outputs.chain(0..deps.len() as u32) {
        if mark[root as usize] != NEW {
            continue;
        }
        mark[root as usize] = OPEN;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let (t, next) = *top;
            match deps.of(t as usize).get(next) {
                Some(&d) => {
                    top.1 += 1;
                    match mark[d as usize] {
                        NEW => {
                            mark[d as usize] = OPEN;
                            stack.push((d, 0));
                        }
                        OPEN => return None,
                        _ => {}
                    }
                }
                None => {
                    mark[t as usize] = DONE;
                    order.push(t);
                    stack.pop();
                }
            }
        }
    }
    Some(order)
}
