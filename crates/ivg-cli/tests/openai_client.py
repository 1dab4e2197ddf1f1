"""The official `openai` Python client against `ivg serve` on loopback.

Run by crates/ivg-cli/tests/serve_openai.rs with the pinned venv's python
(openai-constraints.txt). Completions run on the tiny fixtures' `tiny-ivg`
preset, chat on SmolLM2 (the tiny tokenizer has no chat template). Prints
one line per check and a summary; exits non-zero when any check failed.
"""

import argparse
import sys
import traceback

import openai

PROMPT = "t5 t17 t3"
IVG = {"method": "ivg", "width": 2, "successors": 2, "chunk_len": 3, "beta": 1.0}

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)), flush=True)


def run(name, fn):
    """Runs one group of checks; an exception fails the group."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported
        check(name, False, "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))


def completions(client, model):
    ids = [m.id for m in client.models.list()]
    check("models.list names the presets", model in ids and "tiny" in ids, ids)

    r = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=8, temperature=0.7, seed=5, extra_body={"ivg": IVG}
    )
    check("completion object", r.object == "text_completion", r)
    check("completion model", r.model == model, r.model)
    check("one choice", len(r.choices) == 1, r.choices)
    text = r.choices[0].text
    check("completion text has 8 tokens", len(text.split()) == 8, repr(text))
    check("finish_reason length", r.choices[0].finish_reason == "length", r.choices[0].finish_reason)
    check(
        "usage",
        r.usage is not None
        and (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 8, 11),
        r.usage,
    )

    again = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=8, temperature=0.7, seed=5, extra_body={"ivg": IVG}
    )
    check("same seed, same text", again.choices[0].text == text, (again.choices[0].text, text))

    stream = client.completions.create(
        model=model,
        prompt=PROMPT,
        max_tokens=8,
        temperature=0.7,
        seed=5,
        stream=True,
        extra_body={"ivg": IVG},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    check("streamed text equals plain", streamed == text, (streamed, text))
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check("stream ends with finish_reason length", finishes == ["length"], finishes)

    two = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=8, temperature=0.7, seed=5, n=2, extra_body={"ivg": IVG}
    )
    check("n=2 gives two choices", [c.index for c in two.choices] == [0, 1], two.choices)
    check("choice 0 of n=2 equals n=1", two.choices[0].text == text, (two.choices[0].text, text))

    # Stop strings on the base method (a guided beam may rank around a stopped row).
    plain = dict(model=model, prompt=PROMPT, max_tokens=8, temperature=0.7, seed=6, extra_body={"ivg": {"method": "base"}})
    full = client.completions.create(**plain).choices[0].text
    stop = " " + full.split()[2]
    want = full[: full.find(stop)]
    stopped = client.completions.create(**plain, stop=[stop])
    check("stop string cuts the text", stopped.choices[0].text == want, (stopped.choices[0].text, want, full))
    check("stopped finish_reason", stopped.choices[0].finish_reason == "stop", stopped.choices[0].finish_reason)


def bad_requests(client, model):
    try:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=4, extra_body={"ivg": {"widht": 2}})
        check("unknown ivg key raises BadRequestError", False, "no exception")
    except openai.BadRequestError as e:
        check("unknown ivg key raises BadRequestError", e.status_code == 400, e)
        err = e.body if isinstance(e.body, dict) else {}
        param = err.get("param") or (err.get("error") or {}).get("param")
        check("the error names the ivg field", isinstance(param, str) and param.startswith("ivg"), e.body)

    try:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=4, extra_body={"ivg": {"width": 0}})
        check("width 0 raises BadRequestError", False, "no exception")
    except openai.BadRequestError as e:
        check("width 0 raises BadRequestError", e.status_code == 400, e)

    try:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=4, temperature=-1)
        check("temperature -1 raises BadRequestError", False, "no exception")
    except openai.BadRequestError as e:
        check("temperature -1 raises BadRequestError", e.status_code == 400, e)

    try:
        client.completions.create(model="no-such-preset", prompt=PROMPT, max_tokens=4)
        check("unknown model raises NotFoundError", False, "no exception")
    except openai.NotFoundError as e:
        check("unknown model raises NotFoundError", e.status_code == 404, e)


def chat(client, model):
    messages = [{"role": "user", "content": "Describe a movie in one sentence."}]
    settings = dict(model=model, messages=messages, max_tokens=6, temperature=0.7, seed=2)
    guided = {"ivg": {"method": "efti+cbsi", "width": 2, "successors": 2, "chunk_len": 3}}
    r = client.chat.completions.create(**settings, extra_body=guided)
    check("chat object", r.object == "chat.completion", r)
    msg = r.choices[0].message
    check("chat message is the assistant's", msg.role == "assistant" and bool(msg.content), msg)
    check("chat finish_reason", r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    check("chat usage", r.usage is not None and 1 <= r.usage.completion_tokens <= 6, r.usage)

    chunks = list(client.chat.completions.create(**settings, stream=True, extra_body=guided))
    check("chat chunks", all(c.object == "chat.completion.chunk" for c in chunks), [c.object for c in chunks])
    streamed = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    check("streamed chat equals plain", streamed == msg.content, (streamed, msg.content))

    base = client.chat.completions.create(**settings, extra_body={"ivg": {"method": "base"}})
    check("base chat", bool(base.choices[0].message.content), base)

    try:
        client.chat.completions.create(**settings, extra_body={"ivg": {"method": "dexperts"}})
        check("unknown method raises BadRequestError", False, "no exception")
    except openai.BadRequestError as e:
        check("unknown method raises BadRequestError", e.status_code == 400, e)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tiny-url", required=True, help="base URL of the tiny server, ending in /v1")
    p.add_argument("--tiny-model", default="tiny-ivg")
    p.add_argument("--chat-url", help="base URL of the SmolLM2 server, ending in /v1")
    p.add_argument("--chat-model", default="smollm2")
    args = p.parse_args()
    print("openai", openai.__version__, flush=True)

    tiny = openai.OpenAI(base_url=args.tiny_url, api_key="none", max_retries=0, timeout=120)
    run("completions", lambda: completions(tiny, args.tiny_model))
    run("bad requests", lambda: bad_requests(tiny, args.tiny_model))
    if args.chat_url:
        smol = openai.OpenAI(base_url=args.chat_url, api_key="none", max_retries=0, timeout=300)
        run("chat", lambda: chat(smol, args.chat_model))

    failed = [n for n, ok in results if not ok]
    print("openai client checks: %d ok, %d failing" % (len(results) - len(failed), len(failed)), flush=True)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
