//! The rewrite report: JSON (`--report`) and a short human summary.

use serde::Serialize;
use std::fmt::Write;

/// How one leaf (source or writer) of a stream was centred.
#[derive(Clone, Debug, Serialize)]
pub struct LeafReport {
    /// The stream value it produces.
    pub value: String,
    /// embedding, linear, patch embedding, constant, embedding LayerNorm, explicit centering.
    pub kind: String,
    /// The node.
    pub node: String,
    /// What was done.
    pub how: String,
}

/// One norm that was rewritten.
#[derive(Clone, Debug, Serialize)]
pub struct NormReport {
    /// Node name.
    pub name: String,
    /// Form in the input.
    pub form_in: String,
    /// Form in the output.
    pub form_out: String,
    /// ε, copied.
    pub epsilon: f32,
    /// Nodes γ and β were folded into.
    pub folded_into: Vec<String>,
    /// Why γ/β stayed on the norm, when they did.
    pub kept_affine: Option<String>,
}

/// A norm left alone, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// Node name.
    pub norm: String,
    /// Its form.
    pub form: String,
    /// Why.
    pub why: String,
    /// The subgraph holding the norm (e.g. `If "/If" then_branch`), when not the main graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgraph: Option<String>,
}

/// One residual stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Stream number.
    pub id: usize,
    /// Width D.
    pub width: Option<usize>,
    /// Width after the rewrite (D−1 for CRMSNorm).
    pub new_width: Option<usize>,
    /// "rewritten" or "refused".
    pub status: String,
    /// Why it was refused.
    pub reasons: Vec<String>,
    /// Sources and writers, and how each was centred.
    pub leaves: Vec<LeafReport>,
    /// Norms rewritten.
    pub norms: Vec<NormReport>,
    /// Names of the norms reading the stream.
    pub norm_names: Vec<String>,
    /// The subgraph holding the stream (e.g. `If "/If" then_branch`), when not the main graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgraph: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Input file.
    pub model: String,
    /// rmsnorm or crmsnorm.
    pub target: String,
    /// standard or onnxruntime.
    pub emit: String,
    /// Norms found, by form.
    pub norms_found: Vec<(String, usize)>,
    /// Streams.
    pub streams: Vec<StreamReport>,
    /// Norms left alone.
    pub refusals: Vec<Refusal>,
    /// Norms rewritten.
    pub norms_rewritten: usize,
    /// Explicit centering nodes added.
    pub centering_nodes: usize,
    /// Bytes of new initializers (untied copies, new biases).
    pub bytes_added: usize,
    /// Op counts before and after.
    pub ops_before: std::collections::BTreeMap<String, usize>,
    /// Op counts after the rewrite.
    pub ops_after: std::collections::BTreeMap<String, usize>,
    /// Verification table, when run.
    pub verification: Option<serde_json::Value>,
    /// `inspect` of a model this tool rewrote: what its metadata records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten_by: Option<crate::provenance::Provenance>,
    /// Remarks on the input (e.g. nodes sorted into topological order on load).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// " in If \"/If\" then_branch" for a subgraph, "" for the main graph.
fn in_subgraph(s: &Option<String>) -> String {
    s.as_ref().map(|s| format!(" in {s}")).unwrap_or_default()
}

impl Report {
    /// A few lines for stderr.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for st in &self.streams {
            let w = st.width.map(|w| w.to_string()).unwrap_or("?".into());
            let nw = match (st.width, st.new_width) {
                (Some(a), Some(b)) if a != b => format!(" -> {b}"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "stream {}{} (width {w}{nw}): {}, {} norms, {} sources/writers",
                st.id,
                in_subgraph(&st.subgraph),
                st.status,
                st.norm_names.len(),
                st.leaves.len()
            );
            for r in &st.reasons {
                let _ = writeln!(s, "  refused: {r}");
            }
            for n in &st.norms {
                if let Some(why) = n
                    .kept_affine
                    .as_deref()
                    .filter(|w| *w != "folding disabled")
                {
                    let _ = writeln!(s, "  γ/β not folded on {:?}: {why}", n.name);
                }
            }
        }
        let _ = writeln!(
            s,
            "{} norm(s) rewritten, {} left alone, {} explicit centering node(s), {} bytes added",
            self.norms_rewritten,
            self.refusals.len(),
            self.centering_nodes,
            self.bytes_added
        );
        for r in &self.refusals {
            let _ = writeln!(
                s,
                "  left alone: {}{} ({}): {}",
                r.norm,
                in_subgraph(&r.subgraph),
                r.form,
                r.why
            );
        }
        s
    }

    /// The human form of `inspect`: streams, their norms, leaves and what would be done.
    pub fn inspect_text(&self) -> String {
        let r = self;
        use std::fmt::Write;
        let mut s = String::new();
        if let Some(p) = &r.rewritten_by {
            let _ = writeln!(s, "{}: rewritten by {}", r.model, p.describe());
        }
        let found: Vec<String> = r
            .norms_found
            .iter()
            .map(|(f, n)| format!("{n} x {f}"))
            .collect();
        let _ = writeln!(
            s,
            "{}: {}",
            r.model,
            if found.is_empty() {
                "no normalisation found".into()
            } else {
                found.join(", ")
            }
        );
        for st in &r.streams {
            let _ = writeln!(
                s,
                "stream {}{} width {}: {}",
                st.id,
                in_subgraph(&st.subgraph),
                st.width.map(|w| w.to_string()).unwrap_or("?".into()),
                st.status
            );
            for why in &st.reasons {
                let _ = writeln!(s, "  refused: {why}");
            }
            let _ = writeln!(s, "  norms: {}", st.norm_names.join(", "));
            for l in &st.leaves {
                let _ = writeln!(s, "  {} {} ({}): {}", l.kind, l.value, l.node, l.how);
            }
            for n in &st.norms {
                let fold = if n.folded_into.is_empty() {
                    format!(
                        "affine kept{}",
                        n.kept_affine
                            .as_ref()
                            .map(|k| format!(" ({k})"))
                            .unwrap_or_default()
                    )
                } else {
                    format!("γ/β folded into {}", n.folded_into.join(", "))
                };
                let _ = writeln!(
                    s,
                    "  rewrite {} [{} -> {}, eps {:e}]: {fold}",
                    n.name, n.form_in, n.form_out, n.epsilon
                );
            }
        }
        for rf in &r.refusals {
            let _ = writeln!(
                s,
                "left alone: {}{} ({}): {}",
                rf.norm,
                in_subgraph(&rf.subgraph),
                rf.form,
                rf.why
            );
        }
        let _ = writeln!(
            s,
            "would rewrite {} norm(s), add {} centering node(s) and {} bytes",
            r.norms_rewritten, r.centering_nodes, r.bytes_added
        );
        s
    }
}
