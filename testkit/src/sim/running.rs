use super::*;

impl Sim {
    // ---- running ----------------------------------------------------------

    /// One round: every machine's outputs, the executors' jobs, then what
    /// is in flight. Returns whether anything happened.
    pub fn step(&mut self) -> bool {
        let routed = self.route();
        let delivered = self.deliver();
        routed || delivered
    }

    /// Rounds until nothing moves (timeouts aside).
    pub fn drive(&mut self) {
        for _ in 0..ROUNDS_MAX {
            if !self.step() {
                return;
            }
        }
        panic!("seed {}: still busy after {ROUNDS_MAX} rounds", self.seed);
    }

    /// Rounds until `condition` holds, checked after each half of a round
    /// (outputs taken, then delivered), so a test can act between them
    /// (e.g. kill a worker while its reply is in flight). False when the
    /// cluster comes to rest first.
    pub fn step_until(&mut self, mut condition: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..ROUNDS_MAX {
            if condition(self) {
                return true;
            }
            let routed = self.route();
            if condition(self) {
                return true;
            }
            let delivered = self.deliver();
            if !routed && !delivered {
                return condition(self);
            }
        }
        panic!("seed {}: still busy after {ROUNDS_MAX} rounds", self.seed);
    }

    /// Drives the cluster and jumps the clock from timeout to timeout
    /// until `condition` holds (true; checked as [`Sim::step_until`]
    /// does, so the cluster stops at the first moment it holds) or `limit`
    /// of virtual time has passed (false).
    pub fn run_until(&mut self, mut condition: impl FnMut(&Sim) -> bool, limit: Duration) -> bool {
        let end = self.now + limit;
        loop {
            if self.step_until(&mut condition) {
                return true;
            }
            if !self.advance(end) {
                return condition(self);
            }
        }
    }

    /// Jumps the clock to the earliest timeout of any machine or job
    /// completion, if it is not past `end`, and runs the timeouts due (the
    /// next round hands over the results due). False when there is none.
    pub fn advance(&mut self, end: Timestamp) -> bool {
        let next = self
            .workers
            .iter()
            .filter(|w| w.alive)
            .filter_map(|w| w.state.poll_timeout())
            .chain(self.scheduler.poll_timeout())
            .chain(self.next_job_finish())
            .min();
        let Some(at) = next.filter(|&at| at <= end) else {
            return false;
        };
        if at > self.now {
            self.idle_while_queued += (at - self.now) * self.idle_threads_while_queued();
        }
        self.now = self.now.max(at);
        let now = self.now;
        if self.scheduler.poll_timeout().is_some_and(|t| t <= now) {
            in_scheduler(|| self.scheduler.handle_timeout(now));
        }
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            if w.alive && w.state.poll_timeout().is_some_and(|t| t <= now) {
                in_worker(|| w.state.handle_timeout(now));
                // As its loop does: outputs first (held reports go out),
                // then the next timeout.
                while let Some(output) = in_worker(|| self.workers[i].state.poll_output()) {
                    self.worker_output(i, output);
                }
                let next = self.workers[i].state.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > now),
                    "seed {}: worker {i}'s next timeout {next:?} is not after {now} (its loop would spin)",
                    self.seed
                );
            }
        }
        true
    }

    /// Idle threads of live workers, when another live worker has jobs
    /// waiting for a thread (else 0).
    pub fn idle_threads_while_queued(&self) -> u32 {
        let live = || self.workers.iter().enumerate().filter(|(_, w)| w.alive);
        let idle = |w: &SimWorker| w.state.config().nthreads.saturating_sub(w.running.len());
        live()
            .filter(|&(i, _)| live().any(|(j, v)| j != i && !v.queued.is_empty()))
            .map(|(_, w)| idle(w) as u32)
            .sum()
    }

    /// Takes every machine's outputs and runs the executors' jobs.
    fn route(&mut self) -> bool {
        let mut moved = false;
        while let Some(output) = in_scheduler(|| self.scheduler.poll_output()) {
            moved = true;
            match output {
                SchedulerOutput::Send(conn, message) => self.send_from(
                    End {
                        node: Node::Scheduler,
                        conn,
                    },
                    message,
                ),
                SchedulerOutput::Close(conn) => self.close_from(End {
                    node: Node::Scheduler,
                    conn,
                }),
                SchedulerOutput::Journal => self
                    .journal
                    .extend(in_scheduler(|| self.scheduler.take_journal_records())),
            }
        }
        for i in 0..self.workers.len() {
            while self.workers[i].alive {
                let Some(output) = in_worker(|| self.workers[i].state.poll_output()) else {
                    break;
                };
                moved = true;
                self.worker_output(i, output);
            }
            moved |= self.run_jobs(i);
        }
        moved
    }

    /// Delivers what is in flight now: in order per connection, the
    /// connections in the seed's order.
    fn deliver(&mut self) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let mut by_end: BTreeMap<End, Vec<Delivery>> = BTreeMap::new();
        for delivery in self.in_flight.drain(..) {
            by_end.entry(delivery.to()).or_default().push(delivery);
        }
        let mut groups: Vec<Vec<Delivery>> = by_end.into_values().collect();
        // Fisher-Yates with the seeded generator.
        for i in (1..groups.len()).rev() {
            let j = self.rng.below(i + 1);
            groups.swap(i, j);
        }
        let now = self.now;
        for mut delivery in groups.into_iter().flatten() {
            if let (Some(codecs), Delivery::Frame(to, messages)) = (&mut self.wire, &mut delivery) {
                let codec = codecs.entry(*to).or_default();
                *messages = through_codec(codec, std::mem::take(messages));
            }
            match delivery {
                Delivery::Frame(
                    End {
                        node: Node::Scheduler,
                        conn,
                    },
                    messages,
                ) => in_scheduler(|| self.scheduler.handle_frame(now, conn, messages)),
                Delivery::Closed(End {
                    node: Node::Scheduler,
                    conn,
                }) => in_scheduler(|| self.scheduler.handle_closed(now, conn)),
                Delivery::Frame(
                    End {
                        node: Node::Worker(i),
                        conn,
                    },
                    messages,
                ) => {
                    if self.workers[i].alive {
                        let w = &mut self.workers[i].state;
                        in_worker(|| w.handle_frame(now, conn, messages));
                    }
                }
                Delivery::Closed(End {
                    node: Node::Worker(i),
                    conn,
                }) => {
                    if self.workers[i].alive {
                        let reason = "closed by the other side";
                        let w = &mut self.workers[i].state;
                        in_worker(|| w.handle_closed(now, conn, reason));
                    }
                }
                Delivery::Frame(
                    End {
                        node: Node::Client(k),
                        ..
                    },
                    messages,
                ) => {
                    let client = &mut self.clients[k];
                    let finished = messages
                        .iter()
                        .filter(|m| matches!(m, Message::KeyFinished(_)));
                    client.finished += finished.count();
                    client.received.extend(messages)
                }
                Delivery::Closed(End {
                    node: Node::Client(_),
                    ..
                }) => {}
            }
        }
        true
    }

    fn worker_output(&mut self, i: usize, output: WorkerOutput) {
        let now = self.now;
        let me = |conn| End {
            node: Node::Worker(i),
            conn,
        };
        match output {
            WorkerOutput::Connect { address } => {
                let conn = self.new_conn();
                let w = &mut self.workers[i].state;
                in_worker(|| w.handle_connecting(now, Ok(conn)));
                self.workers[i].dialed.push(address.clone());
                let target = if address == SCHEDULER_ADDRESS {
                    Some(Node::Scheduler)
                } else {
                    self.listening
                        .get(&address)
                        .copied()
                        .filter(|&j| self.workers[j].alive)
                        .map(Node::Worker)
                };
                let Some(node) = target else {
                    // Nobody listens there: refused.
                    self.in_flight.push_back(Delivery::Closed(me(conn)));
                    return;
                };
                let other = self.new_conn();
                match node {
                    Node::Scheduler => in_scheduler(|| self.scheduler.handle_connected(now, other)),
                    Node::Worker(j) => {
                        let w = &mut self.workers[j].state;
                        in_worker(|| w.handle_connected(now, other))
                    }
                    Node::Client(_) => unreachable!("clients do not listen"),
                }
                self.link(me(conn), End { node, conn: other });
            }
            WorkerOutput::Send(conn, message) => self.send_from(me(conn), message),
            WorkerOutput::EndFrame(conn) => self.end_frame_from(me(conn)),
            WorkerOutput::Close(conn) => self.close_from(me(conn)),
            WorkerOutput::Listen => {
                let address = self.new_address(i);
                let old = std::mem::replace(&mut self.workers[i].address, address.clone());
                self.listening.remove(&old);
                let w = &mut self.workers[i].state;
                in_worker(|| w.handle_listening(now, address));
            }
            WorkerOutput::Execute(job) => {
                // Jobs carry no key: the worker tells it while the run is out.
                let w = &mut self.workers[i];
                let key = w.state.run_key(job.run_id).cloned();
                w.queued.push((key.unwrap_or_else(|| Key::from("?")), job));
            }
            WorkerOutput::Withdraw { run_id } => {
                let jobs = &mut self.workers[i].queued;
                let at = jobs.iter().position(|(_, j)| j.run_id == run_id);
                if let Some(at) = at {
                    jobs.remove(at);
                }
                let w = &mut self.workers[i].state;
                in_worker(|| w.handle_withdrawn(now, run_id, at.is_some()));
            }
            WorkerOutput::Registered { id, .. } => self.workers[i].registrations.push(id),
            // Simulated workers list no `value-local`: none comes.
            WorkerOutput::ReadLocal(read) => {
                let refused = Err("no memory is read in the simulation".to_owned());
                self.workers[i]
                    .state
                    .handle_local_read(self.now, read, refused);
            }
            WorkerOutput::Log(record) => self.workers[i].logs.push(record.message),
            WorkerOutput::Finished { error } => {
                let w = &mut self.workers[i];
                w.finished = Some(error);
                w.alive = false;
            }
        }
    }

    /// Worker `i`'s executor: starts queued jobs on its free threads
    /// (highest priority first, then in arrival order, as the real one
    /// does) and hands the worker the results due by now, earliest first.
    /// Returns whether anything started or finished.
    fn run_jobs(&mut self, i: usize) -> bool {
        let mut moved = false;
        loop {
            let w = &mut self.workers[i];
            if !w.alive {
                return moved;
            }
            let free = w.state.config().nthreads.saturating_sub(w.running.len());
            if free > 0 && !w.queued.is_empty() {
                w.queued
                    .sort_by(|(_, a), (_, b)| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
                let batch: Vec<(Key, Job)> = w.queued.drain(..free.min(w.queued.len())).collect();
                for (key, job) in batch {
                    let took = (self.job_duration)(&job);
                    let mut done = in_worker(|| run_job(&self.registry, &job));
                    done.duration_us = took.as_micros() as u64;
                    let w = &mut self.workers[i];
                    w.started.push(key.clone());
                    w.running.push(Running {
                        key,
                        finish: self.now + took,
                        done,
                    });
                }
                moved = true;
            }
            let w = &mut self.workers[i];
            let now = self.now;
            let Some(at) = (0..w.running.len())
                .filter(|&r| w.running[r].finish <= now)
                .min_by_key(|&r| w.running[r].finish)
            else {
                return moved;
            };
            let finished = w.running.remove(at);
            in_worker(|| w.state.handle_task_done(now, finished.done));
            moved = true;
        }
    }

    /// When the next running job of any live worker finishes.
    fn next_job_finish(&self) -> Option<Timestamp> {
        self.workers
            .iter()
            .filter(|w| w.alive)
            .flat_map(|w| w.running.iter().map(|r| r.finish))
            .min()
    }
}
