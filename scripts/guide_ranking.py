"""How well each guide ranks the texts chunk-level search ranks.

CBS keeps the candidates a value function orders highest among those of the
same prompt, so what matters is whether the value orders two continuations
of one prompt as the gold reward does. This script measures exactly that on
several continuations per prompt (e.g. unguided base samples labelled by the
gold classifier, which is what CBS ranks at its first chunk): for every pair
of continuations of one prompt whose gold rewards differ, the share
of pairs each value orders as gold does, at response prefixes of
5, 10, ..., 50 tokens (CBS's chunk boundaries at L = 5) and at full length.

- implicit value (CBSi): sum over the prefix of
  log pi_tuned(y_i | ...) - log pi_ref(y_i | ...)   (beta = 1)
- explicit value (CBSe): Q(s_t, y_t), the value model's logit of the prefix's
  last token given what precedes it (its FUDGE logit of a positive review)

The guides see the prompt without a template, as in the experiment. Outputs
are re-tokenized with the guides' tokenizer, which may differ from the
decoded tokens at a few boundaries; a diagnostic, not a test.

Usage: python3 scripts/guide_ranking.py WORK_DIR FILE...
  WORK_DIR: the experiment's work directory (its sft, dpo and value stages)
  FILE: JSONL rows with `prompt`, `output` or `response`, and `gold_reward`
  or `reward` (an experiment's samples.jsonl, or `ivg label` output)
Needs torch and transformers (the reference venv of scripts/reference).
"""
import itertools
import json
import os
import sys

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

CUTS = [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, None]


def latest(stage_dir):
    with open(os.path.join(stage_dir, "latest")) as f:
        return os.path.join(stage_dir, f.read().strip())


def load(stage_dir):
    model = LlamaForCausalLM.from_pretrained(latest(stage_dir), torch_dtype=torch.float32)
    return model.eval()


def token_logits(model, ids, n_prompt):
    """[response_len, vocab] logits predicting each response token."""
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0]
    return out[n_prompt - 1 : len(ids) - 1]


def values(tok, models, prompt, output):
    """Implicit and explicit values at every response prefix length."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(prompt + output, add_special_tokens=False)["input_ids"][len(p) :]
    ids = p + r
    y = torch.tensor(r)
    rows = torch.arange(len(r))
    lt = torch.log_softmax(token_logits(models["dpo"], ids, len(p)), -1)[rows, y]
    lr = torch.log_softmax(token_logits(models["sft"], ids, len(p)), -1)[rows, y]
    q = token_logits(models["value"], ids, len(p))[rows, y]
    return torch.cumsum(lt - lr, 0).tolist(), q.tolist()


def at(series, cut):
    return series[-1] if cut is None or cut > len(series) else series[cut - 1]


def read_rows(files):
    """Continuations grouped by prompt, as (gold reward, prompt, text)."""
    by_prompt = {}
    for path in files:
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                text = row.get("output", row.get("response"))
                gold = row.get("gold_reward", row.get("reward"))
                if text:
                    by_prompt.setdefault(row["prompt"], []).append((gold, text))
    return by_prompt


def main(work, files):
    tok = AutoTokenizer.from_pretrained(latest(os.path.join(work, "sft")))
    models = {name: load(os.path.join(work, name)) for name in ["sft", "dpo", "value"]}
    by_prompt = read_rows(files)
    scored = {
        prompt: [(gold, *values(tok, models, prompt, text)) for gold, text in rows]
        for prompt, rows in by_prompt.items()
    }
    n_rows = sum(len(r) for r in scored.values())
    print(f"{', '.join(files)}: {n_rows} continuations of {len(scored)} prompts")
    print("| prefix tokens | pairs | implicit value agrees with gold | explicit value agrees |")
    print("|---|---|---|---|")
    for cut in CUTS:
        n = agree_i = agree_e = 0
        for rows in scored.values():
            for (ga, ia, ea), (gb, ib, eb) in itertools.combinations(rows, 2):
                if ga == gb:
                    continue
                n += 1
                sign = ga > gb
                agree_i += (at(ia, cut) > at(ib, cut)) == sign
                agree_e += (at(ea, cut) > at(eb, cut)) == sign
        label = "full" if cut is None else str(cut)
        print(f"| {label} | {n} | {agree_i / n:.3f} | {agree_e / n:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
