//! Snapshot tests (insta): the `inspect` report of several model families, and the graph dump
//! of a rewritten model. Refresh with `INSTA_UPDATE=always cargo test --test snapshots` and
//! review the diff like code.

mod common;

use onnx_normopt::ir::{dump, Model};
use onnx_normopt::passes::{self, Options};

/// The pass's options with every patch checked as it is applied.
fn checked() -> Options {
    Options {
        check_each_patch: true,
        ..Options::default()
    }
}
use std::path::Path;

fn inspect(rel: &str) -> String {
    let model = Model::load(Path::new(rel)).expect("testdata model loads");
    passes::inspect(&model, &checked())
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
    let mut r = passes::inspect(&model, &checked()).unwrap();
    r.ops_before.clear();
    r.ops_after.clear();
    insta::assert_json_snapshot!(r);
}

#[test]
fn rewritten_graph_dump_mpt_torchscript14() {
    let model = Model::load(Path::new("testdata/models/mpt_ts14_fp32.onnx")).unwrap();
    let out = common::pass::run(model, &checked()).unwrap();
    assert!(out.rewritten());
    insta::assert_snapshot!(dump::dump(&out.model.graph));
}

/// `--target crmsnorm --emit custom` on GPT-2 (2 layers, D = 32): the model's opset imports, its
/// op histogram, and every custom-op node (one per LayerNorm, width 32, reading width-31 values).
#[test]
fn rewritten_ops_gpt2_crmsnorm_custom_op() {
    let model = Model::load(Path::new("testdata/models/gpt2_dynamo18_fp32.onnx")).unwrap();
    let opts = Options {
        form: passes::OutputForm::Crms(passes::CrmsEmit::Custom),
        ..checked()
    };
    let out = common::pass::run(model, &opts).unwrap();
    assert!(out.rewritten());
    let mut text = String::new();
    for o in &out.model.to_proto_pending().opset_import {
        text += &format!(
            "opset_import {:?} {}\n",
            o.domain.as_deref().unwrap_or(""),
            o.version.unwrap_or(0)
        );
    }
    for (op, n) in &out.report.ops_after {
        text += &format!("{n:4} {op}\n");
    }
    for line in dump::dump(&out.model.graph).lines() {
        if line.contains("ai.onnx_normopt:") {
            text += line.trim();
            text.push('\n');
        }
    }
    insta::assert_snapshot!(text);
}
