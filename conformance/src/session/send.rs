//! What the runner sends: messages and raw bytes, and its connection to the
//! worker's data address.

use super::*;

impl Session<'_> {
    pub(super) fn send(&mut self, on: Conn, messages: &[Map<String, Json>]) -> Result<(), String> {
        let mut encoded = Vec::new();
        for m in messages {
            let bytes = value::encode(&Json::Object(m.clone()), &self.vars)?;
            let shown = value::decode(&bytes)
                .map(|v| render(&v))
                .unwrap_or_default();
            self.line(Instant::now(), &arrow_out(on, self.who()), &shown);
            encoded.push(bytes);
        }
        self.write(on, &transport::frame_bytes(&encoded))
    }

    pub(super) fn write(&mut self, on: Conn, bytes: &[u8]) -> Result<(), String> {
        // The worker connects on its own schedule: a send to the scheduler
        // waits (boundedly) for its connection.
        if on == Conn::Scheduler && self.scheduler.is_none() {
            let until = Instant::now() + self.ms(STARTUP_MS);
            while self.scheduler.is_none() && Instant::now() < until {
                self.pump(until)?;
            }
        }
        let stream = match on {
            Conn::Scheduler => self.scheduler.as_mut(),
            Conn::Data => self.data.as_mut(),
            Conn::Peer => None,
        };
        let Some(stream) = stream else {
            return Err(format!("no {} connection to send on", on.as_str()));
        };
        stream
            .write_all(bytes)
            .map_err(|e| format!("could not send on the {} connection: {e}", on.as_str()))
    }

    pub(super) fn connect(&mut self, step: &case::ConnectStep) -> Result<(), String> {
        let handshake = step.handshake;
        // What the hello says beyond the fixed fields: features, and who
        // the runner is on its host (dask/1.1 value-local).
        let mut offer = Map::new();
        offer.insert("features".into(), json!(step.features));
        if let Some(local) = self.runner_local(step.local)? {
            offer.insert("local".into(), local);
        }
        let address = self
            .vars
            .get("worker_address")
            .and_then(Value::as_str)
            .ok_or("worker_address is not known (no register-worker yet)")?
            .to_owned();
        let over_tls = address.starts_with("tls://");
        if over_tls != self.tls.is_some() {
            return Err(format!(
                "the worker's data address is {address}, but the run is {}",
                if self.tls.is_some() {
                    "over TLS (--tls): a tls:// address was expected"
                } else {
                    "without TLS: a tcp:// address was expected"
                }
            ));
        }
        let hostport = address
            .strip_prefix("tcp://")
            .or_else(|| address.strip_prefix("tls://"))
            .unwrap_or(&address)
            .trim_end_matches('/');
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| format!("worker_address {address:?} does not resolve: {e}"))?
            .next()
            .ok_or_else(|| format!("worker_address {address:?} resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&addr, self.ms(5000))
            .map_err(|e| format!("cannot connect to the worker's data address {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (stream, binding) = match &self.tls {
            None => (stream, None),
            Some(tls) => {
                let t = tls.connect(stream).map_err(|e| {
                    format!("TLS handshake with the worker's data address {address} failed: {e}")
                })?;
                (t.stream, Some(t.channel_binding))
            }
        };
        self.data_binding = binding;
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        self.inbox.insert(Conn::Data, Inbox::default());
        self.data_index += 1;
        self.data_hello = None;
        self.data_local = false;
        transport::spawn_reader(reader, Conn::Data, self.data_index, self.tx.clone());
        self.data = Some(stream);
        self.note(format!(
            "runner connected to the worker's data address {address}"
        ));
        if handshake && self.auth.is_some() {
            self.greet_data_with_auth(offer)?;
            self.data_hello_came(&step.features, step.local)?;
        } else if handshake {
            let mut hello = obj(
                json!({"op": "hello", "protocol": "dask", "version": [1, 0], "role": "peer", "name": "dask-conformance", "features": []}),
            );
            if step.local.is_some() {
                // `local` is a dask/1.1 field.
                hello.insert("version".into(), json!([1, 1]));
            }
            hello.extend(offer);
            self.send(Conn::Data, &[hello])?;
            let reply = obj(
                json!({"op": "hello", "protocol": "dask", "version": [1, {"$any": "uint"}], "role": "worker"}),
            );
            self.expect(Conn::Data, &[reply], case::EXPECT_WITHIN_MS_DEFAULT, false)?;
            self.data_hello_came(&step.features, step.local)?;
        }
        Ok(())
    }
}
