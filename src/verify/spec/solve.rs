//! Sizing the dynamic dims from the graph's facts ([`super::facts`]): the user's `--dim` values
//! and the case's (a past length) first, then every size a fact determines, then defaults —
//! each default checked against the facts and replaced by the first candidate they accept.
//! Every size keeps where it came from ([`Origin`]), for the report.

use super::facts::{Fact, Rule};
use super::*;

/// Where the size of a dim came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `--dim NAME=VALUE`.
    User,
    /// The verification case (a past length, the new tokens of a filled cache).
    Case,
    /// Solved from a fact of the graph: its source and why.
    Fact {
        /// The node (or graph output) that states it.
        source: String,
        /// The fact in words.
        why: String,
    },
    /// A default the facts accept (`batch` for a batch-looking axis).
    Default(&'static str),
    /// A default raised (or replaced) to satisfy a fact.
    Required {
        /// The node (or graph output) that states it.
        source: String,
        /// The fact in words.
        why: String,
    },
}

impl Origin {
    /// Whether the graph gave the size (solved from or required by a fact).
    pub fn by_graph(&self) -> bool {
        matches!(self, Origin::Fact { .. } | Origin::Required { .. })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::User => write!(f, "--dim"),
            Origin::Case => write!(f, "the case"),
            Origin::Fact { source, why } => write!(f, "{source}: {why}"),
            Origin::Default(what) => write!(f, "default ({what})"),
            Origin::Required { source, why } => write!(f, "required by {source}: {why}"),
        }
    }
}

/// The solved sizes: a value and its origin per name, and the facts the values break.
#[derive(Clone, Debug, Default)]
pub(crate) struct Solution {
    pub values: BTreeMap<String, (usize, Origin)>,
    /// Facts that no choice satisfied (a `--dim` against the graph, or facts this solver
    /// reads differently from the runtimes), in words.
    pub broken: Vec<String>,
}

/// One symbolic name to size, with the axis it first appears at (for its default).
#[derive(Clone, Debug)]
pub(crate) struct Var {
    pub name: String,
    /// `(axis, rank)` of its first whole-axis appearance (`None`: only inside expressions).
    pub at: Option<(usize, usize)>,
}

type Assign = BTreeMap<String, (i64, Origin)>;

fn lookup(a: &Assign) -> impl Fn(&str) -> Option<i64> + '_ {
    move |n| a.get(n).map(|(v, _)| *v)
}

fn eval(e: &DimExpr, a: &Assign) -> Option<i64> {
    if e.names().iter().any(|n| !a.contains_key(*n)) {
        return None;
    }
    e.eval(&|n| a.get(n).map_or(0, |(v, _)| *v)).ok()
}

/// Whether a fully known fact holds (`None`: some name has no value yet).
fn holds(rule: &Rule, a: &Assign) -> Option<bool> {
    Some(match rule {
        Rule::Eq(x, y) => eval(x, a)? == eval(y, a)?,
        Rule::Broadcast(x, y) => {
            let (x, y) = (eval(x, a)?, eval(y, a)?);
            x == y || x == 1 || y == 1
        }
        Rule::AtLeast(x, n) => eval(x, a)? >= *n,
        Rule::OnePromptWithPast { batch, past, new } => {
            let (b, p, s) = (eval(batch, a)?, eval(past, a)?, eval(new, a)?);
            !(p > 0 && s > 1 && b != 1)
        }
    })
}

/// The value of the one unknown name of `lhs = rhs` (linear), when it is a whole size ≥ 0.
fn solve_one(lhs: &DimExpr, rhs: &DimExpr, a: &Assign) -> Option<(String, i64)> {
    let d = lhs.linear()?.add_scaled(&rhs.linear()?, -1)?;
    let unknown: Vec<(&String, &i64)> = d
        .terms
        .iter()
        .filter(|(n, _)| !a.contains_key(*n))
        .collect();
    let [(name, &k)] = unknown.as_slice() else {
        return None;
    };
    let mut rest = d.c;
    for (n, &c) in d.terms.iter().filter(|(n, _)| n != name) {
        rest = rest.checked_add(lookup(a)(n)?.checked_mul(c)?)?;
    }
    // k·x + rest = 0
    (rest % k == 0 && -rest / k >= 0).then(|| ((*name).clone(), -rest / k))
}

fn origin_of(f: &Fact) -> Origin {
    Origin::Fact {
        source: f.source.clone(),
        why: format!("{} ({})", f.why, f.rule),
    }
}

/// Assign every size the facts determine from the sizes already known; `Err` with the first
/// fact that the known sizes break.
fn propagate(facts: &[Fact], a: &mut Assign) -> Result<(), usize> {
    loop {
        let mut changed = false;
        for (k, f) in facts.iter().enumerate() {
            match holds(&f.rule, a) {
                Some(true) => continue,
                Some(false) => return Err(k),
                None => {}
            }
            let solved = match &f.rule {
                Rule::Eq(x, y) => solve_one(x, y, a),
                Rule::Broadcast(x, y) => {
                    // Equal if that is a whole size; else the side that can be 1.
                    let one = DimExpr::Int(1);
                    solve_one(x, y, a)
                        .or_else(|| {
                            let both = [solve_one(x, &one, a), solve_one(y, &one, a)];
                            let valid: Vec<_> = both.into_iter().flatten().collect();
                            match valid.as_slice() {
                                [only] => Some(only.clone()),
                                _ => None,
                            }
                        })
                        .filter(|(n, v)| {
                            let mut t = a.clone();
                            t.insert(n.clone(), (*v, Origin::Case));
                            holds(&f.rule, &t) == Some(true)
                        })
                }
                Rule::OnePromptWithPast { batch, past, new } => {
                    // With a past and a batch other than 1, one new token.
                    match (eval(batch, a), eval(past, a), eval(new, a)) {
                        (Some(b), Some(p), None) if p > 0 && b != 1 => {
                            solve_one(new, &DimExpr::Int(1), a)
                        }
                        _ => None,
                    }
                }
                Rule::AtLeast(..) => None,
            };
            if let Some((n, v)) = solved {
                a.insert(n, (v, origin_of(f)));
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
    }
}

/// Names that are the sum of others in some fact (`total` of `total = past + new`): sized last,
/// from the others.
fn sums(facts: &[Fact]) -> HashSet<String> {
    let mut out = HashSet::new();
    for f in facts {
        let (Rule::Eq(x, y) | Rule::Broadcast(x, y)) = &f.rule else {
            continue;
        };
        let Some(d) = x
            .linear()
            .and_then(|x| y.linear().and_then(|y| x.add_scaled(&y, -1)))
        else {
            continue;
        };
        if d.terms.len() < 3 {
            continue;
        }
        for (n, &k) in &d.terms {
            if d.terms
                .iter()
                .filter(|(m, _)| *m != n)
                .all(|(_, &c)| c.signum() == -k.signum())
            {
                out.insert(n.clone());
            }
        }
    }
    out
}

/// The smallest value ≥ `from` that every `AtLeast` fact with `name` as its only unknown
/// accepts (the shortest input a Conv stack fits), with the fact that raised it.
fn least(name: &str, from: i64, facts: &[Fact], a: &Assign) -> (i64, Option<usize>) {
    let mut v = from;
    let mut raised_by = None;
    for _ in 0..64 {
        let mut t = a.clone();
        t.insert(name.to_string(), (v, Origin::Case));
        let broken = facts
            .iter()
            .position(|f| matches!(f.rule, Rule::AtLeast(..)) && holds(&f.rule, &t) == Some(false));
        let Some(k) = broken else {
            return (v, raised_by);
        };
        raised_by = Some(k);
        // Double, then walk back down to the smallest accepted value.
        let mut hi = v.saturating_mul(2).max(v + 1);
        let ok = |x: i64| {
            let mut t = a.clone();
            t.insert(name.to_string(), (x, Origin::Case));
            holds(&facts[k].rule, &t) != Some(false)
        };
        while !ok(hi) && hi < (1 << 40) {
            hi = hi.saturating_mul(2);
        }
        let mut lo = v;
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if ok(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        v = hi;
    }
    (v, raised_by)
}

/// Size `vars` from `facts`: `user` values (`--dim`) and the case's `fixed` values first, the
/// case's `prefer` values where the facts accept them, `default` elsewhere (each raised or
/// replaced to satisfy the facts).
pub(crate) fn solve(
    vars: &[Var],
    facts: &[Fact],
    user: &BTreeMap<String, usize>,
    fixed: &BTreeMap<String, usize>,
    prefer: &BTreeMap<String, usize>,
    default: &dyn Fn(&Var) -> (usize, &'static str),
) -> Solution {
    let mut a: Assign = BTreeMap::new();
    for (n, &v) in user {
        a.insert(n.clone(), (v as i64, Origin::User));
    }
    for (n, &v) in fixed {
        a.entry(n.clone()).or_insert((v as i64, Origin::Case));
    }
    let mut broken: Vec<usize> = Vec::new();
    // Facts the given sizes break are reported and left out.
    let mut live: Vec<Fact> = facts.to_vec();
    while let Err(k) = propagate(&live, &mut a) {
        broken.push(facts.iter().position(|f| *f == live[k]).unwrap_or(k));
        live.remove(k);
    }
    let sum_names = sums(&live);
    loop {
        let pending: Vec<&Var> = vars.iter().filter(|v| !a.contains_key(&v.name)).collect();
        let Some(var) = pending
            .iter()
            .find(|v| !sum_names.contains(&v.name))
            .or_else(|| pending.first())
            .copied()
        else {
            break;
        };
        let (d, what) = default(var);
        let mut candidates: Vec<(i64, Origin)> = Vec::new();
        if let Some(&p) = prefer.get(&var.name) {
            candidates.push((p as i64, Origin::Case));
        }
        let (v, raised) = least(&var.name, d as i64, &live, &a);
        candidates.push(match raised {
            None => (v, Origin::Default(what)),
            Some(k) => (
                v,
                Origin::Required {
                    source: live[k].source.clone(),
                    why: format!("{} ({})", live[k].why, live[k].rule),
                },
            ),
        });
        // Values the facts suggest: a broadcast partner's size, or 1.
        for f in &live {
            if let Rule::Eq(x, y) | Rule::Broadcast(x, y) = &f.rule {
                for (p, q) in [(x, y), (y, x)] {
                    if matches!(p, DimExpr::Name(n) if *n == var.name) {
                        if let Some(v) = eval(q, &a).filter(|&v| v >= 0) {
                            candidates.push((
                                v,
                                Origin::Required {
                                    source: f.source.clone(),
                                    why: format!("{} ({})", f.why, f.rule),
                                },
                            ));
                        }
                    }
                }
            }
            if let Rule::OnePromptWithPast { .. } | Rule::Broadcast(..) = &f.rule {
                candidates.push((
                    1,
                    Origin::Required {
                        source: f.source.clone(),
                        why: format!("{} ({})", f.why, f.rule),
                    },
                ));
            }
        }
        let mut chosen = None;
        for (v, origin) in &candidates {
            let mut t = a.clone();
            t.insert(var.name.clone(), (*v, origin.clone()));
            if propagate(&live, &mut t).is_ok() {
                chosen = Some(t);
                break;
            }
        }
        match chosen {
            Some(t) => a = t,
            None => {
                let (v, origin) =
                    candidates.swap_remove(if prefer.contains_key(&var.name) { 1 } else { 0 });
                a.insert(var.name.clone(), (v, origin));
                while let Err(k) = propagate(&live, &mut a) {
                    broken.push(facts.iter().position(|f| *f == live[k]).unwrap_or(k));
                    live.remove(k);
                }
            }
        }
    }
    broken.sort_unstable();
    broken.dedup();
    Solution {
        values: a
            .into_iter()
            .filter(|(_, (v, _))| *v >= 0)
            .map(|(n, (v, o))| (n, (v as usize, o)))
            .collect(),
        broken: broken
            .iter()
            .map(|&k| format!("{}: {} ({})", facts[k].source, facts[k].why, facts[k].rule))
            .collect(),
    }
}
