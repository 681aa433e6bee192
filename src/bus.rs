//! Topics: subscription patterns and the index that finds a topic's subscribers.
//!
//! A topic is a non-empty string without `*` ("log.ready"). A pattern is an exact topic,
//! a prefix ending in `.*` ("job.*" matches "job.done" and "job.a.b", not "job"), or `*`
//! (every topic). Emitted events travel through the loop's inbox, so each subscriber sees
//! the events of one emitting thread in emit order; the loop asks this index for the
//! subscribers of each event when it delivers it.

use crate::error::{Error, Result};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Exact(Box<str>),
    /// The prefix including its final '.'.
    Prefix(Box<str>),
    All,
}

impl Pattern {
    pub fn parse(pattern: &str) -> Result<Pattern> {
        if pattern == "*" {
            return Ok(Pattern::All);
        }
        if let Some(prefix) = pattern.strip_suffix('*') {
            if prefix.len() > 1 && prefix.ends_with('.') && !prefix.contains('*') {
                return Ok(Pattern::Prefix(prefix.into()));
            }
        } else if !pattern.is_empty() && !pattern.contains('*') {
            return Ok(Pattern::Exact(pattern.into()));
        }
        Err(Error::invalid(format!("pattern {pattern:?} is not a topic, a prefix ending in \".*\", or \"*\"")))
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::Exact(t) => **t == *topic,
            Pattern::Prefix(p) => topic.starts_with(&**p),
            Pattern::All => true,
        }
    }
}

/// Checks a topic given to emit.
pub fn check_topic(topic: &str) -> Result<()> {
    if topic.is_empty() || topic.contains('*') {
        return Err(Error::invalid(format!("topic {topic:?} must be non-empty and must not contain '*'")));
    }
    Ok(())
}

/// Subscribers by pattern; values are slab indices of subscriptions.
///
/// Each pattern's subscribers sit in a [`List`] in subscription order, and `at` holds,
/// for each subscription's slab index, its position in its list. So a cancel finds its
/// entry without a search, and cancelling N subscriptions costs O(N), not O(N^2).
#[derive(Default)]
pub struct Index {
    exact: HashMap<Box<str>, List<()>>,
    prefix: List<Box<str>>,
    all: List<()>,
    /// Position of subscription `i` in its list, indexed by slab index (dense, reused).
    at: Vec<u32>,
}

/// Marks a removed entry until the list is compacted.
const HOLE: u32 = u32::MAX;

/// One pattern's subscribers in subscription order: (slab index, data) pairs.
///
/// A removal leaves a hole; once holes are half the list it is compacted (the survivors
/// keep their order, and their positions in `at` are rewritten), so a removal costs O(1)
/// amortized and delivery stays in subscription order.
struct List<T> {
    items: Vec<(u32, T)>,
    holes: usize,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List { items: Vec::new(), holes: 0 }
    }
}

impl<T> List<T> {
    fn push(&mut self, index: u32, data: T, at: &mut Vec<u32>) {
        debug_assert!(index != HOLE);
        let slot = index as usize;
        if at.len() <= slot {
            at.resize(slot + 1, 0);
        }
        at[slot] = self.items.len() as u32;
        self.items.push((index, data));
    }

    /// Takes `index` out. Returns true once the list holds nobody.
    fn remove(&mut self, index: u32, at: &mut [u32]) -> bool {
        let Some(&pos) = at.get(index as usize) else { return false };
        match self.items.get_mut(pos as usize) {
            Some(entry) if entry.0 == index => entry.0 = HOLE,
            _ => return false,
        }
        self.holes += 1;
        if self.holes == self.items.len() {
            self.items.clear();
            self.holes = 0;
            return true;
        }
        if self.holes * 2 > self.items.len() {
            self.items.retain(|e| e.0 != HOLE);
            self.holes = 0;
            for (pos, e) in self.items.iter().enumerate() {
                at[e.0 as usize] = pos as u32;
            }
            if self.items.capacity() > 4 * self.items.len() {
                self.items.shrink_to(2 * self.items.len());
            }
        }
        false
    }

    fn live(&self) -> impl Iterator<Item = &(u32, T)> {
        self.items.iter().filter(|e| e.0 != HOLE)
    }
}

impl Index {
    pub fn add(&mut self, pattern: &Pattern, index: u32) {
        match pattern {
            Pattern::Exact(t) => match self.exact.get_mut(t) {
                Some(list) => list.push(index, (), &mut self.at),
                None => self.exact.entry(t.clone()).or_default().push(index, (), &mut self.at),
            },
            Pattern::Prefix(p) => self.prefix.push(index, p.clone(), &mut self.at),
            Pattern::All => self.all.push(index, (), &mut self.at),
        }
    }

    pub fn remove(&mut self, pattern: &Pattern, index: u32) {
        match pattern {
            Pattern::Exact(t) => {
                if let Some(list) = self.exact.get_mut(t) {
                    if list.remove(index, &mut self.at) {
                        self.exact.remove(t);
                    }
                }
            }
            Pattern::Prefix(_) => {
                self.prefix.remove(index, &mut self.at);
            }
            Pattern::All => {
                self.all.remove(index, &mut self.at);
            }
        }
    }

    /// Appends the subscribers of `topic` to `out`.
    pub fn lookup(&self, topic: &str, out: &mut Vec<u32>) {
        if let Some(list) = self.exact.get(topic) {
            out.extend(list.live().map(|e| e.0));
        }
        out.extend(self.prefix.live().filter(|(_, p)| topic.starts_with(&**p)).map(|e| e.0));
        out.extend(self.all.live().map(|e| e.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_match() {
        assert_eq!(Pattern::parse("*").unwrap(), Pattern::All);
        let job = Pattern::parse("job.*").unwrap();
        assert!(job.matches("job.done") && job.matches("job.a.b"));
        assert!(!job.matches("job") && !job.matches("jobs.x"));
        assert!(Pattern::parse("log.ready").unwrap().matches("log.ready"));
        for bad in ["", "a*", "*.b", ".*", "a.*.*", "a.b*", "job*"] {
            assert_eq!(Pattern::parse(bad).unwrap_err().code, crate::error::Code::Invalid, "{bad}");
        }
        assert!(check_topic("a.b").is_ok());
        assert!(check_topic("").is_err() && check_topic("a.*").is_err());
    }

    #[test]
    fn index_finds_exact_prefix_and_all() {
        let mut index = Index::default();
        let pats = ["a.b", "a.*", "*", "b.c", "a.b"];
        for (i, p) in pats.iter().enumerate() {
            index.add(&Pattern::parse(p).unwrap(), i as u32);
        }
        let mut out = Vec::new();
        index.lookup("a.b", &mut out);
        assert_eq!(out, vec![0, 4, 1, 2]);
        index.remove(&Pattern::parse("a.b").unwrap(), 0);
        out.clear();
        index.lookup("a.b", &mut out);
        assert_eq!(out, vec![4, 1, 2]);
    }

    /// Removals in any order leave the survivors in subscription order, through holes
    /// and compactions, and a removed index that is reused goes to the end.
    #[test]
    fn index_keeps_subscription_order_through_removals() {
        let exact = Pattern::parse("t").unwrap();
        let all = Pattern::All;
        let mut index = Index::default();
        let n = 1000u32;
        for i in 0..n {
            index.add(if i % 3 == 0 { &all } else { &exact }, i);
        }
        let mut alive: Vec<u32> = (0..n).collect();
        // remove every index whose (i * 7919) % 10 < 7, in a scrambled order
        let mut gone: Vec<u32> = (0..n).filter(|i| (i * 7919) % 10 < 7).collect();
        gone.sort_by_key(|i| i.wrapping_mul(2654435761) >> 7);
        for (k, &i) in gone.iter().enumerate() {
            index.remove(if i % 3 == 0 { &all } else { &exact }, i);
            alive.retain(|&a| a != i);
            if k % 97 == 0 {
                let mut out = Vec::new();
                index.lookup("t", &mut out);
                let want: Vec<u32> = alive
                    .iter()
                    .copied()
                    .filter(|i| i % 3 != 0)
                    .chain(alive.iter().copied().filter(|i| i % 3 == 0))
                    .collect();
                assert_eq!(out, want, "after {k} removals");
            }
        }
        // removing again, or an index never added, changes nothing
        index.remove(&exact, gone[0]);
        index.remove(&exact, 5000);
        index.add(&all, gone[1]);
        let mut out = Vec::new();
        index.lookup("t", &mut out);
        assert_eq!(out.last(), Some(&gone[1]));
        assert_eq!(out.len(), alive.len() + 1);
        for &i in &alive {
            index.remove(if i % 3 == 0 { &all } else { &exact }, i);
        }
        index.remove(&all, gone[1]);
        assert!(index.exact.is_empty() && index.all.items.is_empty());
    }
}
