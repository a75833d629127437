//! The runner's side of dask/1.1 authentication (PROTOCOL.md#authentication),
//! for `--auth`: the runner makes a worker secret, gives it to the worker
//! under test (a dask-rs credentials file, `{credentials}` and
//! `DASK_CREDENTIALS`; the bare secret in hex, `{worker_secret}` and
//! `DASK_WORKER_SECRET`, for workers that read secrets another way), and
//! then requires the worker's proof, and proves it, on every connection:
//! as its scheduler, as the peer the worker fetches from, and on the
//! connections the runner opens to the worker's data address.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dask_core::auth::{Secret, Side, Transcript, METHOD, NONCE_BYTES, PROOF_BYTES};
use dask_core::messages::Role;
use serde_json::{json, Value as Json};

use crate::tls::ChannelBinding;

/// The secrets of one run (the worker's, and for client cases the
/// client's), and the files that hand them over.
#[derive(Debug)]
pub struct RunnerAuth {
    secret: Secret,
    client: Secret,
    dir: PathBuf,
    /// The credentials file (dask-rs format, owner-only).
    pub file: PathBuf,
}

/// 32 random bytes from the kernel (secrets and nonces).
pub fn random32() -> io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `bin` in the JSON form.
fn bin(bytes: &[u8]) -> Json {
    json!({"$bin": hex(bytes)})
}

impl RunnerAuth {
    /// A fresh secret, written to an owner-only file in an owner-only
    /// directory of its own (removed when this is dropped).
    pub fn create() -> io::Result<RunnerAuth> {
        let secret = Secret::from_bytes(random32()?);
        let client = Secret::from_bytes(random32()?);
        let dir = std::env::temp_dir().join(format!(
            "dask-conformance-{}-{}",
            std::process::id(),
            hex(&random32()?[..4])
        ));
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        let file = dir.join("credentials.json");
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let text = format!(
            "{{\n  \"dask_rs_credentials\": 1,\n  \"client_secret\": \"{}\",\n  \"worker_secret\": \"{}\"\n}}\n",
            client.to_hex(),
            secret.to_hex()
        );
        options.open(&file)?.write_all(text.as_bytes())?;
        Ok(RunnerAuth {
            secret,
            client,
            dir,
            file,
        })
    }

    /// The secret a connection of `role` proves: a client's the client
    /// secret, every other the worker secret.
    fn secret_of(&self, role: Role) -> &Secret {
        match role {
            Role::Client => &self.client,
            _ => &self.secret,
        }
    }

    /// The worker secret in hex (`{worker_secret}`).
    pub fn worker_secret_hex(&self) -> String {
        self.secret.to_hex()
    }

    /// The directory holding the credentials file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What a proof covers; `binding` is the connection's TLS channel
    /// binding (`None` on plain TCP).
    fn transcript<'t>(
        role: Role,
        connector: &'t [u8; NONCE_BYTES],
        acceptor: &'t [u8; NONCE_BYTES],
        binding: Option<&'t ChannelBinding>,
    ) -> Transcript<'t> {
        Transcript {
            role,
            connector_nonce: connector,
            acceptor_nonce: acceptor,
            channel_binding: binding.map_or(&[], |b| &b[..]),
        }
    }

    /// As the acceptor of a connection of `role` whose hello offered
    /// `connector_nonce`: the `auth` of the reply (JSON form) and the
    /// acceptor's nonce, which checking the connector's proof needs.
    pub fn challenge(
        &self,
        role: Role,
        connector_nonce: &[u8; NONCE_BYTES],
        binding: Option<&ChannelBinding>,
    ) -> io::Result<(Json, [u8; NONCE_BYTES])> {
        let nonce = random32()?;
        let proof = Self::transcript(role, connector_nonce, &nonce, binding)
            .proof(self.secret_of(role), Side::Acceptor);
        let auth = json!({"method": METHOD, "nonce": bin(&nonce), "proof": bin(&proof)});
        Ok((auth, nonce))
    }

    /// Whether `proof` is `side`'s proof for these nonces: the
    /// connector's is what an acceptor requires; the acceptor's, sent
    /// back by a connector, is a reflected answer.
    pub fn proves(
        &self,
        side: Side,
        role: Role,
        (connector, acceptor): (&[u8; NONCE_BYTES], &[u8; NONCE_BYTES]),
        binding: Option<&ChannelBinding>,
        proof: &[u8],
    ) -> bool {
        Self::transcript(role, connector, acceptor, binding).verify(
            self.secret_of(role),
            side,
            proof,
        )
    }

    /// As a connector of `role`: the `auth` of its hello and its nonce.
    pub fn offer() -> io::Result<(Json, [u8; NONCE_BYTES])> {
        let nonce = random32()?;
        Ok((json!({"method": METHOD, "nonce": bin(&nonce)}), nonce))
    }

    /// As a connector: checks the acceptor's proof and gives the
    /// `auth-proof` message to send (JSON form), or says what is wrong.
    pub fn answer(
        &self,
        role: Role,
        connector: &[u8; NONCE_BYTES],
        acceptor: &[u8],
        binding: Option<&ChannelBinding>,
        proof: &[u8],
    ) -> Result<Json, String> {
        let (Ok(acceptor), PROOF_BYTES) = (<&[u8; NONCE_BYTES]>::try_from(acceptor), proof.len())
        else {
            return Err(format!(
                "the worker's auth has a nonce of {} bytes and a proof of {} (32 each expected)",
                acceptor.len(),
                proof.len()
            ));
        };
        let t = Self::transcript(role, connector, acceptor, binding);
        if !t.verify(&self.secret, Side::Acceptor, proof) {
            return Err(
                "the worker's proof does not match the worker secret the runner gave it".into(),
            );
        }
        Ok(json!({"op": "auth-proof", "proof": bin(&t.proof(&self.secret, Side::Connector))}))
    }
}

impl Drop for RunnerAuth {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_proofs_check_against_the_same_secret_and_no_other() {
        let runner = RunnerAuth::create().unwrap();
        let text = fs::read_to_string(&runner.file).unwrap();
        assert!(text.contains(&runner.worker_secret_hex()), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&runner.file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only");
        }
        let cn = random32().unwrap();
        let (auth, an) = runner.challenge(Role::Worker, &cn, None).unwrap();
        assert_eq!(auth["method"], METHOD);
        let pc = RunnerAuth::transcript(Role::Worker, &cn, &an, None)
            .proof(&runner.secret, Side::Connector);
        assert!(runner.proves(Side::Connector, Role::Worker, (&cn, &an), None, &pc));
        assert!(
            !runner.proves(Side::Connector, Role::Peer, (&cn, &an), None, &pc),
            "the role is covered"
        );
        assert!(
            !runner.proves(
                Side::Connector,
                Role::Worker,
                (&cn, &an),
                Some(&[7; 32]),
                &pc
            ),
            "the channel binding is covered"
        );
        let other = RunnerAuth::create().unwrap();
        assert!(!other.proves(Side::Connector, Role::Worker, (&cn, &an), None, &pc));
        // As a connector: the acceptor's proof is checked, then answered.
        let pa = RunnerAuth::transcript(Role::Peer, &cn, &an, None)
            .proof(&runner.secret, Side::Acceptor);
        assert!(runner.answer(Role::Peer, &cn, &an, None, &pa).is_ok());
        assert!(other.answer(Role::Peer, &cn, &an, None, &pa).is_err());
        let dir = runner.dir().to_owned();
        drop(runner);
        assert!(!dir.exists(), "the secret's directory is removed");
    }
}
