//! A well-behaved client beside hostile input: it computes graphs in a loop
//! until told to stop, each round 20 `inc` tasks and a `sum` of them,
//! checked. Used by the scheduler's and the worker's hostile-input tests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dask_client::{delayed, Arg, Client};

/// Generous: a round must not fail on a slow machine.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's thread, its stop flag and its count of good rounds.
pub struct GoodClient {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU32>,
    thread: JoinHandle<Result<(), String>>,
}

impl GoodClient {
    /// Connects to the scheduler at `address` and starts computing.
    pub fn start(address: &str) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU32::new(0));
        let client = Client::connect_timeout(address, ROUND_TIMEOUT).expect("good client connects");
        let thread = {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            std::thread::spawn(move || {
                let mut round: i64 = 0;
                // At least two rounds, so one overlaps whatever runs now.
                while round < 2 || !stop.load(Ordering::SeqCst) {
                    let incs: Vec<Arg> = (0..20)
                        .map(|i| Arg::from(delayed("inc", vec![Arg::from(round * 100 + i)])))
                        .collect();
                    let total = client.compute(&delayed("sum", vec![Arg::List(incs)]));
                    let got = total
                        .result_timeout(ROUND_TIMEOUT)
                        .map_err(|e| format!("round {round}: {e}"))?;
                    let want: i64 = (0..20).map(|i| round * 100 + i + 1).sum();
                    if got.as_i64() != Some(want) {
                        return Err(format!("round {round}: got {got}, want {want}"));
                    }
                    round += 1;
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
                client.close();
                Ok(())
            })
        };
        GoodClient {
            stop,
            rounds,
            thread,
        }
    }

    /// Stops the loop, checks every round was right and returns how many
    /// there were.
    pub fn finish(self) -> u32 {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join() {
            Ok(Ok(())) => self.rounds.load(Ordering::SeqCst),
            Ok(Err(e)) => panic!("the well-behaved client failed: {e}"),
            Err(_) => panic!("the well-behaved client panicked"),
        }
    }
}
