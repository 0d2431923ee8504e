//! A text form of small graphs, for tests written by hand: the line format [`super::dump`]
//! prints, plus a few header lines that give what a dump leaves out (constant values, opsets).
//! One file: the parser of one line format (a little over 600 lines, kept together).
//!
//! ```text
//! # a comment; blank lines are skipped
//! graph "tiny"                              optional: the graph's name
//! opset 17                                  optional: the default domain's version (17 if absent)
//! opset com.microsoft 1                     optional: another domain (a domain that a node uses
//!                                           and no line names is imported at version 1)
//! input  %x: f32[2,4,8]                     a graph input: element type and dims
//! output %y: f32[2,4,8]                     a graph output (`: ?` or nothing: no type)
//! init @w: f32[8,8] = random(7)             a constant and its values (see below)
//! init @eps: f32[] = [1e-5]
//! %m = ReduceMean[rm](%x, @axes:i64[1]) keepdims=1
//! %y, _ = com.microsoft:SkipLayerNormalization[sln](%a, %b, @g:f32[8]) epsilon=1e-5
//! ```
//!
//! - **Types** are the dump's names (`f32`, `f16`, `bf16`, `f64`, `i64`, `i32`, `bool`, …;
//!   `float`, `double`, `int64` are accepted too). Dims are numbers, symbols (`batch`) or `?`;
//!   `[*]` means no shape at all.
//! - **Node lines** are `outputs = domain:Op[name](inputs) attrs` (`_` for an absent slot, `[]`
//!   for an unnamed node, no `domain:` for the default domain). An input is `%value` or
//!   `@constant`, optionally with its type as the dump prints it (`@w:f32[8,8]`).
//! - **Constants**: `init @name: type[dims] = VALUES` with VALUES one of `random(SEED)`
//!   (deterministic values in [-1, 1): integers in 0..4), `fill(V)` (every element V), or
//!   `[v1, v2, …]` (row-major, as many as the dims hold). A constant that a node names with its
//!   type (`@w:f32[8,8]`) and no `init` line gets `random` values seeded by its name, so the
//!   output of [`super::dump::dump`] parses back.
//! - **Attributes** are `name=value`: an integer (`axis=-1`), a float (anything with `.`, `e`,
//!   `inf` or `NaN`: `epsilon=1e-5`, `alpha=1.0`), a string in quotes (`mode="constant"`), a
//!   list of integers or floats (`perm=[0, 2, 1]`; `[]` is an empty integer list). Tensor and
//!   graph attributes have no text form.
//! - The dump's `N initializers, M bytes inline` line is ignored (it is derived).
//!
//! Names cannot contain whitespace, `,`, `(`, `)`, `[` or `]`. Errors name the line. A parsed
//! graph is checked like a loaded one ([`super::Model::from_file`]): an undefined value or a
//! cycle is an error. `dump(parse(t))` is stable: parsing a dump and dumping it again gives the
//! same text.

use super::Model;
use crate::error::{Error, Result};
use crate::io::{ExternalStore, ModelFile};
use crate::proto::{
    attribute_type as at, data_type as dt, tensor_shape_proto, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// The path a parsed model reports (it has no file).
pub const TEXT_PATH: &str = "<text>";

/// Parse the text form of a graph into a [`Model`] (see the module doc for the format).
pub fn parse(text: &str) -> Result<Model> {
    let path = PathBuf::from(TEXT_PATH);
    let proto = parse_proto(text).map_err(|e| Error::invalid(&path, e))?;
    Model::from_file(ModelFile {
        proto,
        store: Arc::new(ExternalStore::new(&path)),
        path,
        had_external_data: false,
        file_size: 0,
    })
}

/// Parse the text form into a `ModelProto` (not yet checked). Errors read "line N: …".
pub fn parse_proto(text: &str) -> std::result::Result<ModelProto, String> {
    let mut p = Parser::default();
    for (i, line) in text.lines().enumerate() {
        p.line(line)
            .map_err(|e| format!("line {}: {e}: {:?}", i + 1, line.trim()))?;
    }
    p.finish()
}

#[derive(Default)]
struct Parser {
    name: Option<String>,
    opsets: BTreeMap<String, i64>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Constants in order of first mention.
    inits: Vec<TensorProto>,
    /// Constant name → position in `inits`, and whether an `init` line gave it.
    init_pos: HashMap<String, (usize, bool)>,
    nodes: Vec<NodeProto>,
}

impl Parser {
    fn line(&mut self, raw: &str) -> std::result::Result<(), String> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match word {
            "graph" => {
                let n = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"'));
                self.name = Some(unquote(n.unwrap_or(rest))?);
            }
            "opset" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                let (domain, v) = match parts.as_slice() {
                    [v] => ("", *v),
                    [d, v] => (*d, *v),
                    _ => return Err("expected `opset [DOMAIN] VERSION`".into()),
                };
                let v = v
                    .parse()
                    .map_err(|_| format!("opset version {v:?} is not a number"))?;
                let domain = if domain == "ai.onnx" { "" } else { domain };
                self.opsets.insert(domain.to_string(), v);
            }
            "input" | "output" => {
                let (name, ty) = match rest.split_once(':') {
                    Some((n, t)) => (n.trim(), Some(t.trim())),
                    None => (rest, None),
                };
                let name = value_name(name)?;
                let v = value_info(name, ty)?;
                if word == "input" {
                    self.inputs.push(v);
                } else {
                    self.outputs.push(v);
                }
            }
            "init" => self.init(rest)?,
            _ if line.ends_with(" bytes inline") && line.contains(" initializers, ") => {}
            _ => self.node(line)?,
        }
        Ok(())
    }

    /// `init @name: type[dims] [= VALUES]`.
    fn init(&mut self, rest: &str) -> std::result::Result<(), String> {
        let (decl, values) = match rest.split_once('=') {
            Some((d, v)) => (d.trim(), Some(v.trim())),
            None => (rest, None),
        };
        let (name, ty) = decl
            .split_once(':')
            .ok_or("expected `init @name: type[dims] = values`")?;
        let name = name
            .trim()
            .strip_prefix('@')
            .ok_or("a constant's name starts with `@`")?;
        check_name(name)?;
        let (data_type, dims) = tensor_type(ty.trim())?;
        let t = tensor(name, data_type, &dims, values)?;
        match self.init_pos.get(name) {
            Some((_, true)) => return Err(format!("constant @{name} is declared twice")),
            Some(&(i, false)) => {
                if self.inits[i].data_type != t.data_type || self.inits[i].dims != t.dims {
                    return Err(format!(
                        "constant @{name} is used with another type before this line"
                    ));
                }
                self.inits[i] = t;
                self.init_pos.insert(name.to_string(), (i, true));
            }
            None => {
                self.init_pos
                    .insert(name.to_string(), (self.inits.len(), true));
                self.inits.push(t);
            }
        }
        Ok(())
    }

    /// `outs = domain:Op[name](ins) attrs`.
    fn node(&mut self, line: &str) -> std::result::Result<(), String> {
        let (outs, rhs) = if let Some(r) = line.strip_prefix('=') {
            ("", r.trim())
        } else {
            let (o, r) = line
                .split_once(" = ")
                .ok_or("expected a header line or `outputs = Op[name](inputs) attrs`")?;
            (o.trim(), r.trim())
        };
        let mut output = Vec::new();
        for o in split_top(outs, ',') {
            output.push(if o == "_" {
                String::new()
            } else {
                value_name(&o)?.to_string()
            });
        }
        let open = rhs.find('[').ok_or("expected `Op[name](…)`")?;
        let op_full = &rhs[..open];
        let (domain, op) = match op_full.rsplit_once(':') {
            Some((d, o)) => (Some(d.to_string()), o),
            None => (None, op_full),
        };
        check_name(op).map_err(|e| format!("op type: {e}"))?;
        let after = &rhs[open + 1..];
        let close = after
            .find("](")
            .ok_or("expected `[name](` after the op type")?;
        let name = &after[..close];
        let after = &after[close + 2..];
        let end = after.find(')').ok_or("expected `)` after the inputs")?;
        let args = &after[..end];
        let attrs = after[end + 1..].trim();
        let mut input = Vec::new();
        for a in split_top(args, ',') {
            input.push(self.operand(&a)?);
        }
        let mut attribute = Vec::new();
        for a in split_top(attrs, ' ') {
            attribute.push(attr(&a)?);
        }
        if let Some(d) = &domain {
            if !self.opsets.contains_key(d) && d != "ai.onnx" {
                self.opsets.entry(d.clone()).or_insert(0); // version 1 unless a line says
            }
        }
        self.nodes.push(NodeProto {
            input,
            output,
            name: (!name.is_empty()).then(|| name.to_string()),
            op_type: Some(op.to_string()),
            domain,
            attribute,
            ..Default::default()
        });
        Ok(())
    }

    /// A node input: `_`, `%value`, `@constant` or `@constant:type[dims]`.
    fn operand(&mut self, a: &str) -> std::result::Result<String, String> {
        if a == "_" {
            return Ok(String::new());
        }
        if let Some(v) = a.strip_prefix('%') {
            check_name(v)?;
            return Ok(v.to_string());
        }
        let c = a
            .strip_prefix('@')
            .ok_or_else(|| format!("input {a:?} is neither %value, @constant nor _"))?;
        let (name, ty) = match c.find('[').and_then(|b| c[..b].rfind(':')) {
            Some(colon) => (&c[..colon], Some(&c[colon + 1..])),
            None => (c, None),
        };
        check_name(name)?;
        match (self.init_pos.get(name), ty) {
            (Some(&(i, _)), Some(ty)) => {
                let (data_type, dims) = tensor_type(ty)?;
                let t = &self.inits[i];
                if t.data_type != Some(data_type) || t.dims != dims {
                    return Err(format!(
                        "constant @{name} is declared {} and used as {ty}",
                        type_text(t)
                    ));
                }
            }
            (Some(_), None) => {}
            (None, Some(ty)) => {
                let (data_type, dims) = tensor_type(ty)?;
                let t = tensor(name, data_type, &dims, None)?;
                self.init_pos
                    .insert(name.to_string(), (self.inits.len(), false));
                self.inits.push(t);
            }
            (None, None) => {
                return Err(format!(
                    "constant @{name} has no `init` line above and no type here"
                ))
            }
        }
        Ok(name.to_string())
    }

    fn finish(self) -> std::result::Result<ModelProto, String> {
        let mut opsets = self.opsets;
        let onnx = *opsets.entry(String::new()).or_insert(17);
        let opset_import = opsets
            .into_iter()
            .map(|(d, v)| OperatorSetIdProto {
                domain: Some(d),
                version: Some(if v == 0 { 1 } else { v }),
            })
            .collect();
        Ok(ModelProto {
            ir_version: Some(if onnx >= 21 { 10 } else { 8 }),
            producer_name: Some("onnx-normopt text".into()),
            opset_import,
            graph: Some(GraphProto {
                node: self.nodes,
                name: Some(self.name.unwrap_or_else(|| "text".into())),
                initializer: self.inits,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// `%name` → `name`.
fn value_name(s: &str) -> std::result::Result<&str, String> {
    let n = s
        .strip_prefix('%')
        .ok_or_else(|| format!("value {s:?} does not start with `%`"))?;
    check_name(n)?;
    Ok(n)
}

fn check_name(n: &str) -> std::result::Result<(), String> {
    if n.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = n
        .chars()
        .find(|c| c.is_whitespace() || ",()[]".contains(*c))
    {
        return Err(format!("name {n:?} contains {c:?}"));
    }
    Ok(())
}

/// Split `s` at `sep` outside brackets and quotes; pieces trimmed, empty ones dropped.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quoted, mut escaped) = (0i32, false, false);
    for c in s.chars() {
        if quoted {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The element type named `s` (the dump's names, and a few ONNX spellings).
fn elem_type(s: &str) -> std::result::Result<i32, String> {
    let alias = match s {
        "float" | "float32" => Some(dt::FLOAT),
        "double" | "float64" => Some(dt::DOUBLE),
        "float16" | "half" => Some(dt::FLOAT16),
        "bfloat16" => Some(dt::BFLOAT16),
        "int64" => Some(dt::INT64),
        "int32" => Some(dt::INT32),
        _ => None,
    };
    alias
        .or_else(|| (1..=dt::BFLOAT16).find(|&t| dt::name(t) == s))
        .ok_or_else(|| format!("unknown element type {s:?}"))
}

/// `f32[2,batch,?]` → (type, dims); `[*]` → no shape.
fn parse_type(s: &str) -> std::result::Result<(i32, Option<Vec<String>>), String> {
    let (ty, dims) = s
        .split_once('[')
        .and_then(|(t, d)| Some((t, d.strip_suffix(']')?)))
        .ok_or_else(|| format!("type {s:?} is not `type[dims]`"))?;
    let t = elem_type(ty.trim())?;
    if dims.trim() == "*" {
        return Ok((t, None));
    }
    let dims = dims
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    Ok((t, Some(dims)))
}

/// A constant's type: numeric dims only.
fn tensor_type(s: &str) -> std::result::Result<(i32, Vec<i64>), String> {
    let (t, dims) = parse_type(s)?;
    let dims = dims.ok_or("a constant needs its dims")?;
    let dims = dims
        .iter()
        .map(|d| {
            d.parse::<i64>()
                .ok()
                .filter(|&v| v >= 0)
                .ok_or_else(|| format!("a constant's dim {d:?} is not a size"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((t, dims))
}

fn type_text(t: &TensorProto) -> String {
    let dims: Vec<String> = t.dims.iter().map(i64::to_string).collect();
    format!("{}[{}]", dt::name(t.data_type.unwrap_or(0)), dims.join(","))
}

fn value_info(name: &str, ty: Option<&str>) -> std::result::Result<ValueInfoProto, String> {
    let r#type = match ty {
        None | Some("?") => None,
        Some(ty) => {
            let (elem, dims) = parse_type(ty)?;
            let shape = dims.map(|dims| TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| {
                        let mut dim = tensor_shape_proto::Dimension::default();
                        if let Ok(v) = d.parse::<i64>() {
                            dim.dim_value = Some(v);
                        } else if d != "?" {
                            dim.dim_param = Some(d.clone());
                        }
                        dim
                    })
                    .collect(),
            });
            Some(TypeProto {
                tensor_type: Some(type_proto::Tensor {
                    elem_type: Some(elem),
                    shape,
                }),
                ..Default::default()
            })
        }
    };
    Ok(ValueInfoProto {
        name: Some(name.to_string()),
        r#type,
        ..Default::default()
    })
}

/// A constant with `values` (`random(seed)`, `fill(v)`, `[…]`; `None`: random seeded by name).
fn tensor(
    name: &str,
    data_type: i32,
    dims: &[i64],
    values: Option<&str>,
) -> std::result::Result<TensorProto, String> {
    let count = crate::tensor::element_count(dims)?;
    if count > 1 << 20 {
        return Err(format!(
            "constant @{name} has {count} elements: too many for text"
        ));
    }
    let int = !crate::tensor::is_float(data_type);
    let random = |seed: u64| -> Vec<f64> {
        let mut s = seed;
        (0..count)
            .map(|_| {
                let u = (splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
                if int {
                    (u * 4.0).floor()
                } else {
                    2.0 * u - 1.0
                }
            })
            .collect()
    };
    let vals: Vec<f64> = match values {
        None => random(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })),
        Some(v) => {
            if let Some(arg) = v.strip_prefix("random(").and_then(|r| r.strip_suffix(')')) {
                random(
                    arg.trim()
                        .parse()
                        .map_err(|_| format!("random seed {arg:?} is not a number"))?,
                )
            } else if let Some(arg) = v.strip_prefix("fill(").and_then(|r| r.strip_suffix(')')) {
                vec![number(arg)?; count]
            } else if let Some(list) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                let vals = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(number)
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                if vals.len() != count {
                    return Err(format!(
                        "constant @{name} has {count} elements, the list {}",
                        vals.len()
                    ));
                }
                vals
            } else {
                return Err(format!(
                    "values {v:?} are not random(SEED), fill(V) or [v, …]"
                ));
            }
        }
    };
    let raw = if data_type == dt::BOOL {
        vals.iter()
            .map(|&v| u8::from(v != 0.0))
            .collect::<Vec<u8>>()
            .into()
    } else {
        crate::tensor::encode_f64(&vals, data_type)?
    };
    Ok(TensorProto {
        dims: dims.to_vec(),
        data_type: Some(data_type),
        name: Some(name.to_string()),
        raw_data: Some(raw),
        ..Default::default()
    })
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn number(s: &str) -> std::result::Result<f64, String> {
    let s = s.trim();
    match s {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("{s:?} is not a number")),
    }
}

fn is_float_text(s: &str) -> bool {
    s.contains(['.', 'e', 'E']) || s.contains("inf") || s.contains("NaN") || s.contains("nan")
}

/// A Rust-debug-quoted string's contents (the dump writes strings with `{:?}`).
fn unquote(s: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(c @ ('\\' | '"' | '\'')) => out.push(c),
            other => return Err(format!("unsupported escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// `name=value`.
fn attr(s: &str) -> std::result::Result<AttributeProto, String> {
    let (name, v) = s
        .split_once('=')
        .ok_or_else(|| format!("attribute {s:?} is not name=value"))?;
    let mut a = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    if let Some(q) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        a.r#type = Some(at::STRING);
        a.s = Some(unquote(q)?.into_bytes().into());
    } else if let Some(list) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let items: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.iter().any(|i| is_float_text(i)) {
            a.r#type = Some(at::FLOATS);
            a.floats = items
                .iter()
                .map(|i| number(i).map(|f| f as f32))
                .collect::<std::result::Result<_, _>>()?;
        } else {
            a.r#type = Some(at::INTS);
            a.ints = items
                .iter()
                .map(|i| i.parse().map_err(|_| format!("{i:?} is not an integer")))
                .collect::<std::result::Result<_, _>>()?;
        }
    } else if v.starts_with('<') || v.contains('[') {
        return Err(format!(
            "attribute {name}: tensor and graph attributes have no text form"
        ));
    } else if is_float_text(v) {
        a.r#type = Some(at::FLOAT);
        a.f = Some(number(v)? as f32);
    } else {
        a.r#type = Some(at::INT);
        a.i = Some(
            v.parse()
                .map_err(|_| format!("attribute {name}: {v:?} is not a value"))?,
        );
    }
    Ok(a)
}
