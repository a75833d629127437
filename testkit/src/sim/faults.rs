use super::*;

impl Sim {
    // ---- faults -----------------------------------------------------------

    /// Worker `i` dies: what it had not delivered is lost, and the other
    /// end of each of its connections sees it close.
    pub fn kill_worker(&mut self, i: usize) {
        let node = Node::Worker(i);
        self.workers[i].alive = false;
        self.workers[i].queued.clear();
        self.workers[i].running.clear();
        self.in_flight.retain(|d| d.to().node != node);
        self.listening.retain(|_, w| *w != i);
        let mut ends: Vec<End> = self
            .peers
            .keys()
            .filter(|e| e.node == node)
            .copied()
            .collect();
        ends.sort();
        for end in ends {
            if let Some(other) = self.unlink(end) {
                // What it sent and was not delivered yet is lost too.
                self.in_flight
                    .retain(|d| !matches!(d, Delivery::Frame(to, _) if *to == other));
                self.in_flight.push_back(Delivery::Closed(other));
            }
        }
    }

    /// The network drops worker `i`'s scheduler connection: both ends see
    /// it close (what was in flight on it is lost).
    pub fn cut_scheduler_connection(&mut self, i: usize) {
        let Some(conn) = self.workers[i].state.scheduler_conn() else {
            return;
        };
        let end = End {
            node: Node::Worker(i),
            conn,
        };
        if let Some(other) = self.unlink(end) {
            self.in_flight.retain(|d| d.to() != end && d.to() != other);
            self.in_flight.push_back(Delivery::Closed(end));
            self.in_flight.push_back(Delivery::Closed(other));
        }
    }

    /// The scheduler process dies and a new one starts on its journal
    /// (the records the old one emitted: give it a configuration with
    /// `journal` on): every connection to it closes, what was in flight to
    /// or from it is lost, and the new scheduler restores the records
    /// before anyone reconnects (workers do when their configuration has
    /// a reconnect timeout; clients with [`Sim::reconnect_client`]).
    pub fn crash_scheduler(&mut self) {
        let config = self.scheduler.config().clone();
        let mut ends: Vec<End> = self
            .peers
            .keys()
            .filter(|e| e.node == Node::Scheduler)
            .copied()
            .collect();
        ends.sort();
        for end in ends {
            if let Some(other) = self.unlink(end) {
                self.in_flight.retain(|d| d.to() != end && d.to() != other);
                self.in_flight.push_back(Delivery::Closed(other));
            }
        }
        self.in_flight.retain(|d| d.to().node != Node::Scheduler);
        let mut scheduler = SchedulerState::new(config, self.now);
        if let Err(e) = scheduler.restore(None, &self.journal) {
            panic!("seed {}: the journal does not restore: {e}", self.seed);
        }
        self.scheduler = scheduler;
    }

    /// Client `k` connects again, naming the session its last hello reply
    /// gave (dask/1.1 `session`), and the cluster runs until nothing moves.
    pub fn reconnect_client(&mut self, k: usize) {
        let session = self.clients[k].received.iter().rev().find_map(|m| match m {
            Message::Hello(h) => h.session.clone(),
            _ => None,
        });
        let (client, scheduler) = (self.new_conn(), self.new_conn());
        self.scheduler.handle_connected(self.now, scheduler);
        self.link(
            End {
                node: Node::Client(k),
                conn: client,
            },
            End {
                node: Node::Scheduler,
                conn: scheduler,
            },
        );
        self.clients[k].scheduler_conn = scheduler;
        let mut hello = handshake::offer(Role::Client, None);
        hello.session = session;
        self.client_send(k, Message::from(hello));
        self.drive();
    }
}
