//! A small, conservative shape inference: ranks and the dims that can be known statically.
//!
//! The pass only needs to know, for a value, its rank and its last dimension (the hidden width
//! of a residual stream), plus enough to follow patch-embedding stems. Declared types
//! (inputs, outputs, value_info, initializers) are used first; otherwise a handful of op rules
//! propagate shapes. Anything not understood is `None` ("unknown"), never a guess.

mod ops;
mod values;

use super::Graph;
use ops::infer_node;
use std::collections::HashMap;
use values::shape_value;

/// One dimension: a known size, a symbol, or unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size.
    Known(i64),
    /// A named dynamic size.
    Sym(String),
    /// Nothing known.
    Unknown,
}

impl Dim {
    /// The size when known.
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// The dims a declared shape states (a size, a symbol, or unknown per axis).
pub fn declared_dims(shape: &crate::proto::TensorShapeProto) -> Vec<Dim> {
    shape
        .dim
        .iter()
        .map(|d| match (d.dim_value, &d.dim_param) {
            (Some(v), _) => Dim::Known(v),
            (None, Some(p)) if !p.is_empty() => Dim::Sym(p.clone()),
            _ => Dim::Unknown,
        })
        .collect()
}

/// Shapes of the values of a graph, as far as known.
#[derive(Debug, Default, Clone)]
pub struct Shapes {
    map: HashMap<String, Vec<Dim>>,
    /// Values of small integer tensors computed from shapes (Shape → Gather → Concat ...), so
    /// that a Reshape to a computed target still has a known output shape.
    values: HashMap<String, Vec<Dim>>,
}

impl Shapes {
    /// The shape of a value, if its rank is known.
    pub fn get(&self, v: &str) -> Option<&[Dim]> {
        self.map.get(v).map(Vec::as_slice)
    }

    /// The rank of a value.
    pub fn rank(&self, v: &str) -> Option<usize> {
        self.get(v).map(<[Dim]>::len)
    }

    /// The last dimension of a value, when known.
    pub fn last(&self, v: &str) -> Option<i64> {
        self.get(v).and_then(|s| s.last()).and_then(Dim::known)
    }

    /// The value of a small integer tensor computed from shapes, when known element-wise.
    pub fn value(&self, v: &str) -> Option<&[Dim]> {
        self.values.get(v).map(Vec::as_slice)
    }

    /// Infer shapes for every value of `g`.
    pub fn infer(g: &Graph) -> Shapes {
        let mut s = Shapes::default();
        for t in &g.initializers {
            if let Some(n) = &t.name {
                s.map
                    .insert(n.clone(), t.dims.iter().map(|&d| Dim::Known(d)).collect());
            }
        }
        // Each declaration's own shape: a declaration without one (a graph output declared
        // with its type only) says nothing about the rank, even where another declaration of
        // the same name has a shape.
        for v in g.inputs.iter().chain(&g.value_info).chain(&g.outputs) {
            let shape = v
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref());
            if let (Some(n), Some(shape)) = (&v.name, shape) {
                s.map.insert(n.clone(), declared_dims(shape));
            }
        }
        for n in &g.nodes {
            if let Some(v) = shape_value(g, &s, n) {
                if let Some(o) = n.output.first() {
                    s.values.insert(o.clone(), v);
                }
            }
            let outs = infer_node(g, &s, n);
            for (o, shape) in n.output.iter().zip(outs) {
                if let Some(shape) = shape {
                    // A declared shape may carry symbols where inference knows numbers; merge.
                    let merged = match s.map.get(o) {
                        Some(decl) if decl.len() == shape.len() => decl
                            .iter()
                            .zip(&shape)
                            .map(|(d, i)| {
                                if matches!(d, Dim::Known(_)) || matches!(i, Dim::Unknown) {
                                    d.clone()
                                } else {
                                    i.clone()
                                }
                            })
                            .collect(),
                        Some(decl) => decl.clone(),
                        None => shape,
                    };
                    s.map.insert(o.clone(), merged);
                }
            }
        }
        s
    }
}

/// Read a small constant integer tensor (shapes, axes, starts...).
pub fn const_ints(g: &Graph, name: &str) -> Option<Vec<i64>> {
    let t = g.constant_tensor(name)?;
    let count = crate::tensor::element_count(&t.dims).ok()?;
    if count > 64 {
        return None;
    }
    let data_type = t.data_type.unwrap_or(0);
    let vals = if let Some(raw) = &t.raw_data {
        crate::tensor::decode_raw(raw, data_type, count).ok()?
    } else if crate::io::is_external(t) {
        return None;
    } else {
        crate::tensor::decode_typed(t, count).ok()?
    };
    Some(vals.into_iter().map(|v| v as i64).collect())
}
