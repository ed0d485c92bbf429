//! The merge loop shared by both tokenizer families: start from one symbol per character and
//! repeatedly join the adjacent pair with the best priority (ties go to the leftmost pair)
//! until no adjacent pair can be joined.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A run of the input text and the token it currently is, if any.
#[derive(Clone, Debug)]
pub(super) struct Symbol {
    /// Byte range in the text.
    pub start: usize,
    pub end: usize,
    /// The token this run is, when it is one.
    pub id: Option<u32>,
    prev: Option<usize>,
    next: Option<usize>,
    alive: bool,
}

/// A joinable adjacent pair waiting in the queue.
struct Candidate {
    priority: f64,
    left: usize,
    right: usize,
    /// Byte length of the joined run when queued; a mismatch later means a side changed.
    len: usize,
    id: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    /// Max-heap order: higher priority first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .total_cmp(&other.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Splits `text` into one symbol per character, each with the id `lookup` gives it, joins
/// pairs while `pair` accepts one, and returns the remaining symbols in order.
///
/// `pair(text, left, right)` returns the priority of joining two adjacent symbols and the
/// token id of the result, or `None` when they cannot be joined.
pub(super) fn merge(
    text: &str,
    lookup: impl Fn(&str) -> Option<u32>,
    pair: impl Fn(&str, &Symbol, &Symbol) -> Option<(f64, u32)>,
) -> Vec<Symbol> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, c) in text.char_indices() {
        let end = start + c.len_utf8();
        let n = symbols.len();
        symbols.push(Symbol {
            start,
            end,
            id: text.get(start..end).and_then(&lookup),
            prev: n.checked_sub(1),
            next: None,
            alive: true,
        });
        if let Some(prev) = n.checked_sub(1).and_then(|p| symbols.get_mut(p)) {
            prev.next = Some(n);
        }
    }

    let mut queue = BinaryHeap::new();
    let offer = |queue: &mut BinaryHeap<Candidate>, symbols: &[Symbol], left: usize| {
        let l = &symbols[left];
        let Some(right) = l.next else { return };
        let r = &symbols[right];
        if let Some((priority, id)) = pair(text, l, r) {
            queue.push(Candidate {
                priority,
                left,
                right,
                len: r.end - l.start,
                id,
            });
        }
    };
    for i in 0..symbols.len() {
        offer(&mut queue, &symbols, i);
    }

    while let Some(c) = queue.pop() {
        let (l, r) = (&symbols[c.left], &symbols[c.right]);
        if !l.alive || !r.alive || l.next != Some(c.right) || r.end - l.start != c.len {
            continue;
        }
        let (end, next) = (r.end, r.next);
        symbols[c.right].alive = false;
        let l = &mut symbols[c.left];
        l.end = end;
        l.id = Some(c.id);
        l.next = next;
        if let Some(n) = next {
            symbols[n].prev = Some(c.left);
        }
        if let Some(p) = symbols[c.left].prev {
            offer(&mut queue, &symbols, p);
        }
        offer(&mut queue, &symbols, c.left);
    }

    symbols.retain(|s| s.alive);
    symbols
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins pairs found in `rules` (text of the joined run, priority); ids count from 100.
    fn run(text: &str, rules: &[(&str, f64)]) -> Vec<String> {
        let pair = |t: &str, l: &Symbol, r: &Symbol| {
            let joined = t.get(l.start..r.end)?;
            let i = rules.iter().position(|(s, _)| *s == joined)?;
            Some((rules[i].1, 100 + i as u32))
        };
        merge(text, |_| None, pair)
            .iter()
            .map(|s| text[s.start..s.end].to_owned())
            .collect()
    }

    #[test]
    fn best_pair_first_then_leftmost_on_ties() {
        assert_eq!(run("abc", &[("ab", 1.0), ("bc", 2.0)]), ["a", "bc"]);
        assert_eq!(run("abc", &[("ab", 2.0), ("bc", 1.0)]), ["ab", "c"]);
        assert_eq!(run("aaaa", &[("aa", 1.0)]), ["aa", "aa"]);
        assert_eq!(run("aaa", &[("aa", 1.0)]), ["aa", "a"]);
    }

    #[test]
    fn merges_chain_into_longer_runs() {
        let rules = [("ab", 3.0), ("abc", 2.0), ("abcd", 1.0), ("cd", 0.5)];
        assert_eq!(run("abcd", &rules), ["abcd"]);
        assert_eq!(run("xabcdx", &rules), ["x", "abcd", "x"]);
    }

    #[test]
    fn multibyte_characters_are_single_symbols() {
        assert_eq!(run("é▁", &[]), ["é", "▁"]);
        assert_eq!(run("é▁", &[("é▁", 1.0)]), ["é▁"]);
        assert!(run("", &[]).is_empty());
    }
}
