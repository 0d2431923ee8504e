//! TEMPORARY: the new stream analysis against the old one on every model of testdata and the
//! shared corpora.

use crate::ir::{shape::Shapes, Model};
use crate::passes::norms::{find_norms, Ctx};
use crate::passes::stream::{Analysis, Leaf, Stream};
use std::path::PathBuf;

fn dump(a: &Analysis, s: &Stream) -> Vec<String> {
    let mut out = vec![format!("width {:?}", s.width)];
    out.push(format!("values {:?}", s.values));
    out.push(format!("chain {:?}", s.chain_values));
    let mut leaves: Vec<String> = s
        .leaves
        .iter()
        .map(|l| {
            let leaf = match &l.leaf {
                Leaf::Const { node, slot, axis, .. } => {
                    let r = a.g.node(*node).input.get(*slot).and_then(|c| a.g.constant_dims(c)).map(|d| d.len());
                    let axis = match (axis, r) {
                        (Some(x), Some(r)) if x + 1 == r => None,
                        _ => *axis,
                    };
                    format!("Const {node} {slot} {axis:?}")
                }
                Leaf::Explicit { .. } => "Explicit".to_string(),
                other => format!("{other:?}"),
            };
            format!("{} {leaf}", l.value)
        })
        .collect();
    leaves.sort();
    out.push(format!("leaves {leaves:?}"));
    out.push(format!("norms {:?}", s.norms));
    let mut edges: Vec<String> = s.edges.iter().map(|(k, v)| { let mut v = v.clone(); v.sort(); format!("{k} {v:?}") }).collect();
    edges.sort();
    out.push(format!("edges {edges:?}"));
    out.push(format!("observed {}", !s.observed.is_empty()));
    let mut ns = s.norm_sources.clone();
    ns.sort();
    out.push(format!("norm_sources {ns:?}"));
    let mut cs = s.chain_shapes.clone();
    cs.sort();
    cs.dedup();
    out.push(format!("chain_shapes {cs:?}"));
    out
}

#[test]
#[ignore]
fn parity() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in ["testdata/models", "testdata/backbones", "testdata/frameworks", "../shared/corpus", "../shared/corpus-deployed", "testdata/deployed"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "onnx") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut bad = 0;
    for f in &files {
        let Ok(model) = Model::load(f) else { continue };
        let g = &model.graph;
        let ix = g.index();
        let shapes = Shapes::infer(g);
        let ctx = Ctx { g, ix: &ix, shapes: &shapes };
        let (norms, _) = find_norms(&ctx);
        let a = Analysis::new(g, &ix, &shapes, &norms);
        let old = a.streams_old();
        let new = a.streams();
        if old.len() != new.len() {
            eprintln!("{}: {} streams old, {} new", f.display(), old.len(), new.len());
            bad += 1;
            continue;
        }
        for (i, (o, n)) in old.iter().zip(&new).enumerate() {
            let (dold, dn) = (dump(&a, o), dump(&a, n));
            if dold != dn {
                bad += 1;
                eprintln!("{} stream {i} (old observed: {:?}; new: {:?})", f.display(), o.observed.iter().map(|r| r.to_string()).collect::<Vec<_>>(), n.observed.iter().map(|r| r.to_string()).collect::<Vec<_>>());
                for (x, y) in dold.iter().zip(&dn) {
                    if x != y {
                        eprintln!("   old {}\n   new {}", &x[..x.len().min(600)], &y[..y.len().min(600)]);
                    }
                }
            }
        }
    }
    eprintln!("{} files, {bad} differences", files.len());
}
