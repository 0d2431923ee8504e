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
