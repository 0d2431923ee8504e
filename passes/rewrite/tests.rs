//! The patch driver: stopping after N patches, and the check after each patch.

use super::patch::PatchKind;
use super::{drive, DriveOptions, Patch};
use crate::ir::{Graph, Model, NodeExt};
use crate::passes::{self, Options, PatchLog, Target};
use crate::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs[0])),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// x → Relu → y → Neg → z.
fn small_model() -> Model {
    Model {
        header: ModelProto::default(),
        graph: Graph::from_proto(GraphProto {
            node: vec![node("Relu", &["x"], &["y"]), node("Neg", &["y"], &["z"])],
            input: vec![value("x")],
            output: vec![value("z")],
            ..Default::default()
        }),
        store: Default::default(),
        path: "small.onnx".into(),
        had_external_data: false,
        reordered: false,
    }
}

fn center(v: &str, edges: &[(usize, usize)]) -> Patch {
    Patch {
        kind: PatchKind::Center {
            value: v.into(),
            edges: edges.to_vec(),
            compress_from: None,
        },
        what: format!("centre {v:?}"),
    }
}

fn options(check_each_patch: bool, stop_after: Option<usize>) -> DriveOptions<'static> {
    DriveOptions {
        defer_bytes: usize::MAX,
        check_each_patch,
        stop_after,
        log: None,
    }
}

/// The Neg reads a centred copy of y (fine); then the Relu is made to read a centred copy of
/// z, which depends on the Relu's own output: a cycle.
fn patches() -> Vec<Patch> {
    vec![center("y", &[(1, 0)]), center("z", &[(0, 0)])]
}

#[test]
fn the_check_after_each_patch_names_the_broken_patch() {
    // The second patch re-points a read of x: it changes nothing a reader of z sees, and the
    // driver refuses it before applying it (passes/rewrite/effect.rs), checked or not.
    for checked in [true, false] {
        let mut m = small_model();
        let e = drive(&mut m, &patches(), &options(checked, None)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("patch #2 (centre \"z\")"), "{msg}");
        assert!(msg.contains("changes nothing any reader sees"), "{msg}");
    }
    // A patch that is applied and breaks the graph: the check after each patch names it.
    let mut bad = center("z", &[(1, 0)]);
    bad.what = "centre \"z\" for the Neg".into();
    if let PatchKind::Center { value, .. } = &mut bad.kind {
        *value = "z".into();
    }
    let mut m = small_model();
    // Make the Neg read z itself first: the centring of z for it is a cycle.
    m.graph.set_input(1, 0, "z");
    let e = drive(&mut m, &[bad.clone()], &options(true, None)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("patch #1 (centre \"z\" for the Neg)"), "{msg}");
    // Without the check, the end of the rewrite still refuses it, without naming the patch.
    let mut m = small_model();
    m.graph.set_input(1, 0, "z");
    let e = drive(&mut m, &[bad], &options(false, None)).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains("patch #"), "{msg}");
}

#[test]
fn stop_after_applies_the_first_patches_only() {
    let mut m = small_model();
    let logged: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = logged.clone();
    let log = PatchLog(Arc::new(move |p: &str| {
        sink.lock().unwrap().push(p.to_string())
    }));
    let o = DriveOptions {
        log: Some(&log),
        ..options(true, Some(1))
    };
    let applied = drive(&mut m, &patches(), &o).unwrap();
    assert_eq!(applied.patches, 1);
    assert_eq!(applied.centering_nodes, 1);
    assert_eq!(*logged.lock().unwrap(), vec!["centre \"y\"".to_string()]);
    m.graph.check().unwrap();
    // The Neg reads the centred copy; the Relu still reads x.
    let neg = m.graph.nodes().iter().find(|n| n.is("Neg")).unwrap();
    assert_ne!(neg.input(0), Some("y"));
    let relu = m.graph.nodes().iter().find(|n| n.is("Relu")).unwrap();
    assert_eq!(relu.input(0), Some("x"));
    // Zero patches: the graph is as it was.
    let mut m = small_model();
    let applied = drive(&mut m, &patches(), &options(true, Some(0))).unwrap();
    assert_eq!(applied.patches, 0);
    assert_eq!(m.graph.to_proto(), small_model().graph.to_proto());
}

fn gpt2() -> Model {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/models/gpt2_ts14_fp32.onnx");
    Model::load(&p).unwrap()
}

/// On a real model, through the pass: `stop_after` N applies N patches (each one checked), the
/// log sees the same N, and the full rewrite has more.
#[test]
fn stop_after_n_through_the_pass() {
    for target in [Target::Rmsnorm, Target::Crmsnorm] {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        let full = passes::run(
            gpt2(),
            &Options {
                form: target.into(),
                check_each_patch: true,
                patch_log: Some(PatchLog(Arc::new(move |p: &str| {
                    sink.lock().unwrap().push(p.to_string())
                }))),
                ..Options::default()
            },
        )
        .unwrap();
        let total = full.patches;
        assert!(total > 5, "{total} patches");
        assert_eq!(log.lock().unwrap().len(), total);
        for n in [0, 1, 3, total - 1, total, total + 10] {
            let out = passes::run(
                gpt2(),
                &Options {
                    form: target.into(),
                    check_each_patch: true,
                    stop_after: Some(n),
                    ..Options::default()
                },
            )
            .unwrap();
            assert_eq!(out.patches, n.min(total), "{target:?} stop after {n}");
            out.model.graph.check().unwrap();
        }
        // All patches applied: the same output as without a limit.
        let limited = passes::run(
            gpt2(),
            &Options {
                form: target.into(),
                stop_after: Some(total),
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(
            limited.model.to_proto().unwrap(),
            full.model.to_proto().unwrap()
        );
    }
}

/// The merged Whisper decoder of the shared corpus (Optimum's If with two decoder bodies).
fn whisper_merged() -> Model {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus-deployed/whisper_decoder_model_merged.onnx");
    Model::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The op types inside the bodies of a graph's nodes.
fn body_ops(g: &Graph) -> Vec<String> {
    let mut h = std::collections::BTreeMap::new();
    for (r, _) in g.bodies() {
        crate::ir::subgraph::deep_histogram(&g.body(&r).unwrap().node, &mut h);
    }
    h.into_keys().collect()
}

/// Putting rewritten bodies back is patches too: the log names them, `stop_after` can stop
/// before them (the bodies stay as they were, the graph is valid) or among them, and each is
/// checked.
#[test]
fn subgraph_reconciliation_is_patches() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    let opts = Options {
        check_each_patch: true,
        ..Options::default()
    };
    let full = passes::run(
        whisper_merged(),
        &Options {
            patch_log: Some(PatchLog(Arc::new(move |p: &str| {
                sink.lock().unwrap().push(p.to_string())
            }))),
            ..opts.clone()
        },
    )
    .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), full.patches);
    let first_put = log
        .iter()
        .position(|p| p.starts_with("put back the rewritten If"))
        .expect("bodies are put back by patches");
    let puts = log[first_put..]
        .iter()
        .take_while(|p| p.starts_with("put back"))
        .count();
    assert_eq!(puts, 2, "{log:#?}");
    assert!(log[..first_put]
        .iter()
        .any(|p| p.starts_with("outer constant")));
    assert!(log
        .last()
        .is_some_and(|p| p.starts_with("drop the outer initializers")));
    assert!(!body_ops(&full.model.graph).contains(&"LayerNormalization".to_string()));
    // Stopped before the bodies are put back: they are the input's.
    let input_ops = body_ops(&whisper_merged().graph);
    assert!(input_ops.contains(&"LayerNormalization".to_string()));
    let before = passes::run(
        whisper_merged(),
        &Options {
            stop_after: Some(first_put),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(before.patches, first_put);
    before.model.graph.check().unwrap();
    let g = &before.model.graph;
    for ((r, label), (r0, _)) in g.bodies().iter().zip(whisper_merged().graph.bodies()) {
        assert_eq!(
            g.body(r),
            whisper_merged().graph.body(&r0),
            "{label} was put back"
        );
    }
    // Stopped after one body: that one is rewritten, the other is not.
    let one = passes::run(
        whisper_merged(),
        &Options {
            stop_after: Some(first_put + 1),
            ..opts
        },
    )
    .unwrap();
    one.model.graph.check().unwrap();
    let lns: Vec<bool> = one
        .model
        .graph
        .bodies()
        .iter()
        .map(|(r, _)| {
            let mut h = std::collections::BTreeMap::new();
            crate::ir::subgraph::deep_histogram(&one.model.graph.body(r).unwrap().node, &mut h);
            h.contains_key("LayerNormalization")
        })
        .collect();
    assert_eq!(lns.iter().filter(|x| **x).count(), 1, "{lns:?}");
}

/// `inspect` stops at the patch list and tells what applying it adds; on the merged decoder
/// (outer constants edited alike by both bodies) and on GPT-2, in every output form, its
/// report is the rewrite's.
#[test]
fn inspect_tells_what_the_rewrite_does() {
    use crate::passes::{CrmsEmit, Emit, OutputForm};
    let forms = [
        OutputForm::Rms(Emit::Standard),
        OutputForm::Rms(Emit::Onnxruntime),
        OutputForm::Crms(CrmsEmit::Standard),
        OutputForm::Crms(CrmsEmit::Custom),
    ];
    for (name, load) in [
        ("whisper merged", whisper_merged as fn() -> Model),
        ("gpt2", gpt2),
    ] {
        for form in forms {
            let opts = Options {
                form,
                check_each_patch: true,
                ..Options::default()
            };
            let told = passes::inspect(&load(), &opts).unwrap();
            let done = passes::run(load(), &opts).unwrap().report;
            assert!(done.norms_rewritten > 0, "{name} {form:?}");
            assert_eq!(
                serde_json::to_value(&told).unwrap(),
                serde_json::to_value(&done).unwrap(),
                "{name} {form:?}"
            );
        }
    }
}

/// The check of the driver against the tally names what differs.
#[test]
fn the_tally_check_names_a_difference() {
    let m = gpt2();
    let opts = Options::default();
    let run = passes::run(m, &opts).unwrap();
    let t = super::Tally {
        applied: super::Applied {
            centering_nodes: run.report.centering_nodes,
            bytes_added: run.report.bytes_added + 4,
            patches: run.patches,
        },
        ops_after: run.report.ops_after.clone(),
        ..Default::default()
    };
    let applied = super::Applied {
        centering_nodes: run.report.centering_nodes,
        bytes_added: run.report.bytes_added,
        patches: run.patches,
    };
    let e = super::check_tally(&t, &applied, &run.report.ops_after).unwrap_err();
    assert!(e.to_string().contains("bytes added"), "{e}");
    let t = super::Tally {
        applied,
        ops_after: Default::default(),
        ..Default::default()
    };
    let e = super::check_tally(&t, &t.applied, &run.report.ops_after).unwrap_err();
    assert!(e.to_string().contains("op counts"), "{e}");
}
