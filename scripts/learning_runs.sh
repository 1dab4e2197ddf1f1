#!/usr/bin/env bash
# The "it learns" runs of issue 4, from the repository root (about two hours on
# one thread; every step resumes if interrupted):
#   1. IMDB data; the gold classifier (configs/train/gold_classifier.toml) and
#      its accuracy on 2,000 test-side reviews;
#   2. a small Llama LM on IMDB train text (imdb_lm.toml);
#   3. SmolLM2-135M-Instruct samples, two per prompt, for train-side and
#      test-side prompts, labelled by the gold classifier: rewards and pairs;
#   4. a reward model on the train pairs (imdb_reward.toml), pairwise accuracy
#      on the test pairs; a value model on the train rewards (imdb_value.toml),
#      correlation with the final reward by prefix length on the test rewards;
#   5. reward models on pairs of real review openings labelled by the gold
#      classifier: the small Llama (imdb_reward_snippets.toml) and MiniLM
#      (imdb_reward_minilm.toml), with accuracy by gold margin.
set -euo pipefail
IVG=${IVG:-target/release/ivg}
T="--threads ${THREADS:-1}"
cargo build --release -q -p ivg-cli
$IVG data imdb --out data/imdb
[ -f runs/gold_classifier/checkpoint-320/model.safetensors ] ||
  $IVG $T train classifier --config configs/train/gold_classifier.toml
$IVG $T eval classifier --model runs/gold_classifier --data data/imdb/imdb_test.jsonl
[ -f runs/imdb_lm/checkpoint-200/model.safetensors ] ||
  $IVG $T train sft --config configs/train/imdb_lm.toml
mkdir -p runs/pairs
head -n 1000 data/imdb/imdb_train_prompts.jsonl > runs/pairs/train_prompts.jsonl
head -n 250 data/imdb/imdb_test_prompts.jsonl > runs/pairs/test_prompts.jsonl
for split in train test; do
  $IVG $T sample --model asset:smollm2 --prompts runs/pairs/${split}_prompts.jsonl \
    --out runs/pairs/${split}_samples.jsonl --n 2 --batch 16 --max-new-tokens 48 \
    --temperature 1.0 --base-template "Here is a movie review from imdb: {prompt}" --seed 1
  $IVG $T label --data runs/pairs/${split}_samples.jsonl --model runs/gold_classifier \
    --out runs/pairs/${split}_rewards.jsonl
  $IVG $T label --data runs/pairs/${split}_samples.jsonl --model runs/gold_classifier \
    --pairs --out runs/pairs/${split}_pairs.jsonl
done
$IVG $T train reward --config configs/train/imdb_reward.toml
$IVG $T train value --config configs/train/imdb_value.toml
mkdir -p runs/snip
for split in train:8000 test:1000; do
  name=${split%%:*}; rows=${split##*:}
  head -n "$rows" data/imdb/imdb_${name}.jsonl | python3 -c '
import json, sys
for line in sys.stdin:
    words = json.loads(line)["text"].split()[:40]
    print(json.dumps({"prompt": "", "response": " ".join(words)}))' > runs/snip/${name}_snippets.jsonl
  $IVG $T label --data runs/snip/${name}_snippets.jsonl --model runs/gold_classifier \
    --pairs --pair-by adjacent --out runs/snip/${name}_pairs.jsonl
done
$IVG $T train reward --config configs/train/imdb_reward_snippets.toml
$IVG $T train reward --config configs/train/imdb_reward_minilm.toml
$IVG $T label --data runs/snip/test_snippets.jsonl --model runs/gold_classifier --out runs/snip/test_gold.jsonl
$IVG $T label --kind reward --data runs/snip/test_snippets.jsonl --model runs/imdb_reward_minilm \
  --out runs/snip/test_rm_minilm.jsonl
python3 scripts/pair_accuracy_by_margin.py runs/snip/test_gold.jsonl runs/snip/test_rm_minilm.jsonl
