//! Streams inside subgraphs: If branches, Loop and Scan bodies (recursively).
//!
//! After the flat pass has run on a graph, each body held by its nodes is rewritten as a graph of
//! its own, a *view*, by the whole pass (the caller's, [`super::run`]: nested bodies are handled
//! the same way), and put back:
//! - the view is the body plus what it reads from the enclosing scope: outer constants
//!   (initializers, Constant outputs) become initializers of the view under their own names;
//!   other outer values (graph inputs, node outputs) become graph inputs of the view with their
//!   declared type when one is known;
//! - a stream that crosses the boundary is handled by the rules of the flat pass, which are
//!   exact here: a body output is a graph output of the view (a raw stream value there
//!   observes the mean: the stream is refused, and the report names the body); an outer value
//!   the body reads is an input of the view (the stream gets an explicit centring node inside
//!   the body; the outer value itself is not changed). So no value outside the body changes
//!   (width included, under CRMSNorm) except the outer constants below;
//! - an outer initializer the bodies edit gets one consistent edit. Readers are the bodies that
//!   read it and the enclosing graph itself. When no reader keeps the old value (the enclosing
//!   graph reads it directly, or a body reads it unchanged), the edit shared by the largest group
//!   of bodies whose edits are equal replaces the initializer in place — Optimum's merged
//!   decoder, whose two branches are the same decoder, makes the same edits in both and does not
//!   grow. Every other group of equal edits gets its own copy under a fresh name (copy on
//!   write; the bytes are added to the report). Outer constants that are not initializers of the
//!   enclosing graph (Constant nodes, Identity aliases) are always copied when edited;
//! - equality of two edits is decided on the values: the tensors' dims, type and bytes, with
//!   write-time edits (`Graph::pending`, passes/edit.rs) materialised one tensor at a time and
//!   compared byte for byte. Nothing is assumed from the shape of the edit;
//! - write-time edits live in the top-level graph only (the writer computes them there): a
//!   pending tensor of a body is moved to the enclosing graph (a body sees its outer scope), and
//!   from there further up when that graph is itself a view.
//!
//! Putting the bodies back is named patches, decided here ([`reconcile`]) and applied by the
//! one driver after the bodies' own patches: one per edited outer constant (in place or a copy),
//! one per body, one that drops the outer initializers no body reads any more. So
//! `--check-patches` checks each, and `--stop-after` can stop among them (a body not put back
//! stays as it was in the input).

use super::api::{Options, Outcome, PatchLog};
use super::report::build::merge_bodies;
use super::report::Report;
use super::rewrite::{drive, DriveOptions, Patch, PatchKind};
use crate::ir::subgraph::{outer_reads_of, BodyRef};
use crate::ir::{Graph, Model};
use crate::proto::{GraphProto, TensorProto, ValueInfoProto};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// What a view took from the enclosing scope.
#[derive(Debug, Default)]
struct Imports {
    /// Outer constants, as they were (name → tensor).
    constants: BTreeMap<String, TensorProto>,
    /// Those of them that are initializers of the enclosing graph (editable in place).
    initializers: BTreeSet<String>,
    /// Outer values read as graph inputs of the view.
    inputs: BTreeSet<String>,
}

/// A body after the pass ran on its view.
struct Done {
    body: BodyRef,
    label: String,
    imports: Imports,
    view: Model,
    report: Report,
}

/// What one body did to one outer constant.
enum Status {
    /// Still read, unchanged.
    Kept,
    /// Edited (its tensor in the view, possibly pending).
    Edited,
}

/// The whole pass on one graph and its bodies ([`super::run`]), as [`rewrite_bodies`] runs it
/// on each view.
pub(crate) type Pass<'a> = &'a dyn Fn(Model, &Options) -> Result<Outcome>;

/// Rewrite the streams inside the bodies of `out.model`'s graph (after the flat pass ran on it)
/// with `pass`, and merge what was done into the report.
pub(crate) fn rewrite_bodies(out: Outcome, opts: &Options, pass: Pass) -> Result<Outcome> {
    let Outcome {
        mut model,
        mut report,
        mut patches,
    } = out;
    let bodies = model.graph.bodies();
    if bodies.is_empty() {
        return Ok(Outcome {
            model,
            report,
            patches,
        });
    }
    // The bodies are still as in the input (the flat pass does not touch them).
    let mut ops_in_bodies = BTreeMap::new();
    for (r, _) in &bodies {
        if let Some(b) = model.graph.body(r) {
            crate::ir::subgraph::deep_histogram(&b.node, &mut ops_in_bodies);
        }
    }
    let mut reserved: Vec<String> = model.graph.taken_names().iter().cloned().collect();
    let mut done: Vec<Done> = Vec::new();
    for (r, label) in bodies {
        let body = model
            .graph
            .body(&r)
            .ok_or_else(|| Error::Internal(format!("{label}: body vanished")))?
            .clone();
        let (view, imports) = view_of(&model, &body, &reserved, &label)?;
        // The patch budget (--stop-after) is shared with the enclosing graph; the log names
        // the body.
        let body_opts = Options {
            stop_after: opts.stop_after.map(|n| n.saturating_sub(patches)),
            patch_log: opts.patch_log.as_ref().map(|l| {
                let (l, label) = (l.0.clone(), label.clone());
                PatchLog(std::sync::Arc::new(move |p: &str| {
                    l(&format!("in {label}: {p}"))
                }))
            }),
            ..opts.clone()
        };
        let res = pass(view, &body_opts).map_err(|e| in_body(e, &label))?;
        patches += res.patches;
        let mut view = res.model;
        reserved.extend(view.graph.taken_names().iter().cloned());
        done.push(Done {
            body: r,
            label,
            imports,
            view,
            report: res.report,
        });
    }
    // Names taken inside the bodies are not fresh in the enclosing graph (name bookkeeping, no
    // edit of the graph).
    model.graph.reserve_names(reserved.iter());
    let reconciled = reconcile(&model, &done)?;
    let applied = drive(&mut model, &reconciled, &DriveOptions::of(opts, patches))?;
    patches += applied.patches;
    let ops_after = model.graph.deep_histogram();
    merge_bodies(
        &mut report,
        ops_in_bodies,
        done.iter().map(|d| (d.label.as_str(), &d.report)),
        &applied,
        ops_after,
    );
    Ok(Outcome {
        model,
        report,
        patches,
    })
}

/// Add the body's label to an error of the pass inside it.
fn in_body(e: Error, label: &str) -> Error {
    match e {
        Error::Internal(m) => Error::Internal(format!("in {label}: {m}")),
        Error::NotRewritable(m) => Error::NotRewritable(format!("in {label}: {m}")),
        Error::Invalid { path, reason } => Error::Invalid {
            path,
            reason: format!("in {label}: {reason}"),
        },
        e => e,
    }
}

/// The standalone model of one body: the body, the outer constants it reads as initializers,
/// the other outer values it reads as inputs. Names in `reserved` are never made fresh in it.
fn view_of(
    model: &Model,
    body: &GraphProto,
    reserved: &[String],
    label: &str,
) -> Result<(Model, Imports)> {
    let g = &model.graph;
    let mut imports = Imports::default();
    let mut graph = Graph::from_proto(body.clone());
    for name in outer_reads_of(body) {
        let is_input = g.inputs().iter().any(|v| v.name.as_deref() == Some(&name));
        let constant = if is_input {
            None
        } else {
            g.constant_tensor(&name)
                .filter(|t| model.pending_of(t).is_none())
        };
        match constant {
            Some(t) => {
                let mut t = t.clone();
                t.name = Some(name.clone());
                if g.initializer_pos(&name).is_some() {
                    imports.initializers.insert(name.clone());
                }
                imports.constants.insert(name.clone(), t.clone());
                graph.put_initializer(t, None)?;
            }
            None => {
                let vi = g
                    .inputs()
                    .iter()
                    .chain(g.value_info())
                    .chain(g.outputs())
                    .find(|v| v.name.as_deref() == Some(&name))
                    .cloned()
                    .unwrap_or_else(|| ValueInfoProto {
                        name: Some(name.clone()),
                        ..Default::default()
                    });
                imports.inputs.insert(name.clone());
                graph.push_input(vi);
            }
        }
    }
    graph.reserve_names(reserved.iter());
    // A body out of topological order is sorted, as a top-level graph is on load.
    if let Err(why) = graph.check() {
        let mut sorted = graph.clone();
        if sorted.toposort().is_ok() && sorted.check().is_ok() {
            graph = sorted;
        } else {
            return Err(Error::invalid(&model.path, format!("{label}: {why}")));
        }
    }
    let mut header = model.header.clone();
    header.graph = None;
    Ok((
        Model {
            header,
            graph,
            store: model.store.clone(),
            path: model.path.clone(),
            had_external_data: model.had_external_data,
            reordered: false,
        },
        imports,
    ))
}

/// Whether two bodies' new values of the same constant are equal: same dims and type and the
/// same bytes, write-time edits computed (one tensor in memory at a time).
fn same_values(a: (&Model, &TensorProto), b: (&Model, &TensorProto)) -> Result<bool> {
    let ((ma, ta), (mb, tb)) = (a, b);
    if ta.dims != tb.dims || ta.data_type != tb.data_type {
        return Ok(false);
    }
    let pa = ma.pending_of(ta).is_some();
    let pb = mb.pending_of(tb).is_some();
    if !pa && !pb {
        // Both in memory: payloads written by the same encoder, or untouched (then equal
        // protos mean equal values; unequal protos are taken as different: a copy, never
        // wrong).
        let strip = |t: &TensorProto| TensorProto {
            name: None,
            ..t.clone()
        };
        return Ok(strip(ta) == strip(tb));
    }
    // Materialise one side, stream the other against it.
    let (first, second) = if pa { (a, b) } else { (b, a) };
    let bytes_of = |m: &Model, t: &TensorProto| -> Result<Option<bytes::Bytes>> {
        if m.pending_of(t).is_some() {
            m.computed_payload(t)
        } else {
            Ok(t.raw_data.clone())
        }
    };
    let Some(want) = bytes_of(first.0, first.1)? else {
        return Ok(false);
    };
    if second.0.pending_of(second.1).is_none() {
        return Ok(second.1.raw_data.as_ref() == Some(&want));
    }
    let mut at = 0usize;
    let mut equal = true;
    second.0.write_pending(second.1, &mut |blk| {
        if equal {
            equal = want.get(at..at + blk.len()) == Some(blk);
        }
        at += blk.len();
        Ok(())
    })?;
    Ok(equal && at == want.len())
}

/// The patches that put the rewritten bodies back into `model`'s graph, giving each outer
/// constant one consistent edit (module doc): the outer constants first, then each body, then
/// the outer initializers no reader is left for.
fn reconcile(model: &Model, done: &[Done]) -> Result<Vec<Patch>> {
    let mut out = Vec::new();
    let mut push = |kind: PatchKind, what: String| out.push(Patch { kind, what });
    let names: BTreeSet<String> = done
        .iter()
        .flat_map(|d| d.imports.constants.keys().cloned())
        .collect();
    for name in &names {
        let mut kept = false;
        let mut editors: Vec<usize> = Vec::new();
        let mut editable = true;
        for (i, d) in done.iter().enumerate() {
            let Some(orig) = d.imports.constants.get(name) else {
                continue;
            };
            editable &= d.imports.initializers.contains(name);
            let g = &d.view.graph;
            let Some(p) = g.initializer_pos(name) else {
                continue; // the body no longer reads it
            };
            let status = if g.pending(name).is_some() || &g.initializers()[p] != orig {
                Status::Edited
            } else {
                Status::Kept
            };
            match status {
                Status::Kept => kept = true,
                Status::Edited => editors.push(i),
            }
        }
        if editors.is_empty() {
            continue;
        }
        // Groups of bodies whose new values are equal.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &i in &editors {
            let ti = tensor_in(&done[i], name)?;
            let mut placed = false;
            for grp in groups.iter_mut() {
                let j = grp[0];
                let tj = tensor_in(&done[j], name)?;
                if same_values((&done[i].view, ti), (&done[j].view, tj))? {
                    grp.push(i);
                    placed = true;
                    break;
                }
            }
            if !placed {
                groups.push(vec![i]);
            }
        }
        let in_place = editable && !kept && model.graph.direct_reads(name) == 0;
        // The largest group (the first of equals) edits in place when allowed.
        let chosen = in_place.then(|| {
            (0..groups.len())
                .max_by_key(|&k| (groups[k].len(), std::cmp::Reverse(k)))
                .unwrap_or(0)
        });
        for (k, grp) in groups.iter().enumerate() {
            let rep = &done[grp[0]];
            let copy = Some(k) != chosen;
            let labels: Vec<&str> = grp.iter().map(|&i| done[i].label.as_str()).collect();
            push(
                PatchKind::OuterConstant {
                    name: name.clone(),
                    tensor: Box::new(tensor_in(rep, name)?.clone()),
                    pending: rep.view.graph.pending(name).cloned().map(Box::new),
                    copy,
                    bodies: grp.clone(),
                },
                format!(
                    "outer constant {name:?}: {} for {}",
                    if copy {
                        "a copy with the edit"
                    } else {
                        "edited in place"
                    },
                    labels.join(", ")
                ),
            );
        }
    }
    // Put the bodies back: without the imported values, with pending tensors hoisted.
    for (i, d) in done.iter().enumerate() {
        let vg = &d.view.graph;
        let mut gp = vg.to_proto();
        let mut hoisted = Vec::new();
        gp.initializer.retain(|t| {
            let n = t.name.as_deref().unwrap_or("");
            if d.imports.constants.contains_key(n) {
                return false;
            }
            if let Some(p) = vg.pending(n) {
                hoisted.push((t.clone(), Some(p.clone())));
                return false;
            }
            true
        });
        gp.input
            .retain(|v| !d.imports.inputs.contains(v.name.as_deref().unwrap_or("")));
        let imports = d
            .view
            .header
            .opset_import
            .iter()
            .filter_map(|o| match (o.domain.as_deref(), o.version) {
                (Some(dom), Some(v)) if !dom.is_empty() => Some((dom.to_string(), v)),
                _ => None,
            })
            .collect();
        let what = format!(
            "put back the rewritten {}{}",
            d.label,
            if hoisted.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} constant(s) computed at write time move out)",
                    hoisted.len()
                )
            }
        );
        push(
            PatchKind::PutBody {
                body: d.body.clone(),
                index: i,
                graph: Box::new(gp),
                hoisted,
                imports,
            },
            what,
        );
    }
    // Outer constants no reader is left for (a body that dropped its last read of one).
    let candidates: BTreeSet<String> = done
        .iter()
        .flat_map(|d| d.imports.initializers.iter().cloned())
        .collect();
    if !candidates.is_empty() {
        push(
            PatchKind::DropUnusedInitializers { candidates },
            "drop the outer initializers the bodies no longer read".into(),
        );
    }
    Ok(out)
}

/// The tensor named `name` in a body's view (it must be there).
fn tensor_in<'a>(d: &'a Done, name: &str) -> Result<&'a TensorProto> {
    let g = &d.view.graph;
    g.initializer_pos(name)
        .and_then(|p| g.initializers().get(p))
        .ok_or_else(|| Error::Internal(format!("{}: {name:?} vanished", d.label)))
}
