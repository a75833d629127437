//! The steps of the same-host cases (dask/1.1 `value-local`): `requires`
//! (a case about an optional feature stops as skipped when the worker does
//! not list it), `read_local` (the runner, lent a value on its data
//! connection, copies it from the worker's memory) and `peer_lends` (the
//! runner's peer lends its values by address).

use crate::case::{LendMode, LocalAs};
use crate::local::{self, LocalHost, VALUE_LOCAL};
use crate::value::map_get as map_field;

use super::*;

impl Session<'_> {
    /// The `requires` step: the worker listed `feature` in its hello on
    /// `on`, or the case is marked skipped (the caller stops).
    pub(super) fn requires(
        &mut self,
        feature: &str,
        on: Conn,
        within_ms: u64,
    ) -> Result<(), String> {
        let listed = match on {
            Conn::Data => self
                .data_hello
                .as_ref()
                .ok_or("no hello from the worker on a data connection (connect first)")?
                .clone(),
            Conn::Peer => {
                let until = Instant::now() + self.ms(within_ms);
                loop {
                    if let Some(hello) = self.peer_hellos.values().next() {
                        break hello.clone();
                    }
                    if Instant::now() >= until || self.exited_long_ago() {
                        return Err(format!(
                            "the worker opened no connection to the runner's peer within {within_ms} ms"
                        ));
                    }
                    self.pump(until)?;
                }
            }
            Conn::Scheduler => return Err("requires looks at data or peer".into()),
        };
        if !local::lists(&listed, feature) {
            let why = format!(
                "not applicable: the worker does not list `{feature}` (an optional feature) in its hello on the {} connection",
                on.as_str()
            );
            self.note(why.clone());
            self.skip = Some(why);
        }
        Ok(())
    }

    /// The `read_local` step: copies the value `key` the worker lent in its
    /// latest `data-local` on the data connection, checks it is one
    /// well-formed value matching `pattern`, and binds `lease`.
    pub(super) fn read_local(&mut self, key: &str, pattern: &Json) -> Result<(), String> {
        let lent = self
            .inbox(Conn::Data)
            .messages
            .iter()
            .rev()
            .filter(|m| value::op_of(&m.value) == Some("data-local"))
            .find_map(|m| {
                let values = map_field(&m.value, "values")?;
                map_field(values, key).cloned()
            })
            .ok_or_else(|| format!("the worker lent no value {key:?} in a data-local on data"))?;
        let uint = |name| map_field(&lent, name).and_then(Value::as_u64);
        let (Some(at), Some(nbytes), Some(lease)) = (uint("at"), uint("nbytes"), uint("lease"))
        else {
            return Err(format!(
                "a data-local entry without at, nbytes and lease: {}",
                render(&lent)
            ));
        };
        let from = self
            .data_hello
            .as_ref()
            .and_then(LocalHost::of_hello)
            .ok_or("the worker's hello on data carries no `local`: nothing says where to read")?;
        let bytes = local::read_lent(&from, at, nbytes).map_err(|e| {
            format!("the value {key:?} lent at {at:#x} ({nbytes} bytes) cannot be read: {e}")
        })?;
        let mut rest = &bytes[..];
        let read = rmpv::decode::read_value_with_max_depth(&mut rest, 100)
            .map_err(|e| format!("the {nbytes} bytes lent as {key:?} are not a value: {e}"))?;
        if !rest.is_empty() {
            return Err(format!(
                "the {nbytes} bytes lent as {key:?} hold one value and {} bytes more",
                rest.len()
            ));
        }
        self.note(format!(
            "runner read {key:?} from the worker's memory: {nbytes} bytes at {at:#x}, lease {lease}"
        ));
        let wrapped = Value::Map(vec![(Value::from("value"), read)]);
        let mut p = Map::new();
        p.insert("value".into(), pattern.clone());
        match_message(&p, &wrapped, &self.vars)
            .map_err(|e| format!("the value read does not match: {e}"))?;
        self.vars.insert("lease".into(), Value::from(lease));
        Ok(())
    }

    /// The `peer_lends` step.
    pub(super) fn peer_lends(&mut self, mode: LendMode) {
        if mode != LendMode::Unnegotiated {
            local::allow_readers();
        }
        self.note(format!("peer lends its values by address ({mode:?})"));
        self.lend = Some(mode);
        self.peer.lend(mode);
    }

    /// The `local` of the runner's hello on a data connection, as `local`
    /// says (`None`: none).
    pub(super) fn runner_local(&self, local: Option<LocalAs>) -> Result<Option<Json>, String> {
        match local {
            None => Ok(None),
            Some(LocalAs::OtherHost) => Ok(Some(local::runner_local(&local::other_host(), true))),
            Some(LocalAs::SameHost) => {
                let host = self.worker_host.as_ref().ok_or(
                    "the worker's host tag is not known yet: connect as other-host first (the reply's `local` gives it)",
                )?;
                Ok(Some(local::runner_local(host, true)))
            }
        }
    }

    /// The worker's reply `hello` on the data connection came: it must list
    /// only features the runner listed; it is kept for `requires` and
    /// `read_local`, and its host tag for a same-host `connect`.
    pub(super) fn data_hello_came(
        &mut self,
        listed: &[String],
        local: Option<LocalAs>,
    ) -> Result<(), String> {
        let reply = self
            .inbox(Conn::Data)
            .messages
            .iter()
            .find(|m| value::op_of(&m.value) == Some("hello"))
            .map(|m| m.value.clone())
            .ok_or("no hello from the worker on data")?;
        let features = value::strings(&reply, "features");
        if let Some(extra) = features.iter().find(|f| !listed.contains(f)) {
            return Err(format!(
                "the worker's hello lists the feature {extra:?}, which the runner's did not: a reply lists only the features both list (PROTOCOL.md#handshake)"
            ));
        }
        if let Some(host) = LocalHost::of_hello(&reply) {
            self.worker_host = Some(host.host);
        }
        self.data_local = local == Some(LocalAs::SameHost) && local::lists(&reply, VALUE_LOCAL);
        self.data_hello = Some(reply);
        Ok(())
    }

    /// The worker's first message on peer connection `index` (its hello)
    /// came: with the peer lending, the feature is negotiated on it when
    /// the hello lists it (as the peer itself decides), and its host tag is
    /// the worker's.
    pub(super) fn peer_hello_came(&mut self, index: u32, hello: &Value) {
        if let Some(host) = LocalHost::of_hello(hello) {
            self.worker_host = Some(host.host);
        }
        let lending = matches!(
            self.lend,
            Some(LendMode::Memory | LendMode::BadProbe | LendMode::Huge)
        );
        if lending && local::lists(hello, VALUE_LOCAL) && LocalHost::of_hello(hello).is_some() {
            self.peer_local.insert(index);
        }
        self.peer_hellos.insert(index, hello.clone());
    }
}
