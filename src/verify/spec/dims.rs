//! Symbolic dimensions: the `dim_param` expressions exporters write (`batch`, `seq + 1`,
//! `floor(past / 2)`…), parsed and evaluated once the names have sizes.

use super::*;

/// A parsed `dim_param` expression: integers, names, `+ - * / %` (floor division and
/// remainder, as symbolic-shape printers write them), unary minus and parentheses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DimExpr {
    /// An integer literal.
    Int(i64),
    /// A symbolic size by name.
    Name(String),
    /// `-e`.
    Neg(Box<DimExpr>),
    /// `a op b` with `op` one of `+ - * / %`.
    Bin(char, Box<DimExpr>, Box<DimExpr>),
}

pub(super) fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Whether `s` is a plain name: `[A-Za-z_][A-Za-z0-9_.-]*` (a hyphen without spaces is read as
/// part of a name, `sequence-length`, not as a subtraction).
pub(super) fn is_plain_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_name_start) && cs.all(|c| is_name_char(c) || c == '-')
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Int(i64),
    Name(String),
    Op(char),
}

pub(super) fn tokens(s: &str) -> Option<Vec<Tok>> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            let text: String = cs[start..i].iter().collect();
            out.push(Tok::Int(text.parse().ok()?));
        } else if is_name_start(c) {
            let start = i;
            while i < cs.len() && is_name_char(cs[i]) {
                i += 1;
            }
            out.push(Tok::Name(cs[start..i].iter().collect()));
        } else if c == '/' && cs.get(i + 1) == Some(&'/') {
            out.push(Tok::Op('/'));
            i += 2;
        } else if "+-*/%()".contains(c) {
            out.push(Tok::Op(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

pub(super) struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek_op(&self) -> Option<char> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(c)) => Some(*c),
            _ => None,
        }
    }

    fn sum(&mut self) -> Option<DimExpr> {
        let mut e = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek_op() {
            self.pos += 1;
            e = DimExpr::Bin(op, Box::new(e), Box::new(self.product()?));
        }
        Some(e)
    }

    fn product(&mut self) -> Option<DimExpr> {
        let mut e = self.unary()?;
        while let Some(op @ ('*' | '/' | '%')) = self.peek_op() {
            self.pos += 1;
            e = DimExpr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
        Some(e)
    }

    fn unary(&mut self) -> Option<DimExpr> {
        // Bounded nesting: a hostile file cannot overflow the stack.
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        let r = match self.toks.get(self.pos).cloned()? {
            Tok::Op('-') => {
                self.pos += 1;
                Some(DimExpr::Neg(Box::new(self.unary()?)))
            }
            Tok::Op('+') => {
                self.pos += 1;
                self.unary()
            }
            Tok::Op('(') => {
                self.pos += 1;
                let e = self.sum()?;
                (self.peek_op() == Some(')')).then_some(())?;
                self.pos += 1;
                Some(e)
            }
            Tok::Int(v) => {
                self.pos += 1;
                Some(DimExpr::Int(v))
            }
            Tok::Name(n) => {
                self.pos += 1;
                Some(DimExpr::Name(n))
            }
            Tok::Op(_) => None,
        };
        self.depth -= 1;
        r
    }
}

impl DimExpr {
    /// Parse `s`; `None` when it is not an expression of this grammar.
    pub fn parse(s: &str) -> Option<DimExpr> {
        let toks = tokens(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        let e = p.sum()?;
        (p.pos == p.toks.len()).then_some(e)
    }

    /// The names the expression reads, in order of appearance (with repeats).
    pub fn names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            DimExpr::Int(_) => {}
            DimExpr::Name(n) => out.push(n),
            DimExpr::Neg(e) => e.collect_names(out),
            DimExpr::Bin(_, a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
        }
    }

    /// The names of the terms of a top-level sum (`a + b + 1` → `a`, `b`).
    pub fn summed_names(&self) -> Vec<&str> {
        match self {
            DimExpr::Name(n) => vec![n.as_str()],
            DimExpr::Bin('+', a, b) => {
                let mut v = a.summed_names();
                v.extend(b.summed_names());
                v
            }
            _ => Vec::new(),
        }
    }

    /// The value with every name read from `value` (checked arithmetic; `/` and `%` floor).
    pub fn eval(&self, value: &dyn Fn(&str) -> i64) -> Result<i64, String> {
        let overflow = || "overflows".to_string();
        Ok(match self {
            DimExpr::Int(v) => *v,
            DimExpr::Name(n) => value(n),
            DimExpr::Neg(e) => e.eval(value)?.checked_neg().ok_or_else(overflow)?,
            DimExpr::Bin(op, a, b) => {
                let (x, y) = (a.eval(value)?, b.eval(value)?);
                match op {
                    '+' => x.checked_add(y).ok_or_else(overflow)?,
                    '-' => x.checked_sub(y).ok_or_else(overflow)?,
                    '*' => x.checked_mul(y).ok_or_else(overflow)?,
                    '/' | '%' if y == 0 => return Err("divides by zero".into()),
                    '/' => x.checked_div_euclid(y).ok_or_else(overflow)?,
                    _ => x.checked_rem_euclid(y).ok_or_else(overflow)?,
                }
            }
        })
    }
}

impl Dim {
    /// The dim a non-empty `dim_param` declares: a plain name, an integer literal (`"1"`, as
    /// exporters write a traced size), or an expression over names; text that is neither stays
    /// an opaque name.
    pub(crate) fn from_param(p: &str) -> Dim {
        let t = p.trim();
        if is_plain_name(t) {
            return Dim::Param(p.to_string());
        }
        match DimExpr::parse(t) {
            Some(DimExpr::Int(v)) if v >= 0 => Dim::Fixed(v as usize),
            Some(e) if !e.names().is_empty() => Dim::Expr(p.to_string(), e),
            Some(e) => match e.eval(&|_| 0) {
                Ok(v) if v >= 0 => Dim::Fixed(v as usize),
                _ => Dim::Param(p.to_string()),
            },
            None => Dim::Param(p.to_string()),
        }
    }
}

/// A linear form Σ cᵢ·nameᵢ + c over symbolic sizes: what [`DimExpr::linear`] reduces an
/// expression to when it has no product of names and no division, so that equal sizes written
/// differently (`a + b` and `b + a`, `(a + 1) - 1` and `a`) compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lin {
    /// Coefficient per name (never 0).
    pub terms: BTreeMap<String, i64>,
    /// The constant term.
    pub c: i64,
}

impl Lin {
    /// The constant `c`.
    pub fn int(c: i64) -> Lin {
        Lin {
            terms: BTreeMap::new(),
            c,
        }
    }

    /// The value when no name is left.
    pub fn constant(&self) -> Option<i64> {
        self.terms.is_empty().then_some(self.c)
    }

    /// `self + k·other` (checked).
    pub fn add_scaled(&self, other: &Lin, k: i64) -> Option<Lin> {
        let mut out = self.clone();
        for (n, &v) in &other.terms {
            let e = out.terms.entry(n.clone()).or_insert(0);
            *e = e.checked_add(v.checked_mul(k)?)?;
            if *e == 0 {
                out.terms.remove(n);
            }
        }
        out.c = out.c.checked_add(other.c.checked_mul(k)?)?;
        Some(out)
    }

    /// `k·self` (checked).
    pub fn scale(&self, k: i64) -> Option<Lin> {
        Lin::int(0).add_scaled(self, k)
    }

    /// The expression in canonical form: names in order, then the constant (`a + 2 * b - 1`).
    pub fn expr(&self) -> DimExpr {
        let mut e: Option<DimExpr> = None;
        // Positive parts first: `128 - total`, not `-(total) + 128`.
        let all = self
            .terms
            .iter()
            .map(|(n, &k)| (k, Some(n)))
            .chain((self.c != 0).then_some((self.c, None)));
        let (pos, neg): (Vec<_>, Vec<_>) = all.partition(|(k, _)| *k > 0);
        let parts = pos.into_iter().chain(neg);
        for (k, name) in parts {
            let size = |k: i64| match name {
                None => DimExpr::Int(k),
                Some(n) if k == 1 => DimExpr::Name(n.clone()),
                Some(n) => DimExpr::Bin(
                    '*',
                    Box::new(DimExpr::Int(k)),
                    Box::new(DimExpr::Name(n.clone())),
                ),
            };
            e = Some(match e {
                None if k < 0 => DimExpr::Neg(Box::new(size(k.saturating_neg()))),
                None => size(k),
                Some(e) if k < 0 => {
                    DimExpr::Bin('-', Box::new(e), Box::new(size(k.saturating_neg())))
                }
                Some(e) => DimExpr::Bin('+', Box::new(e), Box::new(size(k))),
            });
        }
        e.unwrap_or(DimExpr::Int(0))
    }
}

/// Expressions larger than this many nodes are not built (a size the graph computes in a long
/// chain of non-linear steps is treated as unknown).
const MAX_EXPR_NODES: usize = 256;

impl DimExpr {
    /// The linear form of the expression, when it has one.
    pub fn linear(&self) -> Option<Lin> {
        match self {
            DimExpr::Int(v) => Some(Lin::int(*v)),
            DimExpr::Name(n) => Some(Lin {
                terms: BTreeMap::from([(n.clone(), 1)]),
                c: 0,
            }),
            DimExpr::Neg(e) => e.linear()?.scale(-1),
            DimExpr::Bin(op, a, b) => {
                let (x, y) = (a.linear()?, b.linear()?);
                match op {
                    '+' => x.add_scaled(&y, 1),
                    '-' => x.add_scaled(&y, -1),
                    '*' => match (x.constant(), y.constant()) {
                        (Some(k), _) => y.scale(k),
                        (_, Some(k)) => x.scale(k),
                        _ => None,
                    },
                    '/' | '%' => {
                        let k = y.constant()?;
                        let v = x.constant()?;
                        (k != 0).then(|| {
                            Lin::int(if *op == '/' {
                                v.div_euclid(k)
                            } else {
                                v.rem_euclid(k)
                            })
                        })
                    }
                    _ => None,
                }
            }
        }
    }

    /// The value when the expression holds no name.
    pub fn constant(&self) -> Option<i64> {
        self.linear().and_then(|l| l.constant())
    }

    fn nodes(&self) -> usize {
        match self {
            DimExpr::Int(_) | DimExpr::Name(_) => 1,
            DimExpr::Neg(e) => 1 + e.nodes(),
            DimExpr::Bin(_, a, b) => 1 + a.nodes() + b.nodes(),
        }
    }

    /// `a op b`, reduced to canonical linear form when it has one; `None` when the result
    /// would be too large to be useful or a constant operation overflows or divides by zero.
    pub fn op(op: char, a: &DimExpr, b: &DimExpr) -> Option<DimExpr> {
        let e = DimExpr::Bin(op, Box::new(a.clone()), Box::new(b.clone()));
        if let Some(l) = e.linear() {
            return Some(l.expr());
        }
        if a.constant().is_some() && b.constant().is_some() {
            return None; // a constant division by zero
        }
        // Exact division of a linear form by a constant that divides every coefficient.
        if op == '/' {
            if let (Some(x), Some(k)) = (a.linear(), b.constant()) {
                if k > 0 && x.c % k == 0 && x.terms.values().all(|c| c % k == 0) {
                    let terms = x.terms.iter().map(|(n, c)| (n.clone(), c / k)).collect();
                    return Some(Lin { terms, c: x.c / k }.expr());
                }
            }
        }
        (e.nodes() <= MAX_EXPR_NODES).then_some(e)
    }

    /// Whether two expressions are the same size for every value of their names, as far as
    /// their linear forms (or their text) show.
    pub fn same(&self, other: &DimExpr) -> bool {
        match (self.linear(), other.linear()) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }
}

impl std::fmt::Display for DimExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DimExpr::Int(v) => write!(f, "{v}"),
            DimExpr::Name(n) => write!(f, "{n}"),
            DimExpr::Neg(e) => write!(f, "-({e})"),
            DimExpr::Bin(op, a, b) => {
                let sum = |e: &DimExpr| matches!(e, DimExpr::Bin('+' | '-', ..));
                let tight = matches!(op, '*' | '/' | '%');
                if tight && sum(a) {
                    write!(f, "({a})")?;
                } else {
                    write!(f, "{a}")?;
                }
                let sym = if *op == '/' {
                    "//".to_string()
                } else {
                    op.to_string()
                };
                if (tight || *op == '-') && matches!(**b, DimExpr::Bin(..)) {
                    write!(f, " {sym} ({b})")
                } else {
                    write!(f, " {sym} {b}")
                }
            }
        }
    }
}
