//! A picture of the residual streams: Graphviz DOT of what the rewrite does (or would do) to
//! each stream — its sources and writers, its norms, and the readers γ/β fold into — coloured
//! by what happens to each (rewritten, centred, folded, explicit centering, precomputed,
//! refused, with why in the label).
//! (One file, though over 600 lines with its tests: building the picture, collapsing repeated
//! blocks and writing DOT share one node model and are read together.)
//!
//! Repeated blocks collapse: a node name is normalised by replacing every path component that is
//! a number (`/h.0/`, `/layers.11/`, `.h.3.` → `N`), nodes with the same normalised name and
//! fate become one node "× k", and the nodes of one block (`/h.N`) sit in one cluster
//! "/h.N × 12". A 12-layer model draws as one block.
//!
//! Input is the [`Report`] (as from `passes::inspect`) and a function giving each node's display
//! name (dynamo exports name nodes `node_layer_norm_4`; their module path is in the node's
//! `namespace` metadata, see [`display_names`]).

use crate::ir::Graph;
use crate::passes::report::{LeafKind, Report, StreamStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// What happened to an element, and its fill colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// A norm turned into RMSNorm / CRMSNorm.
    Rewritten,
    /// A source or writer whose weights are centred.
    Centred,
    /// A linear reader γ/β were folded into.
    Folded,
    /// An explicit `x − mean(x)` node added.
    Explicit,
    /// An embedding LayerNorm precomputed into its table.
    Precomputed,
    /// Left alone.
    Refused,
}

impl Fate {
    fn colour(self) -> &'static str {
        match self {
            Fate::Rewritten => "#95d5b2",
            Fate::Centred => "#d8f3dc",
            Fate::Folded => "#bde0fe",
            Fate::Explicit => "#ffd6a5",
            Fate::Precomputed => "#f1e3a0",
            Fate::Refused => "#ffadad",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Fate::Rewritten => "rewritten",
            Fate::Centred => "centred",
            Fate::Folded => "γ/β folded in",
            Fate::Explicit => "explicit centering",
            Fate::Precomputed => "precomputed",
            Fate::Refused => "refused",
        }
    }
}

/// Display names from the graph: a node with a `namespace` metadata entry (torch.onnx dynamo
/// exports) shows as its module path and op (`m.transformer.h.0.ln_1/layer_norm`), any other
/// node as its name.
pub fn display_names(g: &Graph) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in g.nodes() {
        let Some(name) = n.name.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let ns = n
            .metadata_props
            .iter()
            .find(|e| e.key.as_deref() == Some("namespace"))
            .and_then(|e| e.value.as_deref());
        if let Some(ns) = ns {
            // ": Root/m: Class/m.transformer: Class/.../layer_norm: aten.layer_norm.default"
            let parts: Vec<&str> = ns
                .split('/')
                .map(|p| p.split(':').next().unwrap_or("").trim())
                .filter(|p| !p.is_empty())
                .collect();
            if let [.., module, op] = parts.as_slice() {
                out.insert(name.to_string(), format!("{module}/{op}"));
            }
        }
    }
    out
}

/// `name` with every number component (between `/` or `.`) replaced by `N`, except in the
/// last `/` segment (the op's own name); and the numbers replaced, in order.
pub fn normalise(name: &str) -> (String, Vec<String>) {
    let segs: Vec<&str> = name.split('/').collect();
    let mut idx = vec![];
    let mut out = vec![];
    for (i, seg) in segs.iter().enumerate() {
        if i + 1 == segs.len() && segs.len() > 1 {
            out.push(seg.to_string());
            continue;
        }
        let comps: Vec<String> = seg
            .split('.')
            .map(|c| {
                if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) {
                    idx.push(c.to_string());
                    "N".to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        out.push(comps.join("."));
    }
    (out.join("/"), idx)
}

/// The block of a normalised name: its prefix up to the first `N` component (`/m/h.N`), if any.
fn block_of(norm: &str) -> Option<String> {
    let mut acc = String::new();
    for (i, seg) in norm.split('/').enumerate() {
        if i > 0 {
            acc.push('/');
        }
        let mut comps = vec![];
        for c in seg.split('.') {
            comps.push(c);
            if c == "N" {
                acc.push_str(&comps.join("."));
                return Some(acc);
            }
        }
        acc.push_str(seg);
    }
    None
}

/// Escape for a DOT double-quoted string; lines joined with `\n`.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// `s` wrapped at spaces to lines of about `w` characters, escaped, joined with `\n`.
fn wrap(s: &str, w: usize) -> String {
    let mut lines: Vec<String> = vec![];
    let mut cur = String::new();
    for word in s.split(' ') {
        if !cur.is_empty() && cur.chars().count() + word.chars().count() + 1 > w {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines.iter().map(|l| esc(l)).collect::<Vec<_>>().join("\\n")
}

/// An end of an edge: a stream's hub or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Hub(usize),
    Group(usize),
}

/// One drawn node: all elements of a stream with the same role, normalised name and fate.
#[derive(Default)]
struct Group {
    id: String,
    fate: Option<Fate>,
    role: &'static str,
    name: String,
    block: Option<String>,
    count: usize,
    notes: BTreeSet<String>,
}

struct Builder<'a> {
    names: &'a dyn Fn(&str) -> String,
    groups: Vec<Group>,
    by_key: BTreeMap<(usize, &'static str, String, Fate), usize>,
    block_idx: BTreeMap<(usize, String), BTreeSet<Vec<String>>>,
    edges: BTreeMap<(End, End), usize>,
}

impl Builder<'_> {
    /// The group of element `node` (a node name) in stream `sid`.
    fn add(&mut self, sid: usize, role: &'static str, node: &str, fate: Fate, note: &str) -> usize {
        let shown = (self.names)(node);
        let (norm, idx) = normalise(&shown);
        let block = block_of(&norm);
        if let Some(b) = &block {
            self.block_idx
                .entry((sid, b.clone()))
                .or_default()
                .insert(idx.clone());
        }
        let key = (sid, role, norm.clone(), fate);
        let gi = match self.by_key.get(&key) {
            Some(&g) => g,
            None => {
                self.groups.push(Group {
                    id: format!("n{}", self.groups.len()),
                    fate: Some(fate),
                    role,
                    name: norm,
                    block,
                    ..Default::default()
                });
                self.by_key.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[gi];
        g.count += 1;
        if !note.is_empty() {
            g.notes.insert(note.to_string());
        }
        gi
    }
    fn edge(&mut self, a: End, b: End) {
        *self.edges.entry((a, b)).or_insert(0) += 1;
    }
}

/// The DOT text. `names` maps a node name to the name shown (see [`display_names`]); `title`
/// heads the picture.
pub fn streams_dot(report: &Report, names: &dyn Fn(&str) -> String, title: &str) -> String {
    let mut b = Builder {
        names,
        groups: vec![],
        by_key: BTreeMap::new(),
        block_idx: BTreeMap::new(),
        edges: BTreeMap::new(),
    };
    // Hubs: one node per stream (index = stream position), then the elements.
    let mut hubs: Vec<(String, String, Fate)> = vec![];
    let mut stream_groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let refused_norm: BTreeMap<&str, String> = report
        .refusals
        .iter()
        .map(|r| (r.norm.as_str(), r.why.to_string()))
        .collect();
    for (si, st) in report.streams.iter().enumerate() {
        let refused = st.status == StreamStatus::Refused;
        let precomputed = st.status == StreamStatus::Precomputed;
        let width = match (st.width, st.new_width) {
            (Some(a), Some(n)) if a != n => format!("width {a} → {n}"),
            (Some(a), _) => format!("width {a}"),
            _ => "width ?".into(),
        };
        let mut label = format!(
            "residual stream {}\\n{}\\n{}",
            st.id,
            esc(&width),
            esc(&st.status.to_string())
        );
        for r in &st.reasons {
            let _ = write!(label, "\\n{}", wrap(&r.to_string(), 56));
        }
        let fate = if refused {
            Fate::Refused
        } else if precomputed {
            Fate::Precomputed
        } else {
            Fate::Rewritten
        };
        hubs.push((format!("s{si}"), label, fate));
        let mut mine = vec![];
        for l in &st.leaves {
            let fate = if refused {
                Fate::Refused
            } else if l.kind == LeafKind::ExplicitCentering {
                Fate::Explicit
            } else if l.kind == LeafKind::EmbeddingLayerNorm {
                Fate::Precomputed
            } else {
                Fate::Centred
            };
            let role = if l.kind == LeafKind::ExplicitCentering {
                "explicit centering"
            } else {
                "source/writer"
            };
            let node = if l.node.is_empty() { &l.value } else { &l.node };
            let note = if refused {
                String::new()
            } else {
                format!("{}: {}", l.kind, l.how)
            };
            let gi = b.add(si, role, node, fate, &note);
            b.edge(End::Group(gi), End::Hub(si));
            mine.push(gi);
        }
        let rewritten: BTreeMap<&str, _> = st.norms.iter().map(|n| (n.name.as_str(), n)).collect();
        for name in &st.norm_names {
            let (fate, note) = match (
                rewritten.get(name.as_str()),
                refused_norm.get(name.as_str()),
            ) {
                (Some(n), _) => {
                    let mut note = format!("{} → {}, ε={:e}", n.form_in, n.form_out, n.epsilon);
                    if n.folded_into.is_empty() {
                        if let Some(k) = &n.kept_affine {
                            let _ = write!(note, "; γ/β kept: {k}");
                        }
                    }
                    (Fate::Rewritten, note)
                }
                (None, Some(why)) if !refused => (Fate::Refused, why.to_string()),
                (None, _) if precomputed => (Fate::Precomputed, String::new()),
                (None, _) if refused => (Fate::Refused, String::new()),
                (None, _) => (
                    Fate::Precomputed,
                    "precomputed into its embedding table".into(),
                ),
            };
            let gi = b.add(si, "norm", name, fate, &note);
            b.edge(End::Hub(si), End::Group(gi));
            mine.push(gi);
            if let Some(n) = rewritten.get(name.as_str()) {
                for r in &n.folded_into {
                    let ri = b.add(si, "reader", r, Fate::Folded, "");
                    b.edge(End::Group(gi), End::Group(ri));
                    mine.push(ri);
                }
            }
        }
        stream_groups.insert(si, mine);
    }
    // Norm-like patterns that did not match any form: outside the streams.
    let in_streams: BTreeSet<&str> = report
        .streams
        .iter()
        .flat_map(|s| s.norm_names.iter().map(String::as_str))
        .collect();
    let mut loose = vec![];
    for r in &report.refusals {
        if !in_streams.contains(r.norm.as_str()) && r.norm != "-" {
            loose.push(b.add(
                usize::MAX,
                "unmatched",
                &r.norm,
                Fate::Refused,
                &r.why.to_string(),
            ));
        }
    }

    let mut s = String::new();
    let _ = writeln!(s, "digraph streams {{");
    let _ = writeln!(
        s,
        "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11, labelloc=t, label=\"{}\"];",
        wrap(title, 90)
    );
    let _ = writeln!(
        s,
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];"
    );
    let _ = writeln!(s, "  edge [color=\"#555555\"];");
    let node_line = |g: &Group| -> String {
        let fate = g.fate.unwrap_or(Fate::Refused);
        let times = if g.count > 1 {
            format!(" × {}", g.count)
        } else {
            String::new()
        };
        let mut label = format!("{}{}\\n{}", wrap(&g.name, 48), esc(&times), esc(g.role));
        let notes: Vec<&String> = g.notes.iter().collect();
        match notes.as_slice() {
            [] => {
                let _ = write!(label, "\\n{}", esc(fate.word()));
            }
            [one] => {
                let _ = write!(label, "\\n{}", wrap(one, 56));
            }
            [first, rest @ ..] => {
                let _ = write!(label, "\\n{}\\n(+{} other)", wrap(first, 56), rest.len());
            }
        }
        let shape = if g.role == "norm" {
            ", shape=ellipse"
        } else {
            ""
        };
        format!(
            "\"{}\" [label=\"{}\", fillcolor=\"{}\"{}];",
            g.id,
            label,
            fate.colour(),
            shape
        )
    };
    for (si, (id, label, fate)) in hubs.iter().enumerate() {
        let _ = writeln!(s, "  subgraph \"cluster_s{si}\" {{");
        let _ = writeln!(s, "    label=\"\"; style=dashed; color=\"#999999\";");
        let _ = writeln!(
            s,
            "    \"{id}\" [label=\"{label}\", shape=box, style=\"filled,bold\", fillcolor=\"{}\"];",
            fate.colour()
        );
        let mine = stream_groups.get(&si).cloned().unwrap_or_default();
        let mut blocks: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for &gi in &mine {
            if !seen.insert(gi) {
                continue;
            }
            match &b.groups[gi].block {
                Some(bl) => blocks.entry(bl.clone()).or_default().push(gi),
                None => {
                    let _ = writeln!(s, "    {}", node_line(&b.groups[gi]));
                }
            }
        }
        for (bi, (bl, gs)) in blocks.iter().enumerate() {
            let k = b.block_idx.get(&(si, bl.clone())).map_or(0, |v| v.len());
            let _ = writeln!(s, "    subgraph \"cluster_s{si}_b{bi}\" {{");
            let _ = writeln!(
                s,
                "      label=\"{}{}\"; style=\"rounded\"; color=\"#4a4e69\";",
                esc(bl),
                esc(&if k > 1 {
                    format!(" × {k}")
                } else {
                    String::new()
                })
            );
            for &gi in gs {
                let _ = writeln!(s, "      {}", node_line(&b.groups[gi]));
            }
            let _ = writeln!(s, "    }}");
        }
        let _ = writeln!(s, "  }}");
    }
    if !loose.is_empty() {
        let _ = writeln!(s, "  subgraph \"cluster_unmatched\" {{");
        let _ = writeln!(
            s,
            "    label=\"LayerNorm-like patterns not matched\"; style=dashed;"
        );
        let done: BTreeSet<usize> = loose.iter().copied().collect();
        for gi in done {
            let _ = writeln!(s, "    {}", node_line(&b.groups[gi]));
        }
        let _ = writeln!(s, "  }}");
    }
    for (&(a, c), &n) in &b.edges {
        let label = if n > 1 {
            format!(" [label=\"× {n}\"]")
        } else {
            String::new()
        };
        let name = |x: End| -> String {
            match x {
                End::Hub(si) => format!("s{si}"),
                End::Group(gi) => b.groups[gi].id.clone(),
            }
        };
        let (from, to) = (name(a), name(c));
        let _ = writeln!(s, "  \"{from}\" -> \"{to}\"{label};");
    }
    // Legend.
    let _ = writeln!(s, "  subgraph \"cluster_legend\" {{");
    let _ = writeln!(s, "    label=\"legend\"; style=dashed; color=\"#bbbbbb\";");
    for (i, f) in [
        Fate::Rewritten,
        Fate::Centred,
        Fate::Folded,
        Fate::Explicit,
        Fate::Precomputed,
        Fate::Refused,
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            s,
            "    \"legend{i}\" [label=\"{}\", fillcolor=\"{}\"];",
            esc(f.word()),
            f.colour()
        );
    }
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// DOT well-formedness without graphviz: a digraph, strings closed (no raw newline inside),
/// braces balanced outside strings.
pub fn check_syntax(s: &str) -> Result<(), String> {
    let (mut depth, mut in_str, mut escape) = (0i64, false, false);
    for (i, c) in s.char_indices() {
        if in_str {
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                in_str = false;
            } else if c == '\n' {
                return Err(format!("raw newline in a string at byte {i}"));
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced '}}' at byte {i}"));
                }
            }
            _ => {}
        }
    }
    if in_str {
        return Err("unterminated string".into());
    }
    if depth != 0 {
        return Err(format!("{depth} unclosed brace(s)"));
    }
    if !s.trim_start().starts_with("digraph") {
        return Err("not a digraph".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::report::{
        Centring, LeafReport, LeftAlone, NormReport, Refusal, StreamReport, Why,
    };

    fn report(layers: usize, nasty: &str) -> Report {
        let observed = Refusal::ObservedBy {
            value: "v".into(),
            reader: nasty.into(),
        };
        let mut leaves = vec![LeafReport {
            value: "emb".into(),
            kind: LeafKind::Embedding,
            node: "/m/wte/Gather".into(),
            how: Centring::Table,
        }];
        let mut norms = vec![];
        let mut names = vec![];
        for l in 0..layers {
            leaves.push(LeafReport {
                value: format!("w{l}"),
                kind: LeafKind::Linear,
                node: format!("/m/h.{l}/attn/c_proj/MatMul"),
                how: Centring::Linear {
                    gemm_trans_b: None,
                    layer_scale: None,
                },
            });
            let n = format!("/m/h.{l}/ln_1/LayerNormalization");
            names.push(n.clone());
            norms.push(NormReport {
                name: n,
                form_in: "LayerNormalization".into(),
                form_out: "RMSNormalization".into(),
                epsilon: 1e-5,
                folded_into: vec![format!("/m/h.{l}/attn/c_attn/MatMul")],
                kept_affine: None,
                norm: l,
            });
        }
        Report {
            streams: vec![
                StreamReport {
                    id: 0,
                    width: Some(768),
                    new_width: Some(768),
                    status: StreamStatus::Rewritten,
                    reasons: vec![],
                    leaves,
                    norms,
                    norm_names: names,
                    subgraph: None,
                },
                StreamReport {
                    id: 1,
                    width: None,
                    new_width: None,
                    status: StreamStatus::Refused,
                    reasons: vec![observed.clone()],
                    leaves: vec![],
                    norms: vec![],
                    norm_names: vec![nasty.to_string()],
                    subgraph: None,
                },
            ],
            refusals: vec![LeftAlone {
                norm: nasty.into(),
                form: "LayerNormalization".into(),
                why: Why::Stream(vec![observed]),
                subgraph: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn normalise_layer_indices() {
        assert_eq!(
            normalise("/m/transformer/h.11/ln_1/LayerNormalization").0,
            "/m/transformer/h.N/ln_1/LayerNormalization"
        );
        assert_eq!(
            normalise("m.transformer.h.3.ln_2/layer_norm").0,
            "m.transformer.h.N.ln_2/layer_norm"
        );
        assert_eq!(normalise("node_layer_norm_4").0, "node_layer_norm_4");
        assert_eq!(normalise("/a/Add.3").0, "/a/Add.3");
        assert_eq!(block_of("/m/h.N/ln_1/X").as_deref(), Some("/m/h.N"));
        assert_eq!(block_of("m.h.N.ln_1/x").as_deref(), Some("m.h.N"));
        assert_eq!(block_of("/m/ln_f/X"), None);
    }

    #[test]
    fn twelve_layers_collapse_and_the_text_is_valid_dot() {
        let nasty = "x\"}{\\n\ty";
        let r = report(12, nasty);
        let dot = streams_dot(&r, &|n| n.to_string(), "gpt2 \"12\" layers");
        check_syntax(&dot).unwrap_or_else(|e| panic!("{e}\n{dot}"));
        assert!(dot.contains("/m/h.N × 12"), "{dot}");
        assert!(dot.contains("/m/h.N/ln_1/LayerNormalization × 12"), "{dot}");
        // Small: 12 layers draw as a handful of nodes.
        let nodes = dot
            .lines()
            .filter(|l| l.contains("[label=") && !l.contains("->"))
            .count();
        assert!(nodes <= 16, "{nodes} nodes:\n{dot}");
        let one = streams_dot(&report(1, "y"), &|n| n.to_string(), "t");
        assert_eq!(
            one.lines()
                .filter(|l| l.contains("[label=") && !l.contains("->"))
                .count(),
            nodes,
            "one layer and twelve draw the same nodes"
        );
        // The refusal reason is in a label.
        assert!(dot.contains("read by x\\\"}{"), "{dot}");
        assert!(check_syntax("digraph { \"a\" -> \"b }").is_err());
        assert!(check_syntax("digraph { { }").is_err());
    }
}
