//! The sizes verification runs with: a size for every dynamic dimension (`--dim`, the graph's
//! hints, batch/other defaults) and, for KV-cache and merged decoders, the cases (empty and
//! filled cache, each branch) run one after the other.

use super::facts::{Fact, Rule};
use super::solve::{solve, Origin, Var};
use super::*;

/// Whether a symbolic dimension name looks like a batch axis.
pub(super) fn looks_like_batch(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    l.contains("batch") || matches!(l.as_str(), "n" | "b" | "bs" | "bsz" | "num_images")
}

/// Whether a symbolic dimension name looks like a sequence/length axis (never a batch default).
pub(super) fn looks_like_length(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    [
        "seq", "len", "token", "time", "pos", "past", "width", "height",
    ]
    .iter()
    .any(|k| l.contains(k))
}

/// Default batch size for a dynamic batch axis.
pub const DEFAULT_BATCH: usize = 2;
/// Default size for every other dynamic axis (sequence length, ...).
pub const DEFAULT_OTHER: usize = 8;
/// The past (cache) lengths a KV-cache model is verified at: an empty cache, then a filled one.
pub const PAST_LENGTHS: [usize; 2] = [0, 8];
/// The new-token length of the filled-cache case (differs from the past length, so that a
/// mask or position mix-up between the two shows).
pub const NEW_TOKENS: usize = 4;

/// One verification case: values for some dims and for the branch-selecting boolean inputs
/// (merged decoders), on top of the `--dim` values and defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CasePlan {
    /// Short name for tables: `past_sequence_length=8 sequence_length=4`, or `default`.
    pub label: String,
    /// Dim values of this case (never overriding a `--dim`).
    pub dims: BTreeMap<String, usize>,
    /// Values of boolean inputs that choose an `If` branch.
    pub flags: BTreeMap<String, bool>,
    /// Sizes the case prefers where the graph's facts accept them (the new tokens of a filled
    /// cache: a `GroupQueryAttention` on CPU takes one new token after a past at batch > 1).
    pub prefer: BTreeMap<String, usize>,
}

/// Every shape resolved for one case.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    /// One shape per input, in input order.
    pub shapes: Vec<Vec<usize>>,
    /// Every dynamic dim used: names, expressions (`a + b`) and `INPUT[AXIS]` keys.
    pub used: BTreeMap<String, usize>,
    /// Where each name's size came from (`--dim`, the case, a fact of the graph, a default).
    pub origins: BTreeMap<String, Origin>,
    /// Remarks: an opaque `dim_param` the verifier could only guess, a fact of the graph that
    /// the sizes break.
    pub notes: Vec<String>,
}

/// The default size of a dim named `name` seen at `axis` of a rank-`rank` input (`None` when only
/// seen inside expressions), and what kind of default it is.
pub(super) fn default_for(name: &str, at: Option<(usize, usize)>) -> (usize, &'static str) {
    let first_of_many = at.is_some_and(|(axis, rank)| axis == 0 && rank >= 2);
    if looks_like_batch(name) || (first_of_many && !looks_like_length(name)) {
        (DEFAULT_BATCH, "batch")
    } else {
        (DEFAULT_OTHER, "other")
    }
}

/// The names to size, in the order they first appear in the inputs: names of whole axes, then
/// names seen only inside expressions, then `INPUT[AXIS]` keys of axes with neither size nor
/// name.
fn vars_of(inputs: &[ValueSpec]) -> Vec<Var> {
    let mut vars: Vec<Var> = Vec::new();
    let push = |vars: &mut Vec<Var>, name: &str, at| {
        if !vars.iter().any(|v| v.name == name) {
            vars.push(Var {
                name: name.to_string(),
                at,
            });
        }
    };
    for i in inputs {
        let dims = i.dims.as_deref().unwrap_or_default();
        for (axis, d) in dims.iter().enumerate() {
            if let Dim::Param(p) = d {
                push(&mut vars, p, Some((axis, dims.len())));
            }
        }
    }
    for i in inputs {
        for d in i.dims.as_deref().unwrap_or_default() {
            if let Dim::Expr(_, e) = d {
                for n in e.names() {
                    push(&mut vars, n, None);
                }
            }
        }
    }
    for i in inputs {
        let dims = i.dims.as_deref().unwrap_or_default();
        for (axis, d) in dims.iter().enumerate() {
            if matches!(d, Dim::Unknown) {
                push(
                    &mut vars,
                    &format!("{}[{}]", i.name, axis),
                    Some((axis, dims.len())),
                );
            }
        }
    }
    vars
}

/// Resolve every input's shape for one case: fixed sizes as declared; every name one value
/// wherever it appears, from [`solve`]: its `--dim` (`overrides`) value, else the case's, else
/// what the graph's facts ([`ModelSpec::facts`]) determine, else a default (a batch-looking name,
/// or the first axis of a rank ≥ 2 input unless its name looks like a length, gets
/// [`DEFAULT_BATCH`]; everything else [`DEFAULT_OTHER`]) that the facts accept — raised to the
/// shortest length a Conv stack fits, or replaced by the first candidate they allow. An
/// expression (`past_sequence_length + sequence_length`) is computed from its names' values (a
/// `--dim` given for the whole expression text wins, and sizes its names where it can). An axis
/// with neither size nor name is keyed `INPUT[AXIS]` (settable the same way). An expression that
/// cannot be computed or comes out negative is an error naming it and the `--dim` flags that fix
/// it.
pub(crate) fn resolve_shapes(
    spec: &ModelSpec,
    overrides: &BTreeMap<String, usize>,
    case: &CasePlan,
) -> Result<Resolved, String> {
    let inputs = &spec.inputs;
    let vars = vars_of(inputs);
    let mut facts = spec.facts.clone();
    // A `--dim` for a whole expression sizes its names too.
    for i in inputs {
        for d in i.dims.as_deref().unwrap_or_default() {
            if let Dim::Expr(text, e) = d {
                if let Some(&v) = overrides.get(text) {
                    facts.push(Fact {
                        rule: Rule::Eq(e.clone(), DimExpr::Int(v as i64)),
                        source: format!("--dim '{text}={v}'"),
                        why: "the size given for the expression".into(),
                    });
                }
            }
        }
    }
    let unnamed: HashSet<String> = vars
        .iter()
        .filter(|v| {
            !inputs.iter().any(|i| {
                i.dims
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|d| matches!(d, Dim::Param(p) if *p == v.name))
            })
        })
        .filter(|v| v.name.ends_with(']'))
        .map(|v| v.name.clone())
        .collect();
    let default = |v: &Var| {
        if unnamed.contains(&v.name) {
            default_for("", v.at)
        } else {
            default_for(&v.name, v.at)
        }
    };
    let sol = solve(&vars, &facts, overrides, &case.dims, &case.prefer, &default);
    let values: BTreeMap<String, usize> = sol
        .values
        .iter()
        .map(|(k, (v, _))| (k.clone(), *v))
        .collect();
    let mut notes: Vec<String> = sol
        .broken
        .iter()
        .map(|b| format!("the chosen sizes break a fact of the graph: {b}"))
        .collect();
    for i in inputs {
        for d in i.dims.as_deref().unwrap_or_default() {
            if let Dim::Param(p) = d {
                if !is_plain_name(p.trim()) && !overrides.contains_key(p) {
                    let note = format!(
                        "dimension `{p}` of input `{}` is not an expression the verifier \
                         understands; it was given {} (set it with --dim '{p}=VALUE')",
                        i.name,
                        values.get(p).copied().unwrap_or(0)
                    );
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
    }
    let mut used: BTreeMap<String, usize> = vars
        .iter()
        .filter_map(|v| values.get(&v.name).map(|&x| (v.name.clone(), x)))
        .collect();
    let mut shapes = Vec::with_capacity(inputs.len());
    for i in inputs {
        let dims = i.dims.as_deref().unwrap_or_default();
        let mut shape = Vec::with_capacity(dims.len());
        for (axis, d) in dims.iter().enumerate() {
            let v = match d {
                Dim::Fixed(v) => *v,
                Dim::Param(p) => values.get(p).copied().unwrap_or(DEFAULT_OTHER),
                Dim::Unknown => values
                    .get(&format!("{}[{}]", i.name, axis))
                    .copied()
                    .unwrap_or(DEFAULT_OTHER),
                Dim::Expr(text, e) => match overrides.get(text) {
                    Some(&v) => {
                        used.insert(text.clone(), v);
                        v
                    }
                    None => {
                        let got = e.eval(&|n| values.get(n).map_or(0, |&v| v as i64));
                        let names: Vec<&str> = {
                            let mut n = e.names();
                            n.sort();
                            n.dedup();
                            n
                        };
                        let with = names
                            .iter()
                            .map(|n| format!("{n}={}", values.get(*n).copied().unwrap_or(0)))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let fix = names
                            .iter()
                            .map(|n| format!("--dim {n}=VALUE"))
                            .collect::<Vec<_>>()
                            .join(" ");
                        let why = match got {
                            Ok(v) if v >= 0 => match usize::try_from(v) {
                                Ok(v) => {
                                    used.insert(text.clone(), v);
                                    shape.push(v);
                                    continue;
                                }
                                Err(_) => "is too large".to_string(),
                            },
                            Ok(v) => format!("comes out negative ({v})"),
                            Err(e) => e,
                        };
                        return Err(format!(
                            "cannot choose the size of axis {axis} of input `{}`: `{text}` {why} \
                             with {with}; set {fix} (or --dim '{text}=VALUE')",
                            i.name
                        ));
                    }
                },
            };
            shape.push(v);
        }
        shapes.push(shape);
    }
    let origins = sol
        .values
        .into_iter()
        .filter(|(k, _)| used.contains_key(k))
        .map(|(k, (_, o))| (k, o))
        .collect();
    Ok(Resolved {
        shapes,
        used,
        origins,
        notes,
    })
}

/// Whether an input holds a past key/value cache: a float input named like `past_key_values.*`,
/// `past.*`, `*cache*` (not `use_cache*` / `cache_position`).
pub(crate) fn looks_like_cache_input(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    (l.starts_with("past") || l.contains("cache"))
        && !l.contains("use_cache")
        && !l.contains("position")
}

/// The past (cache) length names of a model: every dim name containing `past`, and the names
/// on the non-batch symbolic axes of cache inputs that are also summed in some expression
/// (`s1` of `s1 + s2`, as symbolic tracers name them).
pub(crate) fn past_names(spec: &ModelSpec) -> Vec<String> {
    let mut all: Vec<(&str, Option<&ValueSpec>)> = Vec::new();
    let mut summed: HashSet<&str> = HashSet::new();
    for v in spec.inputs.iter().chain(&spec.outputs) {
        let is_input = spec.inputs.iter().any(|i| std::ptr::eq(i, v));
        for d in v.dims.as_deref().unwrap_or_default() {
            match d {
                Dim::Param(p) => all.push((p, is_input.then_some(v))),
                Dim::Expr(_, e) => {
                    let s = e.summed_names();
                    if s.len() >= 2 {
                        summed.extend(s);
                    }
                    all.extend(e.names().into_iter().map(|n| (n, None)));
                }
                _ => {}
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for (n, input) in all {
        let by_name = n.to_ascii_lowercase().contains("past");
        let by_cache = input.is_some_and(|i| {
            super::super::tensor::is_float(i.elem_type)
                && looks_like_cache_input(&i.name)
                && !looks_like_batch(n)
                && i.dims
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .position(|d| matches!(d, Dim::Param(p) if p == n))
                    .is_some_and(|axis| axis > 0)
                && summed.contains(n)
        });
        if (by_name || by_cache) && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// The new-token length names: names summed with a past name in some expression
/// (`sequence_length` of `past_sequence_length + sequence_length`).
pub(super) fn new_token_names(spec: &ModelSpec, past: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in spec.inputs.iter().chain(&spec.outputs) {
        for d in v.dims.as_deref().unwrap_or_default() {
            if let Dim::Expr(_, e) = d {
                let s = e.summed_names();
                if s.iter().any(|n| past.iter().any(|p| p == n)) {
                    for n in s {
                        if !past.iter().any(|p| p == n)
                            && !looks_like_batch(n)
                            && !out.iter().any(|o| o == n)
                        {
                            out.push(n.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// The cases to verify `spec` in, with the user's `--dim` values `overrides`:
/// - a KV-cache model (it has past-length dims, [`past_names`]) at an empty cache
///   ([`PAST_LENGTHS`]`[0]`) and at a filled one ([`PAST_LENGTHS`]`[1]`, with [`NEW_TOKENS`] new
///   tokens), unless `--dim` sets every past length;
/// - a merged decoder (boolean inputs choosing an `If` branch, [`ModelSpec::branch_flags`]) with
///   those inputs false (and an empty cache) and true (and a filled one);
/// - any other model in one case.
pub(crate) fn plan_cases(spec: &ModelSpec, overrides: &BTreeMap<String, usize>) -> Vec<CasePlan> {
    let past: Vec<String> = past_names(spec)
        .into_iter()
        .filter(|n| !overrides.contains_key(n))
        .collect();
    let new_tokens: Vec<String> = new_token_names(spec, &past)
        .into_iter()
        .filter(|n| !overrides.contains_key(n))
        .collect();
    let flags = &spec.branch_flags;
    if past.is_empty() && flags.is_empty() {
        return vec![CasePlan {
            label: "default".into(),
            ..CasePlan::default()
        }];
    }
    let mut cases = Vec::new();
    for (k, &past_len) in PAST_LENGTHS.iter().enumerate() {
        let filled = k > 0;
        let mut c = CasePlan::default();
        for f in flags {
            c.flags.insert(f.clone(), filled);
        }
        for p in &past {
            c.dims.insert(p.clone(), past_len);
        }
        if filled {
            for n in &new_tokens {
                c.prefer.insert(n.clone(), NEW_TOKENS);
            }
        }
        let mut parts: Vec<String> = c.flags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut sized: Vec<(&String, &usize)> = c.dims.iter().chain(&c.prefer).collect();
        sized.sort();
        parts.extend(sized.iter().map(|(k, v)| format!("{k}={v}")));
        c.label = parts.join(" ");
        cases.push(c);
    }
    cases
}
