//! The driver's soundness check: a patch must change something a reader sees.
//!
//! A patch that changes nothing any node or graph output reads is not a rewrite but a sign that
//! the analysis and the graph disagree (onnxruntime's level-99 ViT: a centring of the patch
//! embedding "for 0 stream-side reads" while a Concat still read the raw value, because shape
//! inference had stopped at the `com.microsoft.nchwc` ops). The driver asks [`idle`] before
//! each patch and stops with an internal error instead of writing such a model.

use super::patch::{Patch, PatchKind};
use crate::ir::{Graph, NodeExt};

/// Why patch `p` would change nothing any reader of `g` sees, if it would not.
pub(super) fn idle(g: &Graph, p: &Patch) -> Option<String> {
    // Whether any node or graph output reads `v` (asked for rare patches only).
    let reads = |v: &str| {
        g.nodes().iter().any(|n| n.input.iter().any(|i| i == v))
            || g.outputs().iter().any(|o| o.name.as_deref() == Some(v))
    };
    match &p.kind {
        PatchKind::Center { value, edges, .. } => {
            if edges.is_empty() {
                return Some(format!("no stream-side read of {value:?} to re-point"));
            }
            let live = edges.iter().any(|&(node, slot)| {
                g.nodes()
                    .get(node)
                    .and_then(|n| n.input(slot))
                    .is_some_and(|i| i == value)
            });
            (!live).then(|| format!("none of its reads still reads {value:?}"))
        }
        PatchKind::EditConstant { node, slot, edits } => {
            if edits.is_empty() {
                return Some("no edit".into());
            }
            // The node reads it: a reader sees the edit.
            match g.nodes().get(*node).and_then(|n| n.input(*slot)) {
                None => Some(format!("node {node} has no input {slot}")),
                Some(_) => None,
            }
        }
        PatchKind::FixSizes { node, slot, delta } => {
            if delta.iter().all(|&d| d == 0) {
                return Some("it adds nothing".into());
            }
            g.nodes()
                .get(*node)
                .and_then(|n| n.input(*slot))
                .is_none()
                .then(|| format!("node {node} has no input {slot}"))
        }
        PatchKind::FixShape { node, .. } => match g.nodes().get(*node).and_then(|n| n.out(0)) {
            Some(o) if reads(o) => None,
            _ => Some("nothing reads the Shape's result".into()),
        },
        _ => None,
    }
}
