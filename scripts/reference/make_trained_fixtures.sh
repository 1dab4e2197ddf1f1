#!/usr/bin/env bash
# Trains the tiny checkpoints of crates/ivg-train/tests/fixtures/trained with
# `ivg train` (sft on a fresh tied Llama, a Qwen2 reward model, a BERT
# classifier), keeps their HF files, then has transformers compute the golden
# outputs (trained_refs.py). Run by hand from the repository root:
#   bash scripts/reference/make_trained_fixtures.sh [/root/refenv/venv/bin/python]
set -euo pipefail
PY=${1:-/root/refenv/venv/bin/python}
ROOT=$(pwd)
FIX=$ROOT/crates/ivg-train/tests/fixtures/trained
TINY=$ROOT/crates/ivg-models/tests/fixtures/tiny
cargo build -q -p ivg-cli
IVG=$ROOT/target/debug/ivg
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$FIX"/data "$FIX"/*.toml "$WORK"/
for m in llama qwen2 bert; do
  mkdir -p "$WORK/base/$m"
  cp "$TINY/$m/config.json" "$TINY/$m/model.safetensors" "$WORK/base/$m/"
  "$PY" -c "
import json; v={f't{i}': i for i in range(96)}
json.dump({'version':'1.0','truncation':None,'padding':None,'added_tokens':[],'normalizer':None,'pre_tokenizer':{'type':'WhitespaceSplit'},'post_processor':None,'decoder':{'type':'WordPiece','prefix':'##','cleanup':False},'model':{'type':'WordLevel','vocab':v,'unk_token':'t0'}}, open('$WORK/base/$m/tokenizer.json','w'))
json.dump({'eos_token':'t1','bos_token':'t2'}, open('$WORK/base/$m/tokenizer_config.json','w'))"
done
# The BERT fixture without its classifier and `bert.` prefix, like all-MiniLM-L6-v2.
"$PY" -c "
from safetensors.torch import load_file, save_file
p='$WORK/base/bert/model.safetensors'; t=load_file(p)
save_file({k.removeprefix('bert.'): v for k, v in t.items() if not k.startswith('classifier')}, p)"
cd "$WORK"
for k in sft reward classifier; do
  "$IVG" --threads 1 train "$k" --config "$k.toml" > /dev/null
  rm -rf "${FIX:?}/$k" && mkdir -p "$FIX/$k"
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json train_config.json; do
    cp "out/$k/checkpoint-8/$f" "$FIX/$k/"
  done
done
cd "$ROOT"
"$PY" scripts/reference/trained_refs.py
