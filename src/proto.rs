//! The ONNX protobuf messages, written by hand as prost types from the format's field numbers.
//! (One file on purpose, though over 600 lines: it is the whole message set of `onnx.proto`, in
//! its order, so that its completeness, which the round trip depends on, can be checked against
//! the format in one read.)
//!
//! Invariant: these types cover the *whole* current ONNX IR (v11), not just the parts the pass
//! touches. prost drops unknown fields, so completeness is what makes a decode → encode round trip
//! lossless. Three choices keep the round trip byte-identical with files written by the reference
//! (C++/upb) serialisers:
//! - `onnx.proto` is proto2: every scalar is `optional` (presence kept, `Some(0)` is written), and
//!   repeated scalars are unpacked unless the format says `[packed = true]`;
//! - fields are declared in ascending tag order (prost encodes in declaration order, the reference
//!   serialisers in tag order);
//! - `oneof`s are modelled as separate optional fields, so their tags interleave correctly with the
//!   other fields (`TypeProto.denotation` = 6 sits between its oneof members 5 and 7).
//!
//! Large payloads (`raw_data`, `string_data`, attribute `s`) are `bytes::Bytes`, so decoding from a
//! memory map borrows instead of copying.

use bytes::Bytes;

/// `TensorProto.DataType` values (the ones the pass reads or writes by name).
pub mod data_type {
    /// `TensorProto.DataType.UNDEFINED` = 0.
    pub const UNDEFINED: i32 = 0;
    /// `TensorProto.DataType.FLOAT` = 1.
    pub const FLOAT: i32 = 1;
    /// `TensorProto.DataType.UINT8` = 2.
    pub const UINT8: i32 = 2;
    /// `TensorProto.DataType.INT8` = 3.
    pub const INT8: i32 = 3;
    /// `TensorProto.DataType.UINT16` = 4.
    pub const UINT16: i32 = 4;
    /// `TensorProto.DataType.INT16` = 5.
    pub const INT16: i32 = 5;
    /// `TensorProto.DataType.INT32` = 6.
    pub const INT32: i32 = 6;
    /// `TensorProto.DataType.INT64` = 7.
    pub const INT64: i32 = 7;
    /// `TensorProto.DataType.STRING` = 8.
    pub const STRING: i32 = 8;
    /// `TensorProto.DataType.BOOL` = 9.
    pub const BOOL: i32 = 9;
    /// `TensorProto.DataType.FLOAT16` = 10.
    pub const FLOAT16: i32 = 10;
    /// `TensorProto.DataType.DOUBLE` = 11.
    pub const DOUBLE: i32 = 11;
    /// `TensorProto.DataType.UINT32` = 12.
    pub const UINT32: i32 = 12;
    /// `TensorProto.DataType.UINT64` = 13.
    pub const UINT64: i32 = 13;
    /// `TensorProto.DataType.COMPLEX64` = 14.
    pub const COMPLEX64: i32 = 14;
    /// `TensorProto.DataType.COMPLEX128` = 15.
    pub const COMPLEX128: i32 = 15;
    /// `TensorProto.DataType.BFLOAT16` = 16.
    pub const BFLOAT16: i32 = 16;
    /// The largest data type code of the current format (FLOAT8E4M3FN .. INT2 are 17..=26).
    pub const MAX_KNOWN: i32 = 26;

    /// Human name of a data type code, for messages and dumps.
    pub fn name(t: i32) -> &'static str {
        match t {
            FLOAT => "f32",
            UINT8 => "u8",
            INT8 => "i8",
            UINT16 => "u16",
            INT16 => "i16",
            INT32 => "i32",
            INT64 => "i64",
            STRING => "string",
            BOOL => "bool",
            FLOAT16 => "f16",
            DOUBLE => "f64",
            UINT32 => "u32",
            UINT64 => "u64",
            COMPLEX64 => "c64",
            COMPLEX128 => "c128",
            BFLOAT16 => "bf16",
            17..=26 => "f8/i4/u4/f4/i2",
            _ => "unknown",
        }
    }

    /// Bytes per element in `raw_data`, for the types that have a whole number of bytes.
    pub fn byte_size(t: i32) -> Option<usize> {
        match t {
            FLOAT | INT32 | UINT32 => Some(4),
            UINT8 | INT8 | BOOL => Some(1),
            UINT16 | INT16 | FLOAT16 | BFLOAT16 => Some(2),
            INT64 | DOUBLE | UINT64 | COMPLEX64 => Some(8),
            COMPLEX128 => Some(16),
            17..=20 | 24 => Some(1),
            _ => None,
        }
    }
}

/// `AttributeProto.AttributeType` values.
pub mod attribute_type {
    /// `AttributeProto.AttributeType.UNDEFINED` = 0.
    pub const UNDEFINED: i32 = 0;
    /// `AttributeProto.AttributeType.FLOAT` = 1.
    pub const FLOAT: i32 = 1;
    /// `AttributeProto.AttributeType.INT` = 2.
    pub const INT: i32 = 2;
    /// `AttributeProto.AttributeType.STRING` = 3.
    pub const STRING: i32 = 3;
    /// `AttributeProto.AttributeType.TENSOR` = 4.
    pub const TENSOR: i32 = 4;
    /// `AttributeProto.AttributeType.GRAPH` = 5.
    pub const GRAPH: i32 = 5;
    /// `AttributeProto.AttributeType.FLOATS` = 6.
    pub const FLOATS: i32 = 6;
    /// `AttributeProto.AttributeType.INTS` = 7.
    pub const INTS: i32 = 7;
    /// `AttributeProto.AttributeType.STRINGS` = 8.
    pub const STRINGS: i32 = 8;
    /// `AttributeProto.AttributeType.TENSORS` = 9.
    pub const TENSORS: i32 = 9;
    /// `AttributeProto.AttributeType.GRAPHS` = 10.
    pub const GRAPHS: i32 = 10;
    /// `AttributeProto.AttributeType.SPARSE_TENSOR` = 11.
    pub const SPARSE_TENSOR: i32 = 11;
    /// `AttributeProto.AttributeType.SPARSE_TENSORS` = 12.
    pub const SPARSE_TENSORS: i32 = 12;
    /// `AttributeProto.AttributeType.TYPE_PROTO` = 13.
    pub const TYPE_PROTO: i32 = 13;
    /// `AttributeProto.AttributeType.TYPE_PROTOS` = 14.
    pub const TYPE_PROTOS: i32 = 14;
}

/// `TensorProto.DataLocation` values.
pub mod data_location {
    /// `TensorProto.DataLocation.DEFAULT` = 0.
    pub const DEFAULT: i32 = 0;
    /// `TensorProto.DataLocation.EXTERNAL` = 1.
    pub const EXTERNAL: i32 = 1;
}

/// A model: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The format's field `ir_version` (tag 1).
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// The format's field `producer_name` (tag 2).
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// The format's field `producer_version` (tag 3).
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// The format's field `domain` (tag 4).
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// The format's field `model_version` (tag 5).
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// The format's field `doc_string` (tag 6).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The format's field `graph` (tag 7).
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// The format's repeated field `opset_import` (tag 8).
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The format's repeated field `metadata_props` (tag 14).
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// The format's repeated field `training_info` (tag 20).
    #[prost(message, repeated, tag = "20")]
    pub training_info: Vec<TrainingInfoProto>,
    /// The format's repeated field `functions` (tag 25).
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
    /// The format's repeated field `configuration` (tag 26).
    #[prost(message, repeated, tag = "26")]
    pub configuration: Vec<DeviceConfigurationProto>,
}

/// A key/value string pair (metadata, external data fields, bindings).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The format's field `key` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// The format's field `value` (tag 2).
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// An operator set a model or function imports.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// The format's field `domain` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// The format's field `version` (tag 2).
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// Training information: an initialisation and an update algorithm.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainingInfoProto {
    /// The format's field `initialization` (tag 1).
    #[prost(message, optional, tag = "1")]
    pub initialization: Option<GraphProto>,
    /// The format's field `algorithm` (tag 2).
    #[prost(message, optional, tag = "2")]
    pub algorithm: Option<GraphProto>,
    /// The format's repeated field `initialization_binding` (tag 3).
    #[prost(message, repeated, tag = "3")]
    pub initialization_binding: Vec<StringStringEntryProto>,
    /// The format's repeated field `update_binding` (tag 4).
    #[prost(message, repeated, tag = "4")]
    pub update_binding: Vec<StringStringEntryProto>,
}

/// A device configuration for multi-device models.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceConfigurationProto {
    /// The format's field `name` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The format's field `num_devices` (tag 2).
    #[prost(int32, optional, tag = "2")]
    pub num_devices: Option<i32>,
    /// The format's repeated field `device` (tag 3).
    #[prost(string, repeated, tag = "3")]
    pub device: Vec<String>,
}

/// A graph: nodes, initializers, inputs, outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The format's repeated field `node` (tag 1).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The format's field `name` (tag 2).
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// The format's repeated field `initializer` (tag 5).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// The format's field `doc_string` (tag 10).
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    /// The format's repeated field `input` (tag 11).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// The format's repeated field `output` (tag 12).
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// The format's repeated field `value_info` (tag 13).
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// The format's repeated field `quantization_annotation` (tag 14).
    #[prost(message, repeated, tag = "14")]
    pub quantization_annotation: Vec<TensorAnnotation>,
    /// The format's repeated field `sparse_initializer` (tag 15).
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// The format's repeated field `metadata_props` (tag 16).
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// One node (an operator call) of a graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// The format's repeated field `input` (tag 1).
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// The format's repeated field `output` (tag 2).
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The format's field `name` (tag 3).
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    /// The format's field `op_type` (tag 4).
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    /// The format's repeated field `attribute` (tag 5).
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// The format's field `doc_string` (tag 6).
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The format's field `domain` (tag 7).
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    /// The format's field `overload` (tag 8).
    #[prost(string, optional, tag = "8")]
    pub overload: Option<String>,
    /// The format's repeated field `metadata_props` (tag 9).
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// The format's repeated field `device_configurations` (tag 10).
    #[prost(message, repeated, tag = "10")]
    pub device_configurations: Vec<NodeDeviceConfigurationProto>,
}

/// How a node is placed on devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDeviceConfigurationProto {
    /// The format's field `configuration_id` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub configuration_id: Option<String>,
    /// The format's repeated field `sharding_spec` (tag 2).
    #[prost(message, repeated, tag = "2")]
    pub sharding_spec: Vec<ShardingSpecProto>,
    /// The format's field `pipeline_stage` (tag 3).
    #[prost(int32, optional, tag = "3")]
    pub pipeline_stage: Option<i32>,
}

/// How one tensor is sharded across devices.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardingSpecProto {
    /// The format's field `tensor_name` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// The format's repeated field `device` (tag 2).
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub device: Vec<i64>,
    /// The format's repeated field `index_to_device_group_map` (tag 3).
    #[prost(message, repeated, tag = "3")]
    pub index_to_device_group_map: Vec<IntIntListEntryProto>,
    /// The format's repeated field `sharded_dim` (tag 4).
    #[prost(message, repeated, tag = "4")]
    pub sharded_dim: Vec<ShardedDimProto>,
}

/// An int64 key with a list of int64 values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntIntListEntryProto {
    /// The format's field `key` (tag 1).
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// The format's repeated field `value` (tag 2).
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

/// The sharding of one axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardedDimProto {
    /// The format's field `axis` (tag 1).
    #[prost(int64, optional, tag = "1")]
    pub axis: Option<i64>,
    /// The format's repeated field `simple_sharding` (tag 2).
    #[prost(message, repeated, tag = "2")]
    pub simple_sharding: Vec<SimpleShardedDimProto>,
}

/// A simple sharding of one dimension (`dim` oneof modelled as two optionals).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleShardedDimProto {
    /// The format's field `dim_value` (tag 1).
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// The format's field `dim_param` (tag 2).
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
    /// The format's field `num_shards` (tag 3).
    #[prost(int64, optional, tag = "3")]
    pub num_shards: Option<i64>,
}

/// A named attribute of a node or function.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// The format's field `name` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The format's field `f` (tag 2).
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// The format's field `i` (tag 3).
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// The format's field `s` (tag 4).
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub s: Option<Bytes>,
    /// The format's field `t` (tag 5).
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// The format's field `g` (tag 6).
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// The format's repeated field `floats` (tag 7).
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    /// The format's repeated field `ints` (tag 8).
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// The format's repeated field `strings` (tag 9).
    #[prost(bytes = "bytes", repeated, tag = "9")]
    pub strings: Vec<Bytes>,
    /// The format's repeated field `tensors` (tag 10).
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// The format's repeated field `graphs` (tag 11).
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    /// The format's field `doc_string` (tag 13).
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    /// The format's field `tp` (tag 14).
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    /// The format's repeated field `type_protos` (tag 15).
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
    /// The format's field `type` (tag 20).
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
    /// The format's field `ref_attr_name` (tag 21).
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    /// The format's field `sparse_tensor` (tag 22).
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
    /// The format's repeated field `sparse_tensors` (tag 23).
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensorProto>,
}

/// A named, typed value of a graph (input, output or intermediate).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The format's field `name` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The format's field `type` (tag 2).
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    /// The format's field `doc_string` (tag 3).
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
    /// The format's repeated field `metadata_props` (tag 4).
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// A tensor value: dims, element type, and its data in one of the typed fields, `raw_data`, or
/// an external file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The format's repeated field `dims` (tag 1).
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// The format's field `data_type` (tag 2).
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    /// The format's field `segment` (tag 3).
    #[prost(message, optional, tag = "3")]
    pub segment: Option<tensor_proto::Segment>,
    /// The format's repeated field `float_data` (tag 4).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// The format's repeated field `int32_data` (tag 5).
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// The format's repeated field `string_data` (tag 6).
    #[prost(bytes = "bytes", repeated, tag = "6")]
    pub string_data: Vec<Bytes>,
    /// The format's repeated field `int64_data` (tag 7).
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// The format's field `name` (tag 8).
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    /// The format's field `raw_data` (tag 9).
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub raw_data: Option<Bytes>,
    /// The format's repeated field `double_data` (tag 10).
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// The format's repeated field `uint64_data` (tag 11).
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// The format's field `doc_string` (tag 12).
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    /// The format's repeated field `external_data` (tag 13).
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// The format's field `data_location` (tag 14).
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
    /// The format's repeated field `metadata_props` (tag 16).
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// Nested messages of [`TensorProto`].
pub mod tensor_proto {
    /// A chunk of a tensor that is split over several messages.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Segment {
        /// The format's field `begin` (tag 1).
        #[prost(int64, optional, tag = "1")]
        pub begin: Option<i64>,
        /// The format's field `end` (tag 2).
        #[prost(int64, optional, tag = "2")]
        pub end: Option<i64>,
    }
}

/// A sparse tensor in COO form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// The format's field `values` (tag 1).
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// The format's field `indices` (tag 2).
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// The format's repeated field `dims` (tag 3).
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

/// A tensor shape: one entry per axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The format's repeated field `dim` (tag 1).
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One axis: a known size, a symbolic name, or neither (the `value` oneof as two optionals).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The format's field `dim_value` (tag 1).
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        /// The format's field `dim_param` (tag 2).
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
        /// The format's field `denotation` (tag 3).
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }
}

/// A value's type. Exactly one of the kind fields is set in a valid model (the `value` oneof).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The format's field `tensor_type` (tag 1).
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<type_proto::Tensor>,
    /// The format's field `sequence_type` (tag 4).
    #[prost(message, optional, boxed, tag = "4")]
    pub sequence_type: Option<Box<type_proto::Sequence>>,
    /// The format's field `map_type` (tag 5).
    #[prost(message, optional, boxed, tag = "5")]
    pub map_type: Option<Box<type_proto::Map>>,
    /// The format's field `denotation` (tag 6).
    #[prost(string, optional, tag = "6")]
    pub denotation: Option<String>,
    /// The format's field `opaque_type` (tag 7).
    #[prost(message, optional, tag = "7")]
    pub opaque_type: Option<type_proto::Opaque>,
    /// The format's field `sparse_tensor_type` (tag 8).
    #[prost(message, optional, tag = "8")]
    pub sparse_tensor_type: Option<type_proto::SparseTensor>,
    /// The format's field `optional_type` (tag 9).
    #[prost(message, optional, boxed, tag = "9")]
    pub optional_type: Option<Box<type_proto::Optional>>,
}

/// Nested messages of [`TypeProto`].
pub mod type_proto {
    use super::{TensorShapeProto, TypeProto};

    /// A dense tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// The format's field `elem_type` (tag 1).
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// The format's field `shape` (tag 2).
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// A sequence of values of one type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        /// The format's field `elem_type` (tag 1).
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// A map from a scalar key type to a value type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        /// The format's field `key_type` (tag 1).
        #[prost(int32, optional, tag = "1")]
        pub key_type: Option<i32>,
        /// The format's field `value_type` (tag 2).
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }

    /// An optional value of one type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Optional {
        /// The format's field `elem_type` (tag 1).
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// A sparse tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SparseTensor {
        /// The format's field `elem_type` (tag 1).
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// The format's field `shape` (tag 2).
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// An opaque type named by domain and name.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Opaque {
        /// The format's field `domain` (tag 1).
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        /// The format's field `name` (tag 2).
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
    }
}

/// Quantisation parameters attached to a tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorAnnotation {
    /// The format's field `tensor_name` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    /// The format's repeated field `quant_parameter_tensor_names` (tag 2).
    #[prost(message, repeated, tag = "2")]
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
}

/// A model-local function.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    /// The format's field `name` (tag 1).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The format's repeated field `input` (tag 4).
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    /// The format's repeated field `output` (tag 5).
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// The format's repeated field `attribute` (tag 6).
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// The format's repeated field `node` (tag 7).
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    /// The format's field `doc_string` (tag 8).
    #[prost(string, optional, tag = "8")]
    pub doc_string: Option<String>,
    /// The format's repeated field `opset_import` (tag 9).
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The format's field `domain` (tag 10).
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
    /// The format's repeated field `attribute_proto` (tag 11).
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    /// The format's repeated field `value_info` (tag 12).
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    /// The format's field `overload` (tag 13).
    #[prost(string, optional, tag = "13")]
    pub overload: Option<String>,
    /// The format's repeated field `metadata_props` (tag 14).
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}
