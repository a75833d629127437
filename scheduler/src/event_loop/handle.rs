//! A scheduler on a thread of its own, or in the foreground.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use super::{EventLoop, SchedulerConfig, Stopper};

/// A scheduler running on its own thread.
pub struct SchedulerHandle {
    address: String,
    dashboard: Option<SocketAddr>,
    dashboard_url: Option<String>,
    stopper: Stopper,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl SchedulerHandle {
    /// Binds and starts the loop on a new thread.
    pub fn start(config: SchedulerConfig) -> io::Result<SchedulerHandle> {
        let event_loop = EventLoop::bind(&config)?;
        let address = event_loop.address();
        let dashboard = event_loop.dashboard_address();
        let dashboard_url = event_loop.dashboard_url();
        let stopper = event_loop.stopper();
        let thread = std::thread::Builder::new()
            .name("dask-scheduler".into())
            .spawn(move || event_loop.run(None))?;
        Ok(SchedulerHandle {
            address,
            dashboard,
            dashboard_url,
            stopper,
            thread: Some(thread),
        })
    }

    /// Where to connect: `tcp://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Where the dashboard listens, when [`SchedulerConfig::dashboard`]
    /// asked for one.
    pub fn dashboard_address(&self) -> Option<SocketAddr> {
        self.dashboard
    }

    /// The dashboard's page, with `?token=TOKEN` when it needs one.
    pub fn dashboard_url(&self) -> Option<String> {
        self.dashboard_url.clone()
    }

    /// Closes every connection cleanly (each peer gets `close`) and waits
    /// for the loop's thread to end.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopper.stop();
            let _ = thread.join();
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds and serves in the foreground until `stop` becomes true (e.g. set
/// by a signal handler; checked at least every [`STOP_CHECK_INTERVAL`](super::STOP_CHECK_INTERVAL)).
/// The binary uses [`EventLoop`] directly to print the address in between.
pub fn serve(config: SchedulerConfig, stop: Option<&AtomicBool>) -> io::Result<()> {
    EventLoop::bind(&config)?.run(stop)
}
