//! The wakeup: waiting for readiness (and busy-polling after activity),
//! then handing out events in order.

use std::io;
use std::time::{Duration, Instant};

use super::{
    conn_index, listener_of, CloseReason, Entry, ListenerId, NetEvent, Phase, Reactor, Ready,
    EVENTS_CAPACITY, WAKER,
};
#[cfg(doc)]
use super::{ReactorConfig, Waker};

/// Extra waits without sleeping, per wakeup, while the OS keeps returning
/// a full batch of readiness events (see [`Reactor::next_event`]).
const FULL_BATCH_REPOLLS_MAX: u32 = 16;

impl Reactor {
    /// Flushes every connection sent to since the last call (one write
    /// each), then waits until a socket is ready, [`Waker::wake`] is
    /// called, or `deadline` passes (`None`: no deadline). Returns at once
    /// when events are still to be handed out. Internal timers (linger
    /// ends, accept retries) wake it too. After a signal interrupts the
    /// wait (including SIGSTOP then SIGCONT), it collects what is ready
    /// without waiting and returns, so input that arrived meanwhile is
    /// handed out before the loop judges any timeout.
    pub fn poll(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.flush();
        // Readiness is edge-triggered: what a connection left unread at its
        // budget is read now, without a new edge.
        for index in std::mem::take(&mut self.yielded) {
            if let Some(Entry::Live(slot)) = self.conns.get_mut(index) {
                slot.yielded = false;
                self.resume.push(index);
            }
        }
        let now = Instant::now();
        let busy =
            !self.pending.is_empty() || !self.resume.is_empty() || self.ready_at < self.ready.len();
        if self.frame_buffers_trim_at.is_none() && self.frame_buffers.kept_bytes() > 0 {
            self.frame_buffers_trim_at = Some(now + self.config.frame_buffers_idle);
        }
        let wake_at = [
            deadline,
            self.lingering.front().map(|&(at, _)| at),
            self.securing.front().map(|&(at, _)| at),
            self.accept_retry_at,
            self.frame_buffers_trim_at,
            self.write_check_at,
        ]
        .into_iter()
        .flatten()
        .min();
        if busy {
            self.wait(Some(Duration::ZERO))?;
        } else if !self.busy_poll(wake_at)? {
            let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
            self.wait(timeout)?;
        }
        self.repolls = 0;
        let now = Instant::now();
        self.expire_lingering(now);
        self.expire_securing(now);
        if self.write_check_at.is_some_and(|at| now >= at) {
            self.expire_stalled(now);
        }
        if self.frame_buffers_trim_at.is_some_and(|at| now >= at) {
            self.frame_buffers.trim_unused();
            self.frame_buffers_trim_at = None;
        }
        if self.accept_retry_at.is_some_and(|at| now >= at) {
            self.accept_retry_at = None;
            for i in 0..self.listeners.len() {
                if self.listeners[i].as_ref().is_some_and(|l| l.accept_failing) {
                    self.accept(ListenerId(i));
                }
            }
        }
        Ok(())
    }

    /// Looks for readiness without sleeping until [`ReactorConfig::busy_poll`]
    /// after the last activity (or `wake_at`), yielding the CPU between
    /// looks (on two cores shared by several processes, a spinning thread
    /// must not hold a core another one needs). Whether readiness came.
    pub(super) fn busy_poll(&mut self, wake_at: Option<Instant>) -> io::Result<bool> {
        let Some(active_at) = self.active_at else {
            return Ok(false);
        };
        let until = active_at + self.config.busy_poll;
        let until = wake_at.map_or(until, |at| at.min(until));
        while Instant::now() < until {
            self.wait(Some(Duration::ZERO))?;
            if self.ready_at < self.ready.len() {
                return Ok(true);
            }
            std::thread::yield_now();
        }
        Ok(false)
    }

    /// One wait of the OS poll, its readiness appended to `ready`.
    pub(super) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut timeout = timeout;
        loop {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => break,
                // Interrupted by a signal (or stopped and continued): take
                // what is ready without sleeping, then let the loop look
                // at its flags.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if timeout == Some(Duration::ZERO) {
                        return Ok(());
                    }
                    timeout = Some(Duration::ZERO);
                }
                Err(e) => return Err(e),
            }
        }
        self.ready.drain(..self.ready_at);
        self.ready_at = 0;
        let mut count = 0;
        for event in self.events.iter() {
            count += 1;
            self.ready.push(Ready {
                token: event.token(),
                readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                writable: event.is_writable() || event.is_error(),
            });
        }
        self.ready_full = count >= EVENTS_CAPACITY;
        if count > 0 && !self.config.busy_poll.is_zero() {
            self.active_at = Some(Instant::now());
        }
        Ok(())
    }

    /// The next event, `None` when everything ready is handled. Call it
    /// until `None` after every [`Reactor::poll`]: readiness is
    /// edge-triggered, so what is left unread is not reported again. It
    /// reads every socket that is ready now (also past one batch of OS
    /// events) before returning `None`.
    pub fn next_event(&mut self) -> Option<NetEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if let Some(event) = self.deliverable(event) {
                    return Some(event);
                }
                continue;
            }
            if let Some(index) = self.resume.pop() {
                self.read(index);
                continue;
            }
            if let Some(&ready) = self.ready.get(self.ready_at) {
                self.ready_at += 1;
                self.on_ready(ready);
                continue;
            }
            if self.ready_full && self.repolls < FULL_BATCH_REPOLLS_MAX {
                self.repolls += 1;
                if self.wait(Some(Duration::ZERO)).is_ok() {
                    continue;
                }
            }
            return None;
        }
    }

    /// Turns a queued event into what the loop gets, or drops it when the
    /// loop has closed that connection since.
    pub(super) fn deliverable(&mut self, event: NetEvent) -> Option<NetEvent> {
        match event {
            NetEvent::AcceptFailed { .. } => Some(event),
            NetEvent::ConnectFailed { conn, .. } => {
                let index = conn_index(conn);
                if self.conns.get(index).is_none_or(|e| e.id() != conn) {
                    return None; // abandoned by close()
                }
                self.conns.remove(index);
                Some(event)
            }
            NetEvent::Accepted { conn, .. }
            | NetEvent::Connected { conn }
            | NetEvent::Frame { conn, .. } => {
                let slot = self.live(conn)?;
                (slot.phase == Phase::Open).then_some(event)
            }
            NetEvent::Closed { conn, ref reason } => {
                let index = conn_index(conn);
                let slot = self.live(conn)?;
                let open = slot.phase == Phase::Open;
                // A peer that does not read gets no linger either: what
                // waited for it is dropped with the socket.
                if matches!(
                    reason,
                    CloseReason::Io(_) | CloseReason::WriteTimeout { .. }
                ) {
                    self.remove(index);
                } else if open {
                    self.begin_close(index);
                }
                open.then_some(event)
            }
        }
    }

    pub(super) fn on_ready(&mut self, ready: Ready) {
        if ready.token == WAKER {
            return;
        }
        if let Some(listener) = listener_of(ready.token) {
            return self.accept(listener);
        }
        let index = ready.token.0;
        let Some(Entry::Live(slot)) = self.conns.get_mut(index) else {
            return; // a connection already gone
        };
        if slot.failed {
            return;
        }
        if slot.phase == Phase::Securing {
            return self.secure(index);
        }
        if slot.phase == Phase::Connecting {
            match slot.conn.connect_result() {
                Ok(true) => {
                    slot.phase = Phase::Open;
                    self.pending
                        .push_back(NetEvent::Connected { conn: slot.id });
                    self.touch(index);
                }
                Ok(false) => return,
                Err(error) => {
                    let id = slot.id;
                    slot.conn.deregister(self.poll.registry());
                    self.conns[index] = Entry::FailedConnect(id);
                    self.pending
                        .push_back(NetEvent::ConnectFailed { conn: id, error });
                    return;
                }
            }
        }
        if ready.writable {
            self.touch(index);
        }
        if ready.readable {
            self.read(index);
        }
    }
}
