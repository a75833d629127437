//! The expectation steps of a session: `expect`, `expect_none`,
//! `expect_every`, `expect_close`, `expect_exit`, and what a time-out says.

use std::time::Instant;

use serde_json::{Map, Value as Json};

use super::*;

impl Session<'_> {
    pub(super) fn inbox(&mut self, on: Conn) -> &mut Inbox {
        self.inbox.entry(on).or_default()
    }

    pub(super) fn expect(
        &mut self,
        on: Conn,
        patterns: &[Map<String, Json>],
        within_ms: u64,
        ordered: bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.ms(within_ms);
        let who = self.who();
        let mut matched: Vec<Option<usize>> = vec![None; patterns.len()];
        loop {
            for (i, p) in patterns.iter().enumerate() {
                if matched[i].is_some() {
                    continue;
                }
                let vars = self.vars.clone();
                let want = pattern_answers(p);
                let mut hit = None;
                for (j, r) in self.inbox(on).messages.iter().enumerate() {
                    if r.consumed {
                        continue;
                    }
                    match match_message(p, &r.value, &vars) {
                        Ok(caps) => {
                            hit = Some((j, caps));
                            break;
                        }
                        Err(diff) => {
                            if want.is_some() && answers(&r.value) == want {
                                return Err(format!(
                                    "the {who} answered differently: {diff}\n  expected: {}\n  received: {}",
                                    Json::Object(p.clone()),
                                    render(&r.value)
                                ));
                            }
                        }
                    }
                }
                if let Some((j, caps)) = hit {
                    self.inbox(on).messages[j].consumed = true;
                    matched[i] = Some(j);
                    self.vars.extend(caps);
                }
            }
            if matched.iter().all(Option::is_some) {
                if ordered && matched.windows(2).any(|w| w[0] > w[1]) {
                    return Err("the messages arrived in another order than listed".into());
                }
                return Ok(());
            }
            let missing: Vec<&Map<String, Json>> = patterns
                .iter()
                .zip(&matched)
                .filter(|(_, m)| m.is_none())
                .map(|(p, _)| p)
                .collect();
            if let Some(why) = self.inbox(on).closed.clone() {
                return Err(format!(
                    "the {} connection closed ({why}) before {} arrived",
                    on.as_str(),
                    shown_patterns(&missing)
                ));
            }
            if self.exited_long_ago() {
                return Err(format!(
                    "the {} exited before {} arrived",
                    self.who(),
                    shown_patterns(&missing)
                ));
            }
            if Instant::now() >= deadline {
                return Err(self.timeout_reason(on, &missing, within_ms));
            }
            self.pump(deadline)?;
        }
    }

    pub(super) fn timeout_reason(
        &mut self,
        on: Conn,
        missing: &[&Map<String, Json>],
        within_ms: u64,
    ) -> String {
        let mut reason = format!(
            "no message matching {} on the {} connection within {} ms",
            shown_patterns(missing),
            on.as_str(),
            self.ms(within_ms).as_millis()
        );
        let vars = self.vars.clone();
        for p in missing {
            let op = p.get("op").and_then(Json::as_str).unwrap_or("");
            for r in self.inbox(on).messages.iter().filter(|r| !r.consumed) {
                if value::op_of(&r.value) == Some(op) {
                    if let Err(diff) = match_message(p, &r.value, &vars) {
                        reason.push_str(&format!("\n  closest: {} ({diff})", render(&r.value)));
                    }
                }
            }
        }
        reason
    }

    pub(super) fn expect_none(
        &mut self,
        on: Conn,
        p: &Map<String, Json>,
        for_ms: u64,
    ) -> Result<(), String> {
        let until = Instant::now() + self.ms(for_ms);
        loop {
            let vars = self.vars.clone();
            if let Some(r) = self
                .inbox(on)
                .messages
                .iter()
                .find(|r| !r.consumed && match_message(p, &r.value, &vars).is_ok())
            {
                return Err(format!(
                    "received {} on the {} connection, which must not come",
                    render(&r.value),
                    on.as_str()
                ));
            }
            if Instant::now() >= until {
                return Ok(());
            }
            self.pump(until)?;
        }
    }

    pub(super) fn expect_every(
        &mut self,
        on: Conn,
        p: &Map<String, Json>,
        interval_ms: u64,
        count: u32,
    ) -> Result<(), String> {
        let vars = self.vars.clone();
        // Matching messages that came before this step do not count.
        for r in self.inbox(on).messages.iter_mut() {
            if !r.consumed && match_message(p, &r.value, &vars).is_ok() {
                r.consumed = true;
            }
        }
        let interval = self.ms(interval_ms);
        let mut last = Instant::now();
        let mut seen = 0;
        loop {
            let mut gap_error = None;
            for r in self.inbox(on).messages.iter_mut() {
                if r.consumed || match_message(p, &r.value, &vars).is_err() {
                    continue;
                }
                r.consumed = true;
                let gap = r.at.saturating_duration_since(last);
                if gap > interval && gap_error.is_none() {
                    gap_error = Some(gap);
                }
                last = r.at;
                seen += 1;
            }
            if let Some(gap) = gap_error {
                return Err(format!(
                    "a gap of {} ms between matching messages, more than {} ms",
                    gap.as_millis(),
                    interval.as_millis()
                ));
            }
            if seen >= count {
                return Ok(());
            }
            let deadline = last + interval;
            if Instant::now() >= deadline {
                return Err(format!(
                    "{seen} of {count} messages matching {} came; none within {} ms of the last (or of the step's start)",
                    Json::Object(p.clone()),
                    interval.as_millis()
                ));
            }
            if let Some(why) = self.inbox(on).closed.clone() {
                return Err(format!("the {} connection closed ({why})", on.as_str()));
            }
            self.pump(deadline)?;
        }
    }

    pub(super) fn expect_close(&mut self, on: Conn, within_ms: u64) -> Result<(), String> {
        let until = Instant::now() + self.ms(within_ms);
        loop {
            if self.inbox(on).closed.is_some() {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!(
                    "the {} did not close the {} connection within {} ms",
                    self.who(),
                    on.as_str(),
                    self.ms(within_ms).as_millis()
                ));
            }
            self.pump(until)?;
        }
    }

    pub(super) fn expect_exit(
        &mut self,
        e: &ExitExpectation,
        within_ms: u64,
    ) -> Result<(), String> {
        let until = Instant::now() + self.ms(within_ms);
        loop {
            if let Some(status) = self.worker.exit_status() {
                return match e {
                    ExitExpectation::Code { code } if status.code() != Some(*code) => Err(format!(
                        "the worker exited with {status}, not with code {code}"
                    )),
                    _ => Ok(()),
                };
            }
            if Instant::now() >= until {
                return Err(format!(
                    "the worker's process did not exit within {} ms",
                    self.ms(within_ms).as_millis()
                ));
            }
            self.pump(until)?;
        }
    }
}

fn shown_patterns(ps: &[&Map<String, Json>]) -> String {
    ps.iter()
        .map(|p| Json::Object((*p).clone()).to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}
