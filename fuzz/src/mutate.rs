//! Structure-aware mutations of ONNX models for the `pass_struct` target and the mutation loops.
//!
//! A fuzz input is `[seed selector, op, args..., op, args...]`: the selector picks a seed model
//! ([`seeds`]), then each op edits it (rewire an input, move or drop a node, change an op type,
//! domain, attribute, dims, data type, payload or external reference, add graph outputs, `If`
//! bodies, unknown-domain readers, value_info, duplicate names...). libFuzzer mutates the short
//! op string, so every execution is a structurally meaningful variant of a real model.

use crate::hostile;
use bytes::Bytes;
use onnx_normopt::proto::{
    attribute_type as at, data_location, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto,
};
use prost::Message;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The seed models: the built-in small models first, then the `.onnx` files of the seed folders
/// (`NORMOPT_FUZZ_SEEDS`, a `:`-separated list, or the acceptance corpus and `testdata/models`),
/// sorted by name.
pub fn seeds() -> &'static [(String, ModelProto)] {
    static SEEDS: OnceLock<Vec<(String, ModelProto)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut v: Vec<(String, ModelProto)> = vec![
            ("builtin:tiny_gpt".into(), hostile::tiny_gpt()),
            ("builtin:two_streams".into(), hostile::two_streams()),
            (
                "builtin:unknown_domain_reader".into(),
                hostile::unknown_domain_reader(),
            ),
            (
                "builtin:if_reads_stream".into(),
                hostile::if_reads_stream("If"),
            ),
            // Streams inside If bodies (Optimum's merged decoders): the pass rewrites them.
            ("builtin:if_wrapped_tiny_gpt".into(), {
                let mut m = hostile::tiny_gpt();
                wrap_in_if(&mut m, false);
                m
            }),
            ("builtin:if_wrapped_two_streams_tanh_else".into(), {
                let mut m = hostile::two_streams();
                wrap_in_if(&mut m, true);
                m
            }),
        ];
        for dir in seed_dirs() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            for f in files {
                if let Some(m) = std::fs::read(&f)
                    .ok()
                    .and_then(|b| ModelProto::decode(b.as_slice()).ok())
                {
                    v.push((f.display().to_string(), m));
                }
            }
        }
        v
    })
}

fn seed_dirs() -> Vec<PathBuf> {
    if let Ok(s) = std::env::var("NORMOPT_FUZZ_SEEDS") {
        return s
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = if here.ends_with("fuzz") {
        here.parent().unwrap_or(here)
    } else {
        here
    };
    vec![
        root.join("../shared/corpus"),
        PathBuf::from("/work/shared/corpus"),
        root.join("testdata/models"),
    ]
    .into_iter()
    .filter(|p| p.is_dir())
    .fold(Vec::new(), |mut acc, p| {
        let c = p.canonicalize().unwrap_or(p);
        if !acc.contains(&c) {
            acc.push(c);
        }
        acc
    })
}

/// How many built-in seeds [`seeds`] starts with.
pub const BUILTIN_SEEDS: usize = 6;

/// Pick the seed for selector byte `sel`: built-in models for `sel < 96`, files otherwise.
pub fn pick_seed(sel: u8) -> (usize, &'static ModelProto) {
    let s = seeds();
    let builtin = BUILTIN_SEEDS.min(s.len());
    let i = if (sel as usize) < 96 || s.len() == builtin {
        sel as usize % builtin
    } else {
        builtin + sel as usize % (s.len() - builtin)
    };
    (i, &s[i].1)
}

/// Build the mutated model a fuzz input describes, encoded.
pub fn build(data: &[u8]) -> Option<(usize, Vec<u8>)> {
    let (&sel, ops) = data.split_first()?;
    let (i, seed) = pick_seed(sel);
    let mut m = seed.clone();
    apply(&mut m, ops);
    Some((i, m.encode_to_vec()))
}

/// A cursor over the op bytes.
pub struct Ops<'a> {
    d: &'a [u8],
    i: usize,
}

impl<'a> Ops<'a> {
    /// Wrap bytes.
    pub fn new(d: &'a [u8]) -> Self {
        Ops { d, i: 0 }
    }
    fn done(&self) -> bool {
        self.i >= self.d.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.d.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    /// An index below `n` (0 when `n == 0`).
    fn idx(&mut self, n: usize) -> usize {
        let v = self.u16() as usize;
        if n == 0 {
            0
        } else {
            v % n
        }
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        let i = self.u8() as usize % xs.len();
        xs[i].clone()
    }
    fn int(&mut self) -> i64 {
        const I: [i64; 24] = [
            0,
            1,
            -1,
            2,
            -2,
            3,
            -3,
            4,
            8,
            16,
            32,
            64,
            1 << 20,
            i32::MAX as i64,
            i32::MIN as i64,
            1 << 32,
            1 << 40,
            1 << 62,
            i64::MAX,
            i64::MIN,
            i64::MAX - 1,
            i64::MIN + 1,
            7,
            100,
        ];
        self.pick(&I)
    }
    fn float(&mut self) -> f32 {
        const F: [f32; 12] = [
            0.0,
            -0.0,
            1e-5,
            1e-12,
            1.0,
            -1.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            f32::MIN_POSITIVE,
            0.5,
        ];
        self.pick(&F)
    }
}

const OPS: [&str; 40] = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "MatMul",
    "Gemm",
    "Identity",
    "Reshape",
    "Transpose",
    "LayerNormalization",
    "Concat",
    "Split",
    "Gather",
    "Shape",
    "Cast",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Conv",
    "If",
    "Loop",
    "SkipLayerNormalization",
    "SimplifiedLayerNormalization",
    "RMSNormalization",
    "Dropout",
    "Flatten",
    "Expand",
    "Where",
    "Constant",
    "Size",
    "Erf",
    "Softmax",
    "Mystery",
    "ReduceSum",
    "Relu",
    "Scan",
];
const DOMAINS: [&str; 5] = [
    "",
    "ai.onnx",
    "com.microsoft",
    "com.example.unknown",
    "ai.onnx_normopt",
];
const INT_ATTRS: [&str; 12] = [
    "axis",
    "transA",
    "transB",
    "to",
    "keepdims",
    "allowzero",
    "group",
    "start",
    "end",
    "stash_type",
    "training_mode",
    "noop_with_empty_axes",
];
const INTS_ATTRS: [&str; 7] = [
    "axes",
    "perm",
    "pads",
    "strides",
    "dilations",
    "split",
    "kernel_shape",
];
const FLOAT_ATTRS: [&str; 4] = ["epsilon", "alpha", "beta", "ratio"];
const DTYPES: [i32; 14] = [0, 1, 2, 6, 7, 8, 9, 10, 11, 14, 16, 17, 23, 99];

fn names(g: &GraphProto) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    v.extend(g.input.iter().filter_map(|x| x.name.clone()));
    v.extend(g.initializer.iter().filter_map(|x| x.name.clone()));
    for n in &g.node {
        v.extend(n.output.iter().cloned());
        v.extend(n.input.iter().cloned());
    }
    v.extend(g.output.iter().filter_map(|x| x.name.clone()));
    v.push("nonexistent".into());
    v.push(String::new());
    v
}

fn kv(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
    }
}

fn set_attr(n: &mut NodeProto, a: onnx_normopt::proto::AttributeProto) {
    n.attribute.retain(|x| x.name != a.name);
    n.attribute.push(a);
}

/// Apply the op string to a model.
pub fn apply(m: &mut ModelProto, ops: &[u8]) {
    let mut o = Ops::new(ops);
    let mut fresh = 0usize;
    while !o.done() {
        let op = o.u8() % 32;
        if op == 24 {
            // Opset imports.
            match o.u8() % 4 {
                0 => m.opset_import.clear(),
                1 => {
                    let v = o.pick(&[1i64, 11, 13, 14, 17, 18, 23, 99, -1]);
                    if let Some(x) = m.opset_import.first_mut() {
                        x.version = Some(v);
                    }
                }
                2 => m.opset_import.push(OperatorSetIdProto {
                    domain: Some("com.microsoft".into()),
                    version: Some(1),
                }),
                _ => m.ir_version = Some(o.int()),
            }
            continue;
        }
        if op == 31 {
            // Things around the graph that must survive: functions, training info, metadata;
            // or the whole graph (as mutated so far) moved into both branches of an If.
            match o.u8() % 5 {
                0 => m.functions.push(hostile::local_function()),
                1 => m.training_info.push(hostile::training_info()),
                2 => m.metadata_props.push(kv("fuzz", "1")),
                k => wrap_in_if(m, k == 4),
            }
            continue;
        }
        let Some(g) = m.graph.as_mut() else { return };
        let pool = names(g);
        fresh += 1;
        let new_name = format!("fz{fresh}");
        let nn = g.node.len();
        match op {
            0 => {
                // Rewire one input.
                if nn > 0 {
                    let i = o.idx(nn);
                    let name = pool[o.idx(pool.len())].clone();
                    let n = &mut g.node[i];
                    let k = o.idx(n.input.len() + 1);
                    if k == n.input.len() {
                        n.input.push(name);
                    } else {
                        n.input[k] = name;
                    }
                }
            }
            1 => {
                if nn > 1 {
                    let (a, b) = (o.idx(nn), o.idx(nn));
                    let n = g.node.remove(a);
                    g.node.insert(b, n);
                }
            }
            2 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    g.node.remove(i);
                }
            }
            3 => {
                // A clone with fresh outputs: a new reader of the same values.
                if nn > 0 {
                    let i = o.idx(nn);
                    let mut n = g.node[i].clone();
                    for (k, out) in n.output.iter_mut().enumerate() {
                        *out = format!("{new_name}_{k}");
                    }
                    n.name = Some(new_name.clone());
                    let at_ = o.idx(nn + 1);
                    g.node.insert(at_, n);
                    if o.u8() % 2 == 0 {
                        g.output.push(hostile::vi(
                            &format!("{new_name}_0"),
                            1,
                            &[-1, -2, hostile::D],
                        ));
                    }
                }
            }
            4 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    g.node[i].op_type = Some(o.pick(&OPS).to_string());
                }
            }
            5 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let d = o.pick(&DOMAINS);
                    g.node[i].domain = if d.is_empty() && o.u8() % 2 == 0 {
                        None
                    } else {
                        Some(d.into())
                    };
                }
            }
            6 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let name = o.pick(&INT_ATTRS);
                    let v = o.int();
                    set_attr(&mut g.node[i], hostile::attr_i(name, v));
                }
            }
            7 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let name = o.pick(&INTS_ATTRS);
                    let len = o.u8() % 6;
                    let v: Vec<i64> = (0..len).map(|_| o.int()).collect();
                    set_attr(&mut g.node[i], hostile::attr_ints(name, &v));
                }
            }
            8 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let name = o.pick(&FLOAT_ATTRS);
                    let v = o.float();
                    set_attr(&mut g.node[i], hostile::attr_f(name, v));
                }
            }
            9 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let n = &mut g.node[i];
                    if !n.attribute.is_empty() {
                        let k = o.idx(n.attribute.len());
                        match o.u8() % 3 {
                            0 => {
                                n.attribute.remove(k);
                            }
                            1 => {
                                n.attribute[k].r#type =
                                    Some(o.pick(&[0, at::INT, at::FLOATS, at::GRAPH, 99]))
                            }
                            _ => n.attribute[k].i = Some(o.int()),
                        }
                    }
                }
            }
            10 | 11 | 12 | 13 | 14 | 15 | 25 | 29 => mutate_initializer(g, op, &mut o, &new_name),
            16 => {
                if o.u8() % 3 == 0 && !g.output.is_empty() {
                    let k = o.idx(g.output.len());
                    g.output.remove(k);
                } else {
                    let name = pool[o.idx(pool.len())].clone();
                    g.output.push(hostile::vi(&name, 1, &[-1, -2, hostile::D]));
                }
            }
            17 => match o.u8() % 3 {
                0 if !g.input.is_empty() => {
                    let k = o.idx(g.input.len());
                    g.input.remove(k);
                }
                1 if !g.initializer.is_empty() => {
                    let k = o.idx(g.initializer.len());
                    let name = g.initializer[k].name.clone().unwrap_or_default();
                    let dims = g.initializer[k].dims.clone();
                    g.input.push(hostile::vi(&name, 1, &dims));
                }
                _ => {
                    let name = pool[o.idx(pool.len())].clone();
                    g.input.push(hostile::vi(&name, 1, &[-1, -2, hostile::D]));
                }
            },
            18 => {
                // Declare a type for some value: element type and rank 0..4 of odd dims.
                let name = pool[o.idx(pool.len())].clone();
                let elem = o.pick(&DTYPES);
                let rank = o.u8() % 5;
                let dims: Vec<i64> = (0..rank)
                    .map(|_| {
                        o.pick(&[
                            -1,
                            -2,
                            0,
                            1,
                            2,
                            hostile::D,
                            hostile::D - 1,
                            1 << 40,
                            i64::MAX,
                        ])
                    })
                    .collect();
                let v = hostile::vi(&name, elem, &dims);
                match o.u8() % 3 {
                    0 => g.value_info.push(v),
                    1 => {
                        g.value_info.retain(|x| x.name.as_deref() != Some(&name));
                        g.value_info.push(v);
                    }
                    _ => {
                        if let Some(x) = g
                            .input
                            .iter_mut()
                            .chain(g.output.iter_mut())
                            .find(|x| x.name.as_deref() == Some(&name))
                        {
                            *x = v;
                        }
                    }
                }
            }
            19 => {
                // A subgraph reading a value from the outer scope.
                let name = pool[o.idx(pool.len())].clone();
                let branch = |b: &str| GraphProto {
                    node: vec![hostile::node(
                        "Identity",
                        &format!("{new_name}_{b}_id"),
                        &[&name],
                        &[&format!("{new_name}_{b}")],
                        vec![],
                    )],
                    name: Some(b.into()),
                    output: vec![hostile::vi(&format!("{new_name}_{b}"), 1, &[])],
                    ..Default::default()
                };
                let cond = pool[o.idx(pool.len())].clone();
                let n = hostile::node(
                    "If",
                    &new_name,
                    &[&cond],
                    &[&new_name],
                    vec![
                        hostile::attr_g("then_branch", branch("then")),
                        hostile::attr_g("else_branch", branch("else")),
                    ],
                );
                let at_ = o.idx(nn + 1);
                g.node.insert(at_, n);
            }
            20 => {
                let name = pool[o.idx(pool.len())].clone();
                let mut n = hostile::node("Mystery", &new_name, &[&name], &[&new_name], vec![]);
                n.domain = Some(o.pick(&DOMAINS[2..]).into());
                let at_ = o.idx(nn + 1);
                g.node.insert(at_, n);
                if o.u8() % 2 == 0 {
                    g.output.push(hostile::vi(&new_name, 1, &[]));
                }
            }
            21 => {
                // Rename every use of one value to another (collisions, duplicates).
                let a = pool[o.idx(pool.len())].clone();
                let b = pool[o.idx(pool.len())].clone();
                let r = |s: &mut String| {
                    if *s == a {
                        *s = b.clone()
                    }
                };
                for n in &mut g.node {
                    n.input.iter_mut().for_each(r);
                    n.output.iter_mut().for_each(r);
                }
                for v in g
                    .input
                    .iter_mut()
                    .chain(g.output.iter_mut())
                    .chain(g.value_info.iter_mut())
                {
                    if let Some(s) = v.name.as_mut() {
                        r(s);
                    }
                }
                for t in &mut g.initializer {
                    if let Some(s) = t.name.as_mut() {
                        r(s);
                    }
                }
            }
            22 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let name = pool[o.idx(pool.len())].clone();
                    let n = &mut g.node[i];
                    match o.u8() % 4 {
                        0 => n.output.clear(),
                        1 => n.output.push(new_name.clone()),
                        2 => n.output.push(name),
                        _ => {
                            if !n.output.is_empty() {
                                let k = o.idx(n.output.len());
                                n.output[k] = String::new();
                            }
                        }
                    }
                }
            }
            23 => {
                if nn > 0 {
                    let i = o.idx(nn);
                    let n = &mut g.node[i];
                    let k = o.idx(n.input.len() + 1);
                    if o.u8() % 2 == 0 {
                        n.input.truncate(k);
                    } else if k < n.input.len() {
                        n.input[k] = String::new();
                    }
                }
            }
            26 => {
                // A Constant node defining some name (maybe one already defined).
                let name = if o.u8() % 2 == 0 {
                    pool[o.idx(pool.len())].clone()
                } else {
                    new_name.clone()
                };
                let dims: Vec<i64> = (0..o.u8() % 3)
                    .map(|_| o.pick(&[0, 1, 2, hostile::D, 1 << 40]))
                    .collect();
                let n_el: i64 = dims
                    .iter()
                    .try_fold(1i64, |a, &d| a.checked_mul(d))
                    .unwrap_or(0)
                    .min(64);
                let t = hostile::f32_tensor("", &dims, &vec![0.5; n_el as usize]);
                let n = constant_node(&new_name, &name, t);
                let at_ = o.idx(nn + 1);
                g.node.insert(at_, n);
            }
            27 => {
                // Move a node into an If branch of its own (its outputs become the If's).
                if nn > 0 {
                    let i = o.idx(nn);
                    let inner = g.node[i].clone();
                    if inner
                        .attribute
                        .iter()
                        .any(|a| a.g.is_some() || !a.graphs.is_empty())
                    {
                        // Wrapping again would double the model per op (two branches each).
                        continue;
                    }
                    let outs = inner.output.clone();
                    let branch = |b: &str, inner: NodeProto| GraphProto {
                        node: vec![inner],
                        name: Some(b.into()),
                        output: outs.iter().map(|x| hostile::vi(x, 1, &[])).collect(),
                        ..Default::default()
                    };
                    let cond = pool[o.idx(pool.len())].clone();
                    g.node[i] = NodeProto {
                        input: vec![cond],
                        output: outs.clone(),
                        name: Some(new_name.clone()),
                        op_type: Some("If".into()),
                        attribute: vec![
                            hostile::attr_g("then_branch", branch("then", inner.clone())),
                            hostile::attr_g("else_branch", branch("else", inner)),
                        ],
                        ..Default::default()
                    };
                }
            }
            28 => {
                // Weird node-level fields that must be kept.
                if nn > 0 {
                    let i = o.idx(nn);
                    let n = &mut g.node[i];
                    match o.u8() % 3 {
                        0 => n.name = None,
                        1 => n.doc_string = Some("doc".into()),
                        _ => n.metadata_props.push(kv("k", "v")),
                    }
                }
            }
            30 => {
                // Graph-level leftovers: sparse initializer, quantization annotation, clear the name.
                match o.u8() % 3 {
                    0 => g
                        .sparse_initializer
                        .push(onnx_normopt::proto::SparseTensorProto {
                            values: Some(hostile::f32_tensor(&new_name, &[1], &[1.0])),
                            indices: Some(TensorProto {
                                dims: vec![1],
                                data_type: Some(7),
                                int64_data: vec![0],
                                ..Default::default()
                            }),
                            dims: vec![hostile::D],
                        }),
                    1 => g
                        .quantization_annotation
                        .push(onnx_normopt::proto::TensorAnnotation {
                            tensor_name: Some(pool[o.idx(pool.len())].clone()),
                            quant_parameter_tensor_names: vec![kv("SCALE_TENSOR", "s")],
                        }),
                    _ => g.name = None,
                }
            }
            _ => {}
        }
    }
}

fn mutate_initializer(g: &mut GraphProto, op: u8, o: &mut Ops, new_name: &str) {
    let ni = g.initializer.len();
    if ni == 0 {
        return;
    }
    let k = o.idx(ni);
    match op {
        10 => {
            let t = &mut g.initializer[k];
            let v = o.int();
            if t.dims.is_empty() {
                t.dims.push(v);
            } else {
                let j = o.idx(t.dims.len());
                t.dims[j] = v;
            }
        }
        11 => {
            let t = &mut g.initializer[k];
            if o.u8() % 2 == 0 {
                t.dims.pop();
            } else {
                let v = o.pick(&[1i64, 0, 2, hostile::D]);
                t.dims.insert(0, v);
            }
        }
        12 => g.initializer[k].data_type = Some(o.pick(&DTYPES)),
        13 => {
            let t = &mut g.initializer[k];
            match o.u8() % 4 {
                0 => {
                    let cut = o.u16() as usize;
                    if let Some(r) = &t.raw_data {
                        t.raw_data = Some(r.slice(..cut.min(r.len())));
                    }
                }
                1 => t.raw_data = None,
                2 => {
                    // raw → float_data (same values when the type is f32).
                    if let Some(r) = t.raw_data.take() {
                        t.float_data = r
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                    }
                }
                _ => {
                    t.int64_data = vec![1; (o.u8() % 8) as usize];
                }
            }
        }
        14 => {
            let t = &mut g.initializer[k];
            let loc = o.pick(&[
                crate::harness::DATA_FILE,
                "missing.bin",
                "../w.bin",
                "/etc/passwd",
                "",
                "sub/../w.bin",
                "w.bin\\x",
                ".",
            ]);
            let offset = o.pick(&[
                None,
                Some(0u64),
                Some(4),
                Some(3),
                Some(crate::harness::DATA_LEN as u64),
                Some(u64::MAX),
                Some(1 << 40),
            ]);
            let length = o.pick(&[
                None,
                Some(0u64),
                Some(4),
                Some(32),
                Some(256),
                Some(crate::harness::DATA_LEN as u64),
                Some(u64::MAX),
                Some(1 << 40),
            ]);
            hostile::make_external(t, loc, offset, length);
            if o.u8() % 4 == 0 {
                t.data_location = Some(data_location::DEFAULT);
            }
            if o.u8() % 4 == 0 {
                t.external_data.push(kv("offset", "not a number"));
            }
        }
        15 => {
            g.initializer.remove(k);
        }
        25 => {
            // Turn an initializer into a Constant node at the front.
            let mut t = g.initializer.remove(k);
            let name = t.name.take().unwrap_or_default();
            g.node.insert(0, constant_node(new_name, &name, t));
        }
        _ => {
            // Duplicate an initializer (same name) or give it another's name.
            let t = g.initializer[k].clone();
            g.initializer.push(t);
        }
    }
    let _ = Bytes::new();
}

/// A Constant node `node_name` whose `value` is `t`, defining `out`.
fn constant_node(node_name: &str, out: &str, t: TensorProto) -> NodeProto {
    hostile::node(
        "Constant",
        node_name,
        &[],
        &[out],
        vec![onnx_normopt::proto::AttributeProto {
            name: Some("value".into()),
            t: Some(t),
            r#type: Some(at::TENSOR),
            ..Default::default()
        }],
    )
}

/// Move the whole main graph of `m` into both branches of one `If` on a new bool graph input
/// (`fz_cond`), as Optimum's merged decoders hold their two decoders: the initializers stay in
/// the outer graph (the branches read them from the outer scope), every value a node computes
/// and every node name gets the branch's prefix (`then/`, `else/`), the If's outputs are the
/// graph's outputs. With `tanh_else`, the else branch puts a Tanh on its first output (so the
/// branches differ, and only one of them may fold into a shared reader). Graphs already
/// wrapped (a top-level If named `fz_wrap`) and big graphs are left alone: wrapping doubles the
/// model.
pub fn wrap_in_if(m: &mut ModelProto, tanh_else: bool) {
    let Some(g) = m.graph.as_mut() else { return };
    if g.node.len() > 4096 || g.node.iter().any(|n| n.name.as_deref() == Some("fz_wrap")) {
        return;
    }
    let computed: std::collections::BTreeSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().filter(|x| !x.is_empty()).cloned())
        .collect();
    let outputs = g.output.clone();
    let branch = |prefix: &str, tanh: bool| -> GraphProto {
        let rename = |x: &String| {
            if computed.contains(x) {
                format!("{prefix}/{x}")
            } else {
                x.clone()
            }
        };
        let mut nodes: Vec<NodeProto> = g
            .node
            .iter()
            .map(|n| {
                let mut n = n.clone();
                n.input = n.input.iter().map(rename).collect();
                n.output = n.output.iter().map(rename).collect();
                n.name = n.name.as_ref().map(|x| format!("{prefix}/{x}"));
                for a in &mut n.attribute {
                    if let Some(sub) = a.g.as_mut() {
                        rename_refs(sub, &rename);
                    }
                    for sub in &mut a.graphs {
                        rename_refs(sub, &rename);
                    }
                }
                n
            })
            .collect();
        let mut outs = Vec::new();
        for (k, o) in outputs.iter().enumerate() {
            let name = o.name.clone().unwrap_or_default();
            let mut inner = rename(&name);
            if inner == name {
                // A graph output that no node computes (an input or an initializer): a
                // branch output must be a value of its own.
                let id = format!("{prefix}/{name}/id");
                nodes.push(NodeProto {
                    input: vec![name.clone()],
                    output: vec![id.clone()],
                    name: Some(format!("{prefix}/{name}/identity")),
                    op_type: Some("Identity".into()),
                    ..Default::default()
                });
                inner = id;
            }
            if tanh && k == 0 {
                let t = format!("{inner}/tanh");
                nodes.push(NodeProto {
                    input: vec![inner.clone()],
                    output: vec![t.clone()],
                    name: Some(format!("{prefix}/tanh_out0")),
                    op_type: Some("Tanh".into()),
                    ..Default::default()
                });
                inner = t;
            }
            let mut vi = o.clone();
            vi.name = Some(inner);
            outs.push(vi);
        }
        let value_info = g
            .value_info
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.name = v.name.as_ref().map(rename);
                v
            })
            .collect();
        GraphProto {
            node: nodes,
            name: Some(prefix.into()),
            output: outs,
            value_info,
            ..Default::default()
        }
    };
    let then_b = branch("then", false);
    let else_b = branch("else", tanh_else);
    let mut cond = "fz_cond".to_string();
    while g
        .input
        .iter()
        .any(|i| i.name.as_deref() == Some(cond.as_str()))
        || g.initializer
            .iter()
            .any(|i| i.name.as_deref() == Some(cond.as_str()))
        || computed.contains(&cond)
    {
        cond.push('_');
    }
    g.node = vec![NodeProto {
        input: vec![cond.clone()],
        output: outputs
            .iter()
            .map(|o| o.name.clone().unwrap_or_default())
            .collect(),
        name: Some("fz_wrap".into()),
        op_type: Some("If".into()),
        attribute: vec![
            hostile::attr_g("then_branch", then_b),
            hostile::attr_g("else_branch", else_b),
        ],
        ..Default::default()
    }];
    g.value_info.clear();
    g.input.push(hostile::vi(&cond, 9, &[]));
}

/// Rename the outer-scope references of a nested subgraph (shadowing is ignored: a fuzzed
/// model may break scoping anyway).
fn rename_refs(g: &mut GraphProto, rename: &dyn Fn(&String) -> String) {
    for n in &mut g.node {
        n.input = n.input.iter().map(rename).collect();
        n.output = n.output.iter().map(rename).collect();
        for a in &mut n.attribute {
            if let Some(sub) = a.g.as_mut() {
                rename_refs(sub, rename);
            }
            for sub in &mut a.graphs {
                rename_refs(sub, rename);
            }
        }
    }
    for o in &mut g.output {
        o.name = o.name.as_ref().map(rename);
    }
}
