//! What only client cases do: greet the client as its scheduler, and
//! talk to its test harness (`drive` commands, `expect_output` lines).

use super::*;

impl Session<'_> {
    /// The client case's auto handshake: the client's `hello` (its minor
    /// captured as `client_minor`), then the runner's reply speaking the
    /// lower of the two minors.
    pub(super) fn greet_client(&mut self) -> Result<(), String> {
        let minor = self.expect_client_hello()?;
        let reply = obj(
            json!({"op": "hello", "protocol": "dask", "version": [1, minor], "role": "scheduler", "id": 1, "features": []}),
        );
        self.send(Conn::Scheduler, &[reply])
    }

    /// Expects the client's `hello` (its minor captured as
    /// `client_minor`); the minor the runner's reply speaks, the lower of
    /// the client's and the case's.
    pub(super) fn expect_client_hello(&mut self) -> Result<u64, String> {
        let hello = obj(
            json!({"op": "hello", "protocol": "dask", "version": [1, {"$capture": "client_minor"}], "role": "client"}),
        );
        self.expect(Conn::Scheduler, &[hello], STARTUP_MS, false)?;
        let theirs = self
            .vars
            .get("client_minor")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(theirs.min(u64::from(self.case.client.scheduler_minor)))
    }

    /// A `drive` command as the line the harness reads: variables filled
    /// in, `args` sent as `args_hex`, the msgpack encoding in hex.
    pub(super) fn command_line(&self, command: &Map<String, Json>) -> Result<String, String> {
        let mut rest = command.clone();
        let args = rest.remove("args");
        let bytes = value::encode(&Json::Object(rest), &self.vars)?;
        let mut line = dask_core::json::msgpack_to_json(&bytes).map_err(|e| e.to_string())?;
        if let (Some(args), Some(obj)) = (args, line.as_object_mut()) {
            let bytes = value::encode(&args, &self.vars)?;
            obj.insert(
                "args_hex".into(),
                Json::String(dask_core::json::to_hex(&bytes)),
            );
        }
        Ok(line.to_string())
    }

    pub(super) fn expect_output(
        &mut self,
        pattern: &Map<String, Json>,
        within_ms: u64,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.ms(within_ms);
        loop {
            let vars = self.vars.clone();
            let hit = self.output.iter_mut().find_map(|line| {
                if line.consumed {
                    return None;
                }
                let caps = match_message(pattern, &line.value, &vars).ok()?;
                line.consumed = true;
                Some(caps)
            });
            if let Some(caps) = hit {
                self.vars.extend(caps);
                return Ok(());
            }
            if self.exited_long_ago() {
                return Err(format!(
                    "the client's harness exited before printing {}",
                    Json::Object(pattern.clone())
                ));
            }
            if Instant::now() >= deadline {
                let printed: Vec<String> = self
                    .output
                    .iter()
                    .filter(|l| !l.consumed)
                    .map(|l| render(&l.value))
                    .collect();
                return Err(format!(
                    "the client's harness printed no line matching {} within {} ms{}",
                    Json::Object(pattern.clone()),
                    self.ms(within_ms).as_millis(),
                    if printed.is_empty() {
                        String::new()
                    } else {
                        format!("; it printed {}", printed.join(", "))
                    }
                ));
            }
            self.pump(deadline)?;
        }
    }
}
