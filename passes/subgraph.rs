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
use super::edit::dims_after;
use super::report::build::merge_bodies;
use super::report::Report;
use super::rewrite::{drive, Applied, DriveOptions, Patch, PatchKind, Tally};
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

/// A body after the pass ran (or was told, for `inspect`) on its view; `T` is what it gave.
struct Done<T> {
    body: BodyRef,
    label: String,
    imports: Imports,
    view: Model,
    out: T,
}

/// The whole pass on one graph and its bodies ([`super::run`]), as [`rewrite_bodies`] runs it
/// on each view.
pub(crate) type Pass<'a> = &'a dyn Fn(Model, &Options) -> Result<Outcome>;

/// The pass told on one graph and its bodies, nothing applied ([`super::inspect`]): the report
/// and the tally of its patches (op counts after, bodies included).
pub(crate) type InspectPass<'a> = &'a dyn Fn(&Model, &Options) -> Result<(Report, Tally)>;

/// The op counts of the bodies of `g`, nested ones included.
fn ops_in_bodies(g: &Graph, bodies: &[(BodyRef, String)]) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for (r, _) in bodies {
        if let Some(b) = g.body(r) {
            crate::ir::subgraph::deep_histogram(&b.node, &mut h);
        }
    }
    h
}

/// Each body of `model`'s graph as a view, given in order to `pass` with its options (the
/// patch budget left after `patches`, a log naming the body). `pass` returns the view after it,
/// what it gave and how many patches it applied; `reserved` (names not fresh in the views)
/// grows with the names each view took.
fn each_body<T>(
    model: &Model,
    bodies: Vec<(BodyRef, String)>,
    opts: &Options,
    patches: &mut usize,
    reserved: &mut Vec<String>,
    mut pass: impl FnMut(Model, &Options) -> Result<(Model, T, usize)>,
) -> Result<Vec<Done<T>>> {
    let mut done = Vec::new();
    for (r, label) in bodies {
        let body = model
            .graph
            .body(&r)
            .ok_or_else(|| Error::Internal(format!("{label}: body vanished")))?
            .clone();
        let (view, imports) = view_of(model, &body, reserved, &label)?;
        // The patch budget (--stop-after) is shared with the enclosing graph; the log names
        // the body.
        let body_opts = Options {
            stop_after: opts.stop_after.map(|n| n.saturating_sub(*patches)),
            patch_log: opts.patch_log.as_ref().map(|l| {
                let (l, label) = (l.0.clone(), label.clone());
                PatchLog(std::sync::Arc::new(move |p: &str| {
                    l(&format!("in {label}: {p}"))
                }))
            }),
            ..opts.clone()
        };
        let (mut view, out, n) = pass(view, &body_opts).map_err(|e| in_body(e, &label))?;
        *patches += n;
        reserved.extend(view.graph.taken_names().iter().cloned());
        done.push(Done {
            body: r,
            label,
            imports,
            view,
            out,
        });
    }
    Ok(done)
}

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
    let ops_before = ops_in_bodies(&model.graph, &bodies);
    let mut reserved: Vec<String> = model.graph.taken_names().iter().cloned().collect();
    let done = each_body(
        &model,
        bodies,
        opts,
        &mut patches,
        &mut reserved,
        |view, o| {
            let res = pass(view, o)?;
            Ok((res.model, res.report, res.patches))
        },
    )?;
    // Names taken inside the bodies are not fresh in the enclosing graph (name bookkeeping, no
    // edit of the graph).
    model.graph.reserve_names(reserved.iter());
    let decisions = decide(
        &model,
        &done,
        |d, name| {
            let g = &d.view.graph;
            let Some(p) = g.initializer_pos(name) else {
                return Ok(None); // the body no longer reads it
            };
            let orig = d.imports.constants.get(name);
            Ok(Some(
                g.pending(name).is_some() || Some(&g.initializers()[p]) != orig,
            ))
        },
        |a, b, name| {
            same_values(
                (&a.view, tensor_in(a, name)?),
                (&b.view, tensor_in(b, name)?),
            )
        },
    )?;
    let reconciled = reconcile(&decisions, &done)?;
    let applied = drive(&mut model, &reconciled, &DriveOptions::of(opts, patches))?;
    patches += applied.patches;
    let ops_after = model.graph.deep_histogram();
    merge_bodies(
        &mut report,
        ops_before,
        done.iter().map(|d| (d.label.as_str(), &d.out)),
        &applied,
        ops_after,
    );
    Ok(Outcome {
        model,
        report,
        patches,
    })
}

/// `inspect` of the bodies of `model`'s graph, whose own report and tally (without its bodies)
/// are `report` and `tally`: each body told by `pass` on its view, nothing applied, and what
/// putting them back would add. An outer constant that bodies edit alike is grouped by equal
/// edits here (the rewrite groups equal values: the two differ only when different edits give
/// equal values). Returns the report with the bodies' merged in and the tally of the graph
/// with its bodies (op counts after, bodies included; outer constants edited in place).
pub(crate) fn inspect_bodies(
    model: &Model,
    mut report: Report,
    mut tally: Tally,
    opts: &Options,
    pass: InspectPass,
) -> Result<(Report, Tally)> {
    let bodies = model.graph.bodies();
    if bodies.is_empty() {
        return Ok((report, tally));
    }
    let ops_before = ops_in_bodies(&model.graph, &bodies);
    let done = each_body(model, bodies, opts, &mut 0, &mut Vec::new(), |view, o| {
        let told = pass(&view, o)?;
        Ok((view, told, 0))
    })?;
    let decisions = decide(
        model,
        &done,
        |d, name| {
            let t = &d.out.1;
            Ok(if t.dropped.contains(name) {
                None
            } else {
                Some(t.edited.contains_key(name))
            })
        },
        |a, b, name| Ok(a.out.1.edited.get(name) == b.out.1.edited.get(name)),
    )?;
    let mut added = Applied::default();
    for dc in &decisions {
        for (k, grp) in dc.groups.iter().enumerate() {
            let d = &done[grp[0]];
            let (Some(t), Some(edits)) = (
                d.imports.constants.get(&dc.name),
                d.out.1.edited.get(&dc.name),
            ) else {
                continue;
            };
            if Some(k) == dc.chosen {
                tally.edited.insert(dc.name.clone(), edits.clone());
            } else {
                let dims: Vec<usize> = t.dims.iter().map(|&x| x.max(0) as usize).collect();
                added.bytes_added += dims_after(&dims, edits).iter().product::<usize>()
                    * crate::proto::data_type::byte_size(t.data_type.unwrap_or(0)).unwrap_or(0);
            }
        }
    }
    let mut ops_after = tally.ops_after.clone();
    for d in &done {
        for (k, v) in &d.out.1.ops_after {
            *ops_after.entry(k.clone()).or_insert(0) += v;
        }
    }
    tally.applied.bytes_added += added.bytes_added;
    tally.ops_after = ops_after.clone();
    merge_bodies(
        &mut report,
        ops_before,
        done.iter().map(|d| (d.label.as_str(), &d.out.0)),
        &added,
        ops_after,
    );
    Ok((report, tally))
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

/// How the bodies' edits of one outer constant are reconciled: the groups of bodies whose new
/// values are equal, and the group (if any) whose value replaces the constant in place; the
/// others get copies.
struct Decision {
    name: String,
    groups: Vec<Vec<usize>>,
    chosen: Option<usize>,
}

/// Decide, for every outer constant the bodies imported, how their edits are reconciled
/// (module doc): `edited` says what body `d` did to constant `name` (`None`: it no longer reads
/// it; `Some(false)`: still read unchanged; `Some(true)`: edited), `same` whether two bodies'
/// edits of it give equal values.
fn decide<T>(
    model: &Model,
    done: &[Done<T>],
    edited: impl Fn(&Done<T>, &str) -> Result<Option<bool>>,
    same: impl Fn(&Done<T>, &Done<T>, &str) -> Result<bool>,
) -> Result<Vec<Decision>> {
    let names: BTreeSet<String> = done
        .iter()
        .flat_map(|d| d.imports.constants.keys().cloned())
        .collect();
    let mut out = Vec::new();
    for name in names {
        let mut kept = false;
        let mut editors: Vec<usize> = Vec::new();
        let mut editable = true;
        for (i, d) in done.iter().enumerate() {
            if !d.imports.constants.contains_key(&name) {
                continue;
            }
            editable &= d.imports.initializers.contains(&name);
            match edited(d, &name)? {
                None => {}
                Some(false) => kept = true,
                Some(true) => editors.push(i),
            }
        }
        if editors.is_empty() {
            continue;
        }
        // Groups of bodies whose new values are equal.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &i in &editors {
            let mut placed = false;
            for grp in groups.iter_mut() {
                if same(&done[i], &done[grp[0]], &name)? {
                    grp.push(i);
                    placed = true;
                    break;
                }
            }
            if !placed {
                groups.push(vec![i]);
            }
        }
        let in_place = editable && !kept && model.graph.direct_reads(&name) == 0;
        // The largest group (the first of equals) edits in place when allowed.
        let chosen = in_place.then(|| {
            (0..groups.len())
                .max_by_key(|&k| (groups[k].len(), std::cmp::Reverse(k)))
                .unwrap_or(0)
        });
        out.push(Decision {
            name,
            groups,
            chosen,
        });
    }
    Ok(out)
}

/// The patches that put the rewritten bodies back into the enclosing graph as `decisions` say:
/// the outer constants first, then each body, then the outer initializers no reader is left
/// for.
fn reconcile(decisions: &[Decision], done: &[Done<Report>]) -> Result<Vec<Patch>> {
    let mut out = Vec::new();
    let mut push = |kind: PatchKind, what: String| out.push(Patch { kind, what });
    for Decision {
        name,
        groups,
        chosen,
    } in decisions
    {
        for (k, grp) in groups.iter().enumerate() {
            let rep = &done[grp[0]];
            let copy = Some(k) != *chosen;
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
fn tensor_in<'a, T>(d: &'a Done<T>, name: &str) -> Result<&'a TensorProto> {
    let g = &d.view.graph;
    g.initializer_pos(name)
        .and_then(|p| g.initializers().get(p))
        .ok_or_else(|| Error::Internal(format!("{}: {name:?} vanished", d.label)))
}
