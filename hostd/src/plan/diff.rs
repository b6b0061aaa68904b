//! Comparing desired with observed resources, field by field.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::{Action, Change, Desired, Observed, Op, Plan, ResourceId, ResourceKind, Restart};

/// Plans the actions that make `observed` match `desired`, with every kind
/// observed. Pure and deterministic: equal input gives an equal plan.
///
/// A resource listed twice counts once (the first entry wins); the config
/// validator rejects such trees before they get here.
///
/// Runs in linear time: one merge walk per pair of field maps, and either
/// one sequential walk over both lists when each is sorted by id without
/// duplicates (the fast path: pass them so), or one hash lookup per
/// resource. Ordering only looks at the (few) actions.
pub fn plan(desired: &[Desired], observed: &[Observed]) -> Plan {
    plan_with(desired, observed, &BTreeMap::new())
}

/// Resources of kinds that [keep data](ResourceKind::keeps_data) are
/// never deleted: an undesired volume or pool is left alone.
///
/// Like [`plan`], when some kinds could not be observed this cycle
/// (`unobserved` maps each to its error). Their resources are neither
/// created nor deleted (absence from `observed` means nothing for them),
/// actions that wait for one of them are deferred, and so are all deletes,
/// since the planner cannot know what still uses a resource.
pub fn plan_with(
    desired: &[Desired],
    observed: &[Observed],
    unobserved: &BTreeMap<ResourceKind, String>,
) -> Plan {
    let mut actions = Vec::new();
    let sorted = desired.windows(2).all(|w| w[0].id < w[1].id)
        && observed.windows(2).all(|w| w[0].id < w[1].id);
    if sorted {
        merge_join(desired, observed, unobserved, &mut actions);
    } else {
        hash_join(desired, observed, unobserved, &mut actions);
    }
    super::order::finish(actions, observed, unobserved)
}

type Planned<'a> = Vec<(Action, Option<&'a Desired>)>;

/// The action for one resource, desired or observed or both.
fn pair<'a>(
    desired: Option<&'a Desired>,
    observed: Option<&Observed>,
    unobserved: &BTreeMap<ResourceKind, String>,
    actions: &mut Planned<'a>,
) {
    let Some(id) = desired.map(|d| &d.id).or(observed.map(|o| &o.id)) else {
        return;
    };
    if unobserved.contains_key(&id.kind) {
        return;
    }
    let action = match (desired, observed) {
        (Some(d), None) => Some(create(d)),
        (Some(d), Some(o)) => update(d, o),
        // Data is only ever destroyed by an operator (`horcrux purge`).
        (None, _) if id.kind.keeps_data() => None,
        (None, _) => Some(Action {
            id: id.clone(),
            op: Op::Delete,
            changes: Vec::new(),
            after: Vec::new(),
        }),
    };
    actions.extend(action.map(|a| (a, desired)));
}

/// Both lists sorted by id without duplicates (what [`observe_all`] and
/// a sorted generation give): one sequential walk, no hashing.
///
/// [`observe_all`]: crate::apply::observe_all
fn merge_join<'a>(
    desired: &'a [Desired],
    observed: &[Observed],
    unobserved: &BTreeMap<ResourceKind, String>,
    actions: &mut Planned<'a>,
) {
    let (mut i, mut j) = (0, 0);
    loop {
        let (d, o) = (desired.get(i), observed.get(j));
        let order = match (d, o) {
            (Some(d), Some(o)) => d.id.cmp(&o.id),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return,
        };
        match order {
            Ordering::Less => pair(d, None, unobserved, actions),
            Ordering::Greater => pair(None, o, unobserved, actions),
            Ordering::Equal => pair(d, o, unobserved, actions),
        }
        i += usize::from(order != Ordering::Greater);
        j += usize::from(order != Ordering::Less);
    }
}

/// Any order, duplicates allowed (the first wins): one hash lookup per
/// desired resource, flags instead of a second map.
fn hash_join<'a>(
    desired: &'a [Desired],
    observed: &[Observed],
    unobserved: &BTreeMap<ResourceKind, String>,
    actions: &mut Planned<'a>,
) {
    let mut index: FastMap<&ResourceId, usize> =
        FastMap::with_capacity_and_hasher(observed.len(), Default::default());
    let mut first = vec![false; observed.len()];
    for (j, o) in observed.iter().enumerate() {
        index.entry(&o.id).or_insert_with(|| {
            first[j] = true;
            j
        });
    }
    let mut matched = vec![false; observed.len()];
    let mut created: FastMap<&ResourceId, ()> = FastMap::default();
    for d in desired {
        match index.get(&d.id) {
            Some(&j) => {
                if !std::mem::replace(&mut matched[j], true) {
                    pair(Some(d), Some(&observed[j]), unobserved, actions);
                }
            }
            None => {
                if created.insert(&d.id, ()).is_none() {
                    pair(Some(d), None, unobserved, actions);
                }
            }
        }
    }
    for (j, o) in observed.iter().enumerate() {
        if first[j] && !matched[j] {
            pair(None, Some(o), unobserved, actions);
        }
    }
}

/// A hash map with a fast, non-cryptographic hash (FxHash): keys are
/// resource ids from the operator's own config and system, not from
/// untrusted peers, and SipHash dominated planning 10,000 VMs.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Clone, Copy, Debug, Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown picks buckets by low bits.
        self.hash ^ (self.hash >> 29)
    }
}

fn create(d: &Desired) -> Action {
    let changes = d
        .fields
        .iter()
        .map(|(name, field)| Change {
            field: name.clone(),
            from: None,
            to: Some(field.value.clone()),
            live: field.live,
        })
        .collect();
    Action {
        id: d.id.clone(),
        op: Op::Create,
        changes,
        after: Vec::new(),
    }
}

/// The update making `o` match `d`, if any field differs. Both field maps
/// are sorted, so one merge walk compares them without lookups.
fn update(d: &Desired, o: &Observed) -> Option<Action> {
    let mut changes = Vec::new();
    let mut current = o.fields.iter().peekable();
    for (name, field) in &d.fields {
        while current
            .next_if(|(k, _)| k.as_str() < name.as_str())
            .is_some()
        {}
        let from = current.next_if(|(k, _)| *k == name).map(|(_, v)| v);
        if from != Some(&field.value) {
            changes.push(Change {
                field: name.clone(),
                from: from.cloned(),
                to: Some(field.value.clone()),
                live: field.live,
            });
        }
    }
    if changes.is_empty() {
        return None;
    }
    let restart = if !o.running || changes.iter().all(|c| c.live) {
        Restart::None
    } else if d.auto_restart {
        Restart::Auto
    } else {
        Restart::Pending
    };
    Some(Action {
        id: d.id.clone(),
        op: Op::Update { restart },
        changes,
        after: Vec::new(),
    })
}
