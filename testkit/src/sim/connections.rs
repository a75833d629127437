use super::*;

impl Sim {
    // ---- connections ------------------------------------------------------

    pub(super) fn new_conn(&mut self) -> ConnId {
        self.last_conn += 1;
        ConnId(self.last_conn)
    }

    pub(super) fn new_address(&mut self, i: usize) -> String {
        self.last_port += 1;
        let address = format!("tcp://worker{i}.sim:{}", self.last_port);
        self.listening.insert(address.clone(), i);
        address
    }

    pub(super) fn link(&mut self, a: End, b: End) {
        self.peers.insert(a, b);
        self.peers.insert(b, a);
    }

    pub(super) fn unlink(&mut self, end: End) -> Option<End> {
        let other = self.peers.remove(&end)?;
        self.peers.remove(&other);
        self.frame_ended.remove(&end);
        self.frame_ended.remove(&other);
        Some(other)
    }

    /// `message` from `from` to the other end, in the frame being built
    /// there unless that frame was ended.
    pub(super) fn send_from(&mut self, from: End, message: Message) {
        let Some(&to) = self.peers.get(&from) else {
            return; // the connection is gone
        };
        let new_frame = self.frame_ended.remove(&from);
        if let Some(Delivery::Frame(end, messages)) = self.in_flight.back_mut() {
            if *end == to && !new_frame {
                messages.push(message);
                return;
            }
        }
        self.in_flight.push_back(Delivery::Frame(to, vec![message]));
    }

    pub(super) fn end_frame_from(&mut self, from: End) {
        self.frame_ended.insert(from);
    }

    pub(super) fn close_from(&mut self, from: End) {
        if let Some(to) = self.unlink(from) {
            self.in_flight.push_back(Delivery::Closed(to));
        }
    }
}
