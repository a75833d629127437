//! The handshakes of a run with `--auth` (PROTOCOL.md#authentication):
//! the runner, as the worker's scheduler, requires the worker's proof and
//! proves the same secret; as a peer on the worker's data address, it
//! offers its own proof and checks the worker's.

use dask_core::auth::METHOD;
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

    fn nonce_var(&self, name: &str) -> Result<[u8; 32], String> {
        let b = self.bin_var(name)?;
        <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| format!("{name} has {} bytes, a nonce has 32", b.len()))
    }

    /// The auto handshake when the worker holds the run's secret: its
    /// `hello` offers auth, the reply proves the secret, its `auth-proof`
    /// must prove it too; then registration as without auth.
    pub(super) fn greet_worker_with_auth(&mut self) -> Result<(), String> {
        let auth = self.auth.clone().ok_or("the run has no credentials")?;
        let hello = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, {"$capture": "worker_minor"}],
            "role": "worker", "auth": {"method": METHOD, "nonce": {"$capture": "worker_nonce"}}
        }));
        self.expect(Conn::Scheduler, &[hello], STARTUP_MS, false)
            .map_err(|e| {
                format!(
                    "{e} (the worker was given the run's credentials: its hello must offer auth)"
                )
            })?;
        let connector = self.nonce_var("worker_nonce")?;
        let (reply_auth, acceptor) = auth
            .challenge(Role::Worker, &connector)
            .map_err(|e| format!("no random nonce: {e}"))?;
        let reply = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, 1], "role": "scheduler",
            "id": 1, "features": [], "auth": reply_auth
        }));
        self.send(Conn::Scheduler, &[reply])?;
        let proof = obj(json!({"op": "auth-proof", "proof": {"$capture": "worker_proof"}}));
        self.expect(
            Conn::Scheduler,
            &[proof],
            case::EXPECT_WITHIN_MS_DEFAULT,
            false,
        )?;
        let proof = self.bin_var("worker_proof")?;
        if !auth.connector_proved(Role::Worker, &connector, &acceptor, &proof) {
            return Err(
                "the worker's auth-proof does not prove the worker secret the runner gave it"
                    .into(),
            );
        }
        self.note("the worker proved the worker secret".into());
        for step in auto_handshake(self.case.worker.heartbeat_interval_ms)
            .into_iter()
            .skip(2)
        {
            self.run_step(&step)?;
        }
        Ok(())
    }

    /// The runner's peer handshake on the worker's data address with the
    /// run's secret: offer auth, check the worker's proof, prove ours.
    pub(super) fn greet_data_with_auth(&mut self) -> Result<(), String> {
        let auth = self.auth.clone().ok_or("the run has no credentials")?;
        let (offer, connector) =
            crate::auth::RunnerAuth::offer().map_err(|e| format!("no random nonce: {e}"))?;
        let hello = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, 1], "role": "peer",
            "name": "dask-conformance", "features": [], "auth": offer
        }));
        self.send(Conn::Data, &[hello])?;
        let reply = obj(json!({
            "op": "hello", "protocol": "dask", "version": [1, 1], "role": "worker",
            "auth": {"method": METHOD, "nonce": {"$capture": "data_nonce"}, "proof": {"$capture": "data_proof"}}
        }));
        self.expect(Conn::Data, &[reply], case::EXPECT_WITHIN_MS_DEFAULT, false)?;
        let (acceptor, proof) = (self.bin_var("data_nonce")?, self.bin_var("data_proof")?);
        let answer = auth.answer(Role::Peer, &connector, &acceptor, &proof)?;
        self.send(Conn::Data, &[obj(answer)])
    }
}
