#!/usr/bin/env python3
"""Reference token ids for ivg-tokenize, produced with Hugging Face transformers.

Writes crates/ivg-tokenize/tests/fixtures/reference_ids.json: for SmolLM2 (GGUF),
Gemma 3 (GGUF) and all-MiniLM-L6-v2 (tokenizer.json), a set of test strings
with their ids (with and without special tokens), token strings and decoded
text, plus SmolLM2's chat prompt for a system+user conversation.

This is a reference tool, never a runtime dependency of ivg. Run it by hand
with the reference virtualenv (torch + transformers + gguf), e.g.

    /root/refenv/venv/bin/python scripts/reference/tokenizer_refs.py \
        --smollm2 ~/.cache/ivg/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --gemma3 ~/.cache/ivg/gemma3/gemma-3-270m-q4_k_m.gguf \
        --minilm ~/.cache/ivg/minilm

`--gemma3` also accepts the four `.part0N` pieces (concatenated in the order
given into a temporary file). Defaults are the ivg-assets cache paths
($IVG_CACHE_DIR, else $XDG_CACHE_HOME/ivg, else ~/.cache/ivg).

SmolLM2 note: transformers builds this GGUF's tokenizer with a plain
ByteLevel pre-tokenizer, while the model's original tokenizer.json (and ivg)
splits digits individually first. The script checks that both pipelines give
identical ids on every string written here and fails otherwise, so the
fixture is valid for either.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "crates/ivg-tokenize/tests/fixtures/reference_ids.json"

# Shared strings: unicode (accents, CJK, emoji), digits, odd whitespace.
COMMON_TEXTS = [
    "Hello world",
    "The café served crème brûlée to Zoë.",
    "日本語のテキストと中文字符",
    "Emoji: 🙂👍🏽 and a rare one 🫨 here",
    "12345",
    "Pi is 3.14159, e is 2.71828.",
    "tab\there  double  spaces",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n\nfour newlines\r\n",
    "MiXeD CaSe, punctuation!? (yes) [no] {maybe} <tag> a+b=c; x->y",
    "",
]

EXTRA_TEXTS = {
    "smollm2": ["<|im_start|>user\nHi there<|im_end|>\n", " 42 apples and 007 bonds"],
    "gemma3": ["<start_of_turn>user\nHi there<end_of_turn>\n", "Ǆ𓀀𠜎 byte fallback"],
    "minilm": ["[CLS] already special [SEP]", "Ünïcödé ÀÉÎÕÜ straße"],
}

SMOLLM2_CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 2+2? Answer in one word."},
]


def cache_root() -> Path:
    if os.environ.get("IVG_CACHE_DIR"):
        return Path(os.environ["IVG_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "ivg"
    return Path.home() / ".cache/ivg"


def parse_args():
    root = cache_root()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smollm2", type=Path, default=root / "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--gemma3", type=Path, nargs="+", default=[root / "gemma3/gemma-3-270m-q4_k_m.gguf"])
    p.add_argument("--minilm", type=Path, default=root / "minilm")
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args()


def load_gguf(AutoTokenizer, paths, workdir: Path, name: str):
    """transformers wants (directory, gguf_file); parts are concatenated first."""
    for path in paths:
        if not path.is_file():
            sys.exit(f"missing {path}: pass the right path (see --help)")
    if len(paths) == 1:
        gguf = paths[0]
    else:
        gguf = workdir / f"{name}.gguf"
        with open(gguf, "wb") as out:
            for part in paths:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def case(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    ids_special = tok(text, add_special_tokens=True)["input_ids"]
    return {
        "text": text,
        "ids": ids,
        "tokens": tok.convert_ids_to_tokens(ids),
        "ids_with_special": ids_special,
        "decoded": tok.decode(ids, skip_special_tokens=False),
        "decoded_with_special": tok.decode(ids_special, skip_special_tokens=False),
        "decoded_skip_special": tok.decode(ids_special, skip_special_tokens=True),
    }


def describe(tok, source, texts):
    return {
        "source": source,
        "vocab_size": len(tok),
        "bos_token": tok.bos_token,
        "bos_id": tok.bos_token_id,
        "eos_token": tok.eos_token,
        "eos_id": tok.eos_token_id,
        "cases": [case(tok, t) for t in texts],
    }


def check_smollm2_digits(tok, texts):
    """The original SmolLM2 pre-tokenizer must agree with transformers' here."""
    from tokenizers import Tokenizer, pre_tokenizers

    original = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    original.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    for text in texts:
        ours = original.encode(text, add_special_tokens=False).ids
        ref = tok(text, add_special_tokens=False)["input_ids"]
        if ours != ref:
            sys.exit(f"SmolLM2 digit pre-tokenizer disagrees with transformers on {text!r}: {ours} vs {ref}")


def main():
    args = parse_args()
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    result = {
        "generator": "scripts/reference/tokenizer_refs.py",
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "tokenizers": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        smol = load_gguf(AutoTokenizer, [args.smollm2], Path(tmp), "smollm2")
        texts = COMMON_TEXTS + EXTRA_TEXTS["smollm2"]
        check_smollm2_digits(smol, texts)
        entry = describe(smol, "gguf:" + args.smollm2.name, texts)
        prompt = smol.apply_chat_template(SMOLLM2_CHAT, add_generation_prompt=True, tokenize=False)
        prompt_ids = smol(prompt, add_special_tokens=False)["input_ids"]
        assert prompt_ids[:3] == [1, 9690, 198], prompt_ids[:3]
        entry["chat"] = {
            "messages": SMOLLM2_CHAT,
            "add_generation_prompt": True,
            "prompt": prompt,
            "ids": prompt_ids,
        }
        result["tokenizers"]["smollm2"] = entry

        gemma = load_gguf(AutoTokenizer, args.gemma3, Path(tmp), "gemma3")
        texts = COMMON_TEXTS + EXTRA_TEXTS["gemma3"]
        result["tokenizers"]["gemma3"] = describe(gemma, "gguf:gemma-3-270m-q4_k_m.gguf", texts)

    minilm = AutoTokenizer.from_pretrained(str(args.minilm))
    texts = COMMON_TEXTS + EXTRA_TEXTS["minilm"]
    result["tokenizers"]["minilm"] = describe(minilm, "tokenizer.json", texts)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
