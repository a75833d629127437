//! What clients ask of the data: who has a key, the cluster's
//! description, and named datasets.

use super::*;

impl SchedulerState {
    // ---- questions ----------------------------------------------------------

    /// dask/1.1: an `ok` answering `request` (an `ack` asked for it), to a
    /// client that speaks 1.1 (a 1.0 scheduler does not know `ack`).
    pub(crate) fn acknowledge(&mut self, conn: ConnId, request: u64) {
        if self.clients.get(&conn).is_some_and(|c| c.v1_1) {
            self.send(conn, Message::OkReply(OkReply { request }));
        }
    }

    /// dask/1.1: the scheduler state of each key (`forgotten` when no task
    /// of that key is kept), for a client that speaks 1.1; `None` for 1.0.
    pub(super) fn status_for<'k>(
        &self,
        conn: ConnId,
        keys: impl Iterator<Item = &'k Key>,
    ) -> Option<BTreeMap<Key, String>> {
        if !self.clients.get(&conn).is_some_and(|c| c.v1_1) {
            return None;
        }
        let status = keys
            .map(|key| {
                let state = self.task_state(key.as_str()).unwrap_or("forgotten");
                (key.clone(), state.to_owned())
            })
            .collect();
        Some(status)
    }

    pub(crate) fn who_has(&mut self, conn: ConnId, m: WhoHas) {
        let mut who_has = BTreeMap::new();
        for key in m.keys {
            let addresses = match self.task_id(&key) {
                Some(t) => self.tasks[t]
                    .who_has
                    .iter()
                    .filter_map(|w| self.workers.get(w.ix()).map(|k| k.address.clone()))
                    .collect(),
                None => Vec::new(),
            };
            who_has.insert(key, addresses);
        }
        self.send(
            conn,
            Message::WhoHasReply(WhoHasReply {
                request: m.request,
                status: self.status_for(conn, who_has.keys()),
                who_has,
            }),
        );
    }

    pub(crate) fn cluster_info(&mut self, conn: ConnId, m: ClusterInfo) {
        let workers = self
            .workers
            .iter()
            .map(|(_, w)| WorkerInfo {
                id: w.id,
                name: w.name.clone(),
                address: w.address.clone(),
                nthreads: w.nthreads,
                memory_limit: w.memory_limit,
                resources: w.resources.clone(),
                functions: w.function_list.clone(),
                processing: w.processing.len() as u64,
                stored_keys: w.has_what.len() as u64,
                stored_bytes: w.stored_bytes,
            })
            .collect();
        // From the groups' counts: a pass over 10M tasks (a string each)
        // kept the loop busy for over a second per cluster-info.
        let tasks: BTreeMap<String, u64> = super::observe::STATE_NAMES
            .iter()
            .zip(self.observe.state_counts())
            .filter(|&(_, n)| n > 0)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        let clients = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
        self.send(
            conn,
            Message::ClusterInfoReply(ClusterInfoReply {
                request: m.request,
                workers,
                tasks,
                clients,
            }),
        );
    }

    // ---- datasets -----------------------------------------------------------

    pub(crate) fn publish_dataset(&mut self, conn: ConnId, m: PublishDataset) {
        let unknown: Vec<Key> = m
            .keys
            .iter()
            .filter(|k| self.task_id(*k).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return self.reply_error(
                conn,
                ErrorCode::UnknownKey,
                format!(
                    "dataset {:?} names keys the scheduler does not know",
                    m.name
                ),
                Some(m.request),
                Some(unknown),
            );
        }
        if self.datasets.contains_key(&m.name) && !m.overwrite.unwrap_or(false) {
            return self.reply_error(
                conn,
                ErrorCode::DatasetExists,
                format!("dataset {:?} is already published", m.name),
                Some(m.request),
                None,
            );
        }
        let m = match self.journal_message(RecordKind::Put, conn, Message::PublishDataset(m)) {
            Message::PublishDataset(m) => m,
            _ => return,
        };
        let mut ids: Vec<TaskId> = Vec::with_capacity(m.keys.len());
        for key in &m.keys {
            if let Some(t) = self.task_id(key) {
                if !ids.contains(&t) {
                    ids.push(t);
                }
            }
        }
        for &t in &ids {
            self.tasks[t].rare_mut().dataset_refs += 1;
            if self.tasks[t].state() == TaskState::Released {
                self.activate(t);
            }
        }
        if let Some(old) = self.datasets.insert(m.name, ids) {
            self.release_dataset(old);
        }
        self.send(conn, Message::OkReply(OkReply { request: m.request }));
    }

    pub(super) fn release_dataset(&mut self, ids: Vec<TaskId>) {
        for t in ids {
            self.tasks[t].rare_mut().dataset_refs -= 1;
            self.to_check.push(t);
        }
    }

    pub(crate) fn unpublish_dataset(&mut self, conn: ConnId, m: UnpublishDataset) {
        match self.datasets.remove(&m.name) {
            Some(ids) => {
                self.journal(|_| super::durable::delete_record(&m));
                self.release_dataset(ids);
                self.send(conn, Message::OkReply(OkReply { request: m.request }));
            }
            None => self.unknown_dataset(conn, m.request, &m.name),
        }
    }

    pub(super) fn unknown_dataset(&mut self, conn: ConnId, request: u64, name: &str) {
        self.reply_error(
            conn,
            ErrorCode::UnknownDataset,
            format!("no dataset named {name:?}"),
            Some(request),
            None,
        );
    }

    pub(crate) fn get_dataset(&mut self, conn: ConnId, m: GetDataset) {
        let Some(ids) = self.datasets.get(&m.name).cloned() else {
            return self.unknown_dataset(conn, m.request, &m.name);
        };
        let keys: Vec<Key> = ids.iter().map(|t| self.tasks[t].key_owned()).collect();
        self.journal(|s| {
            let wants = UpdateGraph {
                request: m.request,
                tasks: Vec::new(),
                wanted: keys.clone(),
                ack: None,
            };
            JournalRecord::new(
                RecordKind::Graph,
                s.session_of(conn),
                Message::UpdateGraph(wants),
            )
        });
        self.send(
            conn,
            Message::Dataset(Dataset {
                request: m.request,
                name: m.name,
                keys,
            }),
        );
        for t in ids {
            self.add_want(conn, t, m.request);
        }
        self.recheck_stuck();
    }

    pub(crate) fn list_datasets(&mut self, conn: ConnId, m: ListDatasets) {
        let names = self.datasets.keys().cloned().collect();
        self.send(
            conn,
            Message::Datasets(Datasets {
                request: m.request,
                names,
            }),
        );
    }
}
