//! Topic ids → names for the Produce and Fetch versions (13 on) that name topics by id only,
//! learnt from the Metadata responses the proxy relays, which carry both (version 10 on). A
//! client asks for metadata before it fetches, so a topic's name is known by the time a
//! request names it by id. Read and written on the observer task only.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

/// The most topics remembered: a cluster with more has the rest shown by id.
const MAX_TOPICS: usize = 64 * 1024;

/// The topic names one proxy has seen, shared by its connections to every broker.
#[derive(Debug, Default)]
pub(super) struct TopicNames(Mutex<HashMap<Uuid, Arc<str>>>);

impl TopicNames {
    /// Remembers the names of `topics` (id, name).
    pub(super) fn learn(&self, topics: Vec<(Uuid, String)>) {
        let mut names = self.0.lock();
        for (id, name) in topics {
            if names.len() < MAX_TOPICS || names.contains_key(&id) {
                names.insert(id, Arc::from(name));
            }
        }
    }

    /// The name of topic `id`, if a Metadata response gave it.
    pub(super) fn name(&self, id: &Uuid) -> Option<Arc<str>> {
        self.0.lock().get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_learnt_and_renamed() {
        let names = TopicNames::default();
        let id = Uuid::from_u128(7);
        assert_eq!(names.name(&id), None);
        names.learn(vec![(id, "orders".into())]);
        assert_eq!(names.name(&id).as_deref(), Some("orders"));
        // A topic deleted and created again has a new id; an id keeps its latest name.
        names.learn(vec![(id, "orders-v2".into())]);
        assert_eq!(names.name(&id).as_deref(), Some("orders-v2"));
    }
}
