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
#[derive(Default)]
pub struct Index {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: Vec<(Box<str>, u32)>,
    all: Vec<u32>,
}

impl Index {
    pub fn add(&mut self, pattern: &Pattern, index: u32) {
        match pattern {
            Pattern::Exact(t) => self.exact.entry(t.clone()).or_default().push(index),
            Pattern::Prefix(p) => self.prefix.push((p.clone(), index)),
            Pattern::All => self.all.push(index),
        }
    }

    pub fn remove(&mut self, pattern: &Pattern, index: u32) {
        match pattern {
            Pattern::Exact(t) => {
                if let Some(list) = self.exact.get_mut(t) {
                    list.retain(|&i| i != index);
                    if list.is_empty() {
                        self.exact.remove(t);
                    }
                }
            }
            Pattern::Prefix(_) => self.prefix.retain(|&(_, i)| i != index),
            Pattern::All => self.all.retain(|&i| i != index),
        }
    }

    /// Appends the subscribers of `topic` to `out`.
    pub fn lookup(&self, topic: &str, out: &mut Vec<u32>) {
        if let Some(list) = self.exact.get(topic) {
            out.extend_from_slice(list);
        }
        out.extend(self.prefix.iter().filter(|(p, _)| topic.starts_with(&**p)).map(|&(_, i)| i));
        out.extend_from_slice(&self.all);
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
}
