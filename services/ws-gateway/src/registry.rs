//! Every connected client of this process, for the status page and for the drain on shutdown.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use crate::client::Client;

#[derive(Default)]
pub struct Registry {
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// A fresh client id (unique within the process).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn insert(&self, client: Arc<Client>) {
        self.lock().insert(client.id(), client);
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Client>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}
