"""Drives `edge serve` (SmolLM2) with the real `openai` package; exits non-zero on any
failed check. Usage: openai_client.py BASE_URL"""
import json
import sys
import threading

import openai

base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
model = client.models.list().data[0].id
question = [{"role": "user", "content": "Name the capital of France."}]

# Non-streamed, greedy.
r = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=40)
answer = r.choices[0].message.content
assert "Paris" in answer, answer
assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
assert r.system_fingerprint.startswith("edge-"), r.system_fingerprint

# Streamed at temperature 0: the deltas concatenate to the same text; a usage chunk.
pieces, usage, finish, roles = [], None, None, []
stream = client.chat.completions.create(
    model=model, messages=question, temperature=0, max_tokens=40, stream=True,
    stream_options={"include_usage": True})
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert "".join(pieces) == answer, ("".join(pieces), answer)
assert roles == ["assistant"], roles
assert finish == "stop", finish
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage
assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage

# The client's own stream helper accumulates the same message.
with client.chat.completions.stream(model=model, messages=question, temperature=0, max_tokens=40) as s:
    final = s.get_final_completion()
assert final.choices[0].message.content == answer, final

# Eight concurrent streams all complete.
results = {}
def one(i):
    text = []
    s = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Count from {i} to {i + 5}."}],
        max_tokens=24, temperature=0.7, seed=i, stream=True)
    fin = None
    for chunk in s:
        for c in chunk.choices:
            text.append(c.delta.content or "")
            fin = c.finish_reason or fin
    results[i] = (fin, "".join(text))
threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert len(results) == 8, results
for i, (fin, text) in results.items():
    assert fin in ("stop", "length") and text, (i, fin, text)

# json_schema output parses and has the required keys.
schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
          "required": ["city", "country"], "additionalProperties": False}
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
    temperature=0, max_tokens=60,
    response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}})
obj = json.loads(r.choices[0].message.content)
assert set(obj) == {"city", "country"}, obj

# json_object.
as_json = [{"role": "user", "content": 'What is the capital of France? Answer as a JSON object like {"capital": "..."}.'}]
r = client.chat.completions.create(model=model, messages=as_json, temperature=0, max_tokens=100,
                                   response_format={"type": "json_object"})
assert r.choices[0].finish_reason == "stop", r
assert isinstance(json.loads(r.choices[0].message.content), dict), r.choices[0].message.content

# Log-probabilities.
r = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=5,
                                   logprobs=True, top_logprobs=3)
lp = r.choices[0].logprobs.content
assert len(lp) == r.usage.completion_tokens, lp
assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in lp), lp
# Greedy picks the most likely token.
assert all(t.top_logprobs[0].token == t.token for t in lp), lp

# Stop strings end the answer before them.
r = client.chat.completions.create(model=model, messages=question, temperature=0, max_tokens=40, stop=[" is"])
assert " is" not in r.choices[0].message.content and r.choices[0].finish_reason == "stop", r

# max_tokens reached: finish_reason length.
r = client.chat.completions.create(model=model, messages=question, temperature=0, max_completion_tokens=2)
assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2, r

# /v1/completions, whole and streamed.
c = client.completions.create(model=model, prompt="The capital of France is", max_tokens=6, temperature=0)
streamed = "".join(ch.choices[0].text for ch in client.completions.create(
    model=model, prompt="The capital of France is", max_tokens=6, temperature=0, stream=True) if ch.choices)
assert c.choices[0].text == streamed and "Paris" in streamed, (c, streamed)

# Client mistakes are 400s the client raises as BadRequestError.
for bad in [dict(max_tokens=-5), dict(temperature=5), dict(n=2)]:
    try:
        client.chat.completions.create(model=model, messages=question, **bad)
        raise SystemExit(f"accepted {bad}")
    except openai.BadRequestError as e:
        assert e.status_code == 400 and e.body.get("message"), e
print("ok")
