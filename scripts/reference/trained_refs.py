"""Golden values for ivg-train: checkpoints written by `ivg train` load in
transformers and compute what ivg computes, and the DPO loss of a fixed batch.

Run by hand (see README.md here) after make_trained_fixtures.sh has trained
the tiny checkpoints; writes crates/ivg-train/tests/fixtures/trained/expected.json.
"""
import json
import pathlib
import sys

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAINED = ROOT / "crates/ivg-train/tests/fixtures/trained"
TINY = ROOT / "crates/ivg-models/tests/fixtures/tiny"
torch.set_grad_enabled(False)


def causal(path, dtype=torch.float32):
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()


def seq_lp(model, prompt, response):
    """Summed log-probability of `response` after `prompt`, float64."""
    ids = torch.tensor([prompt + response])
    lp = F.log_softmax(model(ids).logits[0].double(), -1)
    return sum(lp[len(prompt) + k - 1, t].item() for k, t in enumerate(response))


def dpo_value():
    """The fixed batch of crates/ivg-train/tests/common (`batch()`): policy the
    tiny Llama, reference the tiny Qwen2, beta 0.5, all in float64:
    mean_i softplus(-beta * ((pi_w - ref_w) - (pi_l - ref_l)))."""
    policy = causal(TINY / "llama", torch.float64)
    ref = causal(TINY / "qwen2", torch.float64)
    chosen = [([5, 17, 3], [9, 12, 40]), ([40, 41, 42, 43, 44], [7, 8])]
    rejected = [([5, 17, 3], [60, 61]), ([40, 41, 42, 43, 44], [1, 2, 3, 4])]
    beta, losses = 0.5, []
    for (pc, rc), (pr, rr) in zip(chosen, rejected):
        z = beta * ((seq_lp(policy, pc, rc) - seq_lp(ref, pc, rc)) - (seq_lp(policy, pr, rr) - seq_lp(ref, pr, rr)))
        losses.append(F.softplus(torch.tensor(-z, dtype=torch.float64)).item())
    return {"beta": beta, "loss": sum(losses) / len(losses)}


def main():
    ids = [5, 40, 12, 19, 6, 1]
    sft = causal(TRAINED / "sft")
    lm_logits = sft(torch.tensor([ids])).logits[0].tolist()
    rm = AutoModelForSequenceClassification.from_pretrained(TRAINED / "reward", dtype=torch.float32).eval()
    hidden = rm.model(torch.tensor([ids])).last_hidden_state
    scores = rm.score(hidden)[0, :, 0].tolist()
    pooled = rm(torch.tensor([ids])).logits[0, 0].item()
    clf = AutoModelForSequenceClassification.from_pretrained(TRAINED / "classifier", dtype=torch.float32).eval()
    texts = [[2, 10, 13, 16, 3], [2, 20, 23, 3]]
    n = max(map(len, texts))
    batch = torch.tensor([t + [0] * (n - len(t)) for t in texts])
    mask = torch.tensor([[1] * len(t) + [0] * (n - len(t)) for t in texts])
    clf_logits = clf(input_ids=batch, attention_mask=mask).logits.tolist()
    out = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0]},
        "ids": ids,
        "sft_logits": lm_logits,
        "reward_scores": scores,
        "reward_pooled": pooled,
        "classifier_texts": texts,
        "classifier_logits": clf_logits,
        "dpo_fixed_batch": dpo_value(),
    }
    (TRAINED / "expected.json").write_text(json.dumps(out, indent=1))
    print("wrote", TRAINED / "expected.json", "dpo", out["dpo_fixed_batch"])


if __name__ == "__main__":
    main()
