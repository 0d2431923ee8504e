//! Snapshot tests (insta): the `inspect` report of several model families, and the graph dump
//! of a rewritten model. Refresh with `INSTA_UPDATE=always cargo test --test snapshots` and
//! review the diff like code.

use onnx_normopt::ir::{dump, Model};
use onnx_normopt::passes::{self, Options};
use std::path::Path;

fn inspect(rel: &str) -> String {
    let model = Model::load(Path::new(rel)).expect("testdata model loads");
    passes::inspect(&model, &Options::default())
        .expect("analysis runs")
        .inspect_text()
}

#[test]
fn inspect_gpt2_dynamo() {
    insta::assert_snapshot!(inspect("testdata/models/gpt2_dynamo18_fp32.onnx"));
}

#[test]
fn inspect_gpt_neox_parallel_torchscript14() {
    insta::assert_snapshot!(inspect("testdata/models/gpt_neox_ts14_fp32.onnx"));
}

#[test]
fn inspect_vit_ortfused() {
    insta::assert_snapshot!(inspect("testdata/models/vit_ortfused_fp32.onnx"));
}

#[test]
fn inspect_bloom_embedding_layernorm() {
    insta::assert_snapshot!(inspect("testdata/models/bloom_dynamo18_fp32.onnx"));
}

#[test]
fn inspect_clip_vision_pre_layernorm() {
    insta::assert_snapshot!(inspect("testdata/models/clip_vision_dynamo18_fp32.onnx"));
}

#[test]
fn inspect_bert_post_ln_refused() {
    insta::assert_snapshot!(inspect("testdata/models/bert_dynamo18_fp32.onnx"));
}

#[test]
fn inspect_gpt2_hidden_states_refused() {
    insta::assert_snapshot!(inspect("testdata/models/gpt2_hidden_dynamo18_fp32.onnx"));
}

#[test]
fn report_json_opt_project_in_out() {
    let model = Model::load(Path::new("testdata/models/opt_proj_dynamo18_fp32.onnx")).unwrap();
    let mut r = passes::inspect(&model, &Options::default()).unwrap();
    r.ops_before.clear();
    r.ops_after.clear();
    insta::assert_json_snapshot!(r);
}

#[test]
fn rewritten_graph_dump_mpt_torchscript14() {
    let model = Model::load(Path::new("testdata/models/mpt_ts14_fp32.onnx")).unwrap();
    let out = passes::run(model, &Options::default()).unwrap();
    assert!(out.rewritten());
    insta::assert_snapshot!(dump::dump(&out.model.graph));
}
