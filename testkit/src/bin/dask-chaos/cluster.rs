use super::*;

// ---- the cluster -------------------------------------------------------------------

pub(super) struct Cluster {
    pub(super) home: DaskHome,
    pub(super) scheduler: Process,
    pub(super) address: String,
    /// Host the workers outside the namespace bind.
    pub(super) host: String,
    pub(super) namespace: Option<Namespace>,
    /// Live workers: name, process, inside the namespace.
    pub(super) workers: Vec<(String, Process, bool)>,
    pub(super) next_worker: u32,
    /// Every worker's `--memory-limit`.
    pub(super) memory_limit: Option<String>,
    /// The worker spilling to a small disk, and its disk (dropped in
    /// that order: the worker stops before the disk is unmounted).
    pub(super) disk: Option<(Process, SmallDisk)>,
}

impl Cluster {
    pub(super) fn start(args: &Args, namespace: Option<Namespace>) -> Result<Cluster, String> {
        let home = DaskHome::new();
        let host = namespace
            .as_ref()
            .map_or("127.0.0.1".to_string(), |n| n.outer_addr.clone());
        let timeout = HEARTBEAT_TIMEOUT_SECONDS.to_string();
        let (scheduler, address) = home.start_scheduler(
            &[
                "--host",
                &host,
                "--validate",
                "--heartbeat-timeout",
                &timeout,
                // Kills are the point: a task lost with many workers is no bug.
                "--allowed-failures",
                "1000",
                // So are outages: every other worker killed, paused or cut
                // off for over the default 10 s (a scheduler pause of up to
                // 12 s, replacements slow to start under load) leaves the
                // full-disk worker alone, and its tasks would err with
                // SpillFailed as documented; seed 8 did at 75 s.
                "--spill-failed-timeout",
                "60",
            ],
            SETUP_PATIENCE,
        );
        let mut cluster = Cluster {
            home,
            scheduler,
            address,
            host,
            namespace,
            workers: Vec::new(),
            next_worker: 1,
            memory_limit: args.memory_limit.clone(),
            disk: None,
        };
        for _ in 0..args.workers {
            cluster.add_worker(false);
        }
        if cluster.namespace.is_some() {
            cluster.add_worker(true);
        }
        let disk = match args.full_disk.then(SmallDisk::mount) {
            Some(Ok(disk)) => Some(disk),
            Some(Err(e)) => {
                println!("dask-chaos: full spill disk left out: {e}");
                None
            }
            None => None,
        };
        if let Some(disk) = disk {
            let name = format!("w{}-full-disk", cluster.next_worker);
            cluster.next_worker += 1;
            let mut cmd = Command::new(binary("dask-worker"));
            cluster
                .home
                .apply(&mut cmd)
                .arg(&cluster.address)
                .args(["--host", &cluster.host, "--nthreads", "2", "--name", &name])
                .args(["--memory-limit", "4MB", "--local-directory"])
                .arg(&disk.dir);
            let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
            // Never killed: its disk stays full.
            cluster.disk = Some((process, disk));
        }
        Ok(cluster)
    }

    pub(super) fn add_worker(&mut self, inside: bool) {
        let name = format!("w{}", self.next_worker);
        self.next_worker += 1;
        let worker = binary("dask-worker");
        let mut cmd = match (&self.namespace, inside) {
            (Some(ns), true) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns.name]).arg(worker);
                cmd.args(["--host", &ns.inner_addr]);
                cmd
            }
            _ => {
                let mut cmd = Command::new(worker);
                cmd.args(["--host", &self.host]);
                cmd
            }
        };
        self.home
            .apply(&mut cmd)
            .arg(&self.address)
            .args(["--nthreads", "2", "--name", &name]);
        if let Some(limit) = &self.memory_limit {
            cmd.args(["--memory-limit", limit]);
        }
        let process = Process::spawn(&format!("dask-worker {name}"), &mut cmd);
        self.workers.push((name, process, inside));
    }

    pub(super) fn client(&self, name: &str) -> Result<Client, String> {
        Client::connect_with(
            &self.address,
            ClientOptions {
                name: Some(name.into()),
                request_timeout: Some(GRAPH_PATIENCE),
                ..self.home.client_options()
            },
        )
        .map_err(|e| format!("{name} cannot connect: {e}"))
    }

    /// The scheduler's log, last lines.
    pub(super) fn tail(&self) -> String {
        let log = self.scheduler.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}
