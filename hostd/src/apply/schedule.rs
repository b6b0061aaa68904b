//! Which action of a plan may start next: the `after` graph of one run,
//! with the actions skipped because something they wait for did not
//! succeed.

use std::collections::{HashMap, VecDeque};

use crate::plan::{Plan, ResourceId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Waiting,
    Running,
    Done,
    Skipped,
}

/// Progress of one run over the actions of a plan, by index.
#[derive(Debug)]
pub(super) struct Schedule {
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    remaining: Vec<usize>,
    slots: Vec<Slot>,
    ready: VecDeque<usize>,
}

impl Schedule {
    /// Waits outside the plan (and on oneself) are ignored.
    pub(super) fn new(plan: &Plan) -> Self {
        let index: HashMap<&ResourceId, usize> = plan
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| (&a.id, i))
            .collect();
        let deps: Vec<Vec<usize>> = plan
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut d: Vec<usize> = a
                    .after
                    .iter()
                    .filter_map(|id| index.get(id).copied())
                    .filter(|&j| j != i)
                    .collect();
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        let mut dependents = vec![Vec::new(); deps.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &j in ds {
                dependents[j].push(i);
            }
        }
        let remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
        let ready = (0..deps.len()).filter(|&i| remaining[i] == 0).collect();
        let slots = vec![Slot::Waiting; deps.len()];
        Schedule {
            deps,
            dependents,
            remaining,
            slots,
            ready,
        }
    }

    /// The next action whose waits all succeeded, now marked running.
    pub(super) fn next_ready(&mut self) -> Option<usize> {
        while let Some(i) = self.ready.pop_front() {
            if self.slots[i] == Slot::Waiting {
                self.slots[i] = Slot::Running;
                return Some(i);
            }
        }
        None
    }

    pub(super) fn succeeded(&mut self, i: usize) {
        self.slots[i] = Slot::Done;
        for &k in &self.dependents[i] {
            self.remaining[k] -= 1;
            if self.remaining[k] == 0 && self.slots[k] == Slot::Waiting {
                self.ready.push_back(k);
            }
        }
    }

    /// Action `i` failed: everything waiting for it, directly or not, is
    /// skipped. Returns `(skipped, the action it waits for)` pairs.
    pub(super) fn failed(&mut self, i: usize) -> Vec<(usize, usize)> {
        self.slots[i] = Slot::Done;
        self.skip_dependents(i)
    }

    /// Action `i` is not attempted (it is in backoff); like [`failed`].
    ///
    /// [`failed`]: Schedule::failed
    pub(super) fn skip(&mut self, i: usize) -> Vec<(usize, usize)> {
        self.slots[i] = Slot::Skipped;
        self.skip_dependents(i)
    }

    fn skip_dependents(&mut self, i: usize) -> Vec<(usize, usize)> {
        let mut skipped = Vec::new();
        let mut queue = vec![i];
        while let Some(j) = queue.pop() {
            for &k in &self.dependents[j] {
                if self.slots[k] == Slot::Waiting {
                    self.slots[k] = Slot::Skipped;
                    skipped.push((k, j));
                    queue.push(k);
                }
            }
        }
        skipped
    }

    /// Actions still waiting once nothing runs: only a plan whose `after`
    /// lists form a cycle has any. They are skipped rather than waited
    /// for forever; each comes with an action it waits for.
    pub(super) fn stranded(&mut self) -> Vec<(usize, usize)> {
        let mut stranded = Vec::new();
        for i in 0..self.slots.len() {
            if self.slots[i] == Slot::Waiting {
                let blocker = self.deps[i]
                    .iter()
                    .copied()
                    .find(|&j| self.slots[j] != Slot::Done);
                stranded.push((i, blocker.unwrap_or(i)));
            }
        }
        for &(i, _) in &stranded {
            self.slots[i] = Slot::Skipped;
        }
        stranded
    }
}
