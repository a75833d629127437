//! The handshakes of a run with `--auth` (PROTOCOL.md#authentication):
//! the runner, as the worker's scheduler, requires the worker's proof and
//! proves the same secret; as a peer on the worker's data address, it
//! offers its own proof and checks the worker's. Over `--tls` the proofs
//! cover each connection's channel binding.
//!
//! A worker that does not prove the secret (its hello offers no auth, it
//! skips the `auth-proof`, or the proof is wrong: another secret, a
//! replayed or reflected answer) is refused as a scheduler refuses it,
//! with `error{code: 3003}` and a close, and the case fails saying which.

use dask_core::auth::{Side, AUTH_FAILED, METHOD};
use dask_core::messages::Role;

use super::*;

impl Session<'_> {
    fn bin_var(&self, name: &str) -> Result<Vec<u8>, String> {
        match self.vars.get(name) {
            Some(Value::Binary(b)) => Ok(b.clone()),
            Some(other) => Err(format!("{name} is {}, not a bin", render(other))),
            None => Err(format!("{name} was not captured")),
        }
    }

    /// Refuses the worker's scheduler connection as a scheduler does
    /// (3003, then close) and says why.
    fn refuse_worker(&mut self, why: String) -> String {
        let error = obj(json!({
            "op": "error", "code": 3003, "message": AUTH_FAILED, "fatal": true
        }));
        let _ = self.send(Conn::Scheduler, &[error]);
        if let Some(s) = self.scheduler.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        format!("{why}; the runner refused it with error 3003 and closed the connection")
    }

    /// The worker's next message on the scheduler connection, whatever
    /// it is, within the default window.
    fn next_from_worker(&mut self) -> Result<Value, String> {
        let until = Instant::now() + self.ms(case::EXPECT_WITHIN_MS_DEFAULT);
        loop {
            let inbox = self.inbox(Conn::Scheduler);
            if let Some(r) = inbox.messages.iter_mut().find(|r| !r.consumed) {
                r.consumed = true;
                return Ok(r.value.clone());
            }
            if let Some(why) = inbox.closed.clone() {
                return Err(format!("the scheduler connection closed ({why})"));
            }
            if Instant::now() >= until {
                return Err(format!(
                    "nothing within {} ms",
                    case::EXPECT_WITHIN_MS_DEFAULT
                ));
            }
            self.pump(until)?;
        }
    }

    /// The auto handshake when the worker holds the run's secret: its
    /// `hello` offers auth, the reply proves the secret, its next message
    /// must be an `auth-proof` proving it too; then registration as
    /// without auth.
    pub(super) fn greet_worker_with_auth(&mut self) -> Result<(), String> {
        let hello = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, {"$capture": "worker_minor"}],
            "role": "worker"
        }));
        self.expect(Conn::Scheduler, &[hello], STARTUP_MS, false)?;
        self.require_proof(Role::Worker, 1)?;
        for step in auto_handshake(self.case.worker.heartbeat_interval_ms)
            .into_iter()
            .skip(2)
        {
            self.run_step(&step)?;
        }
        Ok(())
    }

    /// The client case's auto handshake when the client holds the run's
    /// client secret: as [`Session::greet_client`], its `hello` proving
    /// the secret as a worker's does.
    pub(super) fn greet_client_with_auth(&mut self) -> Result<(), String> {
        let minor = self.expect_client_hello()?;
        self.require_proof(Role::Client, minor)
    }

    /// After the `hello` of a connector of `role` (a worker, or a client)
    /// on the scheduler connection: it must offer auth; the reply
    /// (speaking dask/1.`minor`) proves the run's secret of `role`, and
    /// the connector's next message must be an `auth-proof` proving it
    /// too. Anything else is refused with 3003, saying which.
    fn require_proof(&mut self, role: Role, minor: u64) -> Result<(), String> {
        let auth = self.auth.clone().ok_or("the run has no credentials")?;
        let who = self.who();
        let Some(offered) = self.last_hello_auth() else {
            let why = format!(
                "the {who}'s hello offers no auth, though it was given the run's credentials \
                 (where dask-rs programs find them: DASK_RS_HOME)"
            );
            return Err(self.refuse_worker(why));
        };
        let connector = match offered {
            Value::Binary(b) if b.len() == 32 => {
                let mut n = [0u8; 32];
                n.copy_from_slice(&b);
                n
            }
            other => {
                let why = format!(
                    "the {who}'s hello has auth with nonce {}, not 32 bytes",
                    render(&other)
                );
                return Err(self.refuse_worker(why));
            }
        };
        let binding = self.scheduler_binding;
        let (reply_auth, acceptor) = auth
            .challenge(role, &connector, binding.as_ref())
            .map_err(|e| format!("no random nonce: {e}"))?;
        let reply = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, minor], "role": "scheduler",
            "id": 1, "features": [], "auth": reply_auth, "tls": binding.is_some()
        }));
        self.send(Conn::Scheduler, &[reply])?;
        let next = match self.next_from_worker() {
            Ok(v) => v,
            Err(e) => {
                let why = format!("the {who} sent no auth-proof after the runner's hello: {e}");
                return Err(self.refuse_worker(why));
            }
        };
        let op = value::op_of(&next).unwrap_or("").to_owned();
        if op == "error" {
            let why = format!(
                "the {who} refused the runner's proof of the {} secret ({}): it holds another \
                 secret",
                role.as_str(),
                render(&next)
            );
            return Err(self.refuse_worker(why));
        }
        if op != "auth-proof" {
            let why =
                format!("the {who} skipped its auth-proof: it sent `{op}` where the proof was due");
            return Err(self.refuse_worker(why));
        }
        let proof = next
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("proof")))
            .and_then(|(_, v)| v.as_slice())
            .unwrap_or(&[])
            .to_vec();
        let nonces = (&connector, &acceptor);
        let binding = binding.as_ref();
        if !auth.proves(Side::Connector, role, nonces, binding, &proof) {
            let why = if auth.proves(Side::Acceptor, role, nonces, binding, &proof) {
                format!(
                    "the {who}'s auth-proof is the runner's own proof sent back (a reflected \
                     answer), not the {who}'s"
                )
            } else {
                format!(
                    "the {who}'s auth-proof does not prove the {} secret the runner gave it for \
                     this handshake (another secret, or an answer replayed from another one)",
                    role.as_str()
                )
            };
            return Err(self.refuse_worker(why));
        }
        self.note(format!("the {who} proved the {} secret", role.as_str()));
        Ok(())
    }

    /// The `auth.nonce` of the worker's hello just matched, if any.
    fn last_hello_auth(&mut self) -> Option<Value> {
        let hello = self
            .inbox(Conn::Scheduler)
            .messages
            .iter()
            .rev()
            .find(|r| r.consumed && value::op_of(&r.value) == Some("hello"))?;
        let auth = hello
            .value
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some("auth"))
            .map(|(_, v)| v)?;
        auth.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some("nonce"))
            .map(|(_, v)| v.clone())
    }

    /// The runner's peer handshake on the worker's data address with the
    /// run's secret: offer auth, check the worker's proof, prove ours.
    /// The runner's nonce and proof are kept as `runner_nonce` and
    /// `runner_proof` (a case replays them on another connection).
    pub(super) fn greet_data_with_auth(&mut self, offer: Map<String, Json>) -> Result<(), String> {
        let auth = self.auth.clone().ok_or("the run has no credentials")?;
        let binding = self.data_binding;
        let extra = offer;
        let (offer, connector) =
            crate::auth::RunnerAuth::offer().map_err(|e| format!("no random nonce: {e}"))?;
        let mut hello = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, 1], "role": "peer",
            "name": "dask-conformance", "features": [], "auth": offer, "tls": binding.is_some()
        }));
        hello.extend(extra);
        self.send(Conn::Data, &[hello])?;
        let reply = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, 1], "role": "worker",
            "auth": {"method": METHOD, "nonce": {"$capture": "data_nonce"}, "proof": {"$capture": "data_proof"}}
        }));
        self.expect(Conn::Data, &[reply], case::EXPECT_WITHIN_MS_DEFAULT, false)?;
        let (acceptor, proof) = (self.bin_var("data_nonce")?, self.bin_var("data_proof")?);
        let answer = auth.answer(Role::Peer, &connector, &acceptor, binding.as_ref(), &proof)?;
        self.vars
            .insert("runner_nonce".into(), Value::Binary(connector.to_vec()));
        if let Some(Json::Object(p)) = answer.get("proof") {
            if let Some(Json::String(hex)) = p.get("$bin") {
                let bytes = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                self.vars
                    .insert("runner_proof".into(), Value::Binary(bytes));
            }
        }
        self.send(Conn::Data, &[obj(answer)])
    }
}
