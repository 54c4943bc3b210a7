"""Drives `edge serve` (SmolLM2) with the real `ollama` package. Usage: ollama_client.py BASE_URL"""
import sys

import ollama

client = ollama.Client(host=sys.argv[1], timeout=120)
models = client.list().models
assert models and models[0].model, models
name = models[0].model
messages = [{"role": "user", "content": "Name the capital of France."}]

r = client.chat(model=name, messages=messages, options={"temperature": 0, "num_predict": 40})
assert "Paris" in r.message.content, r
assert r.done and r.done_reason == "stop" and r.eval_count > 0 and r.prompt_eval_count > 0, r

parts = []
last = None
for chunk in client.chat(model=name, messages=messages, options={"temperature": 0, "num_predict": 40}, stream=True):
    parts.append(chunk.message.content)
    last = chunk
assert "".join(parts) == r.message.content, ("".join(parts), r.message.content)
assert last.done and last.eval_count == r.eval_count, last

g = client.generate(model=name, prompt="Name the capital of France.", options={"temperature": 0, "num_predict": 40})
assert "Paris" in g.response, g
streamed = "".join(c.response for c in client.generate(
    model=name, prompt="Name the capital of France.", options={"temperature": 0, "num_predict": 40}, stream=True))
assert streamed == g.response, (streamed, g.response)

as_json = 'What is the capital of France? Answer as a JSON object like {"capital": "..."}.'
j = client.chat(model=name, messages=[{"role": "user", "content": as_json}],
                format="json", options={"temperature": 0, "num_predict": 100})
assert j.done_reason == "stop", j
import json
assert isinstance(json.loads(j.message.content), dict), j.message.content

info = client.show(name)
assert info.details.format == "gguf" and "completion" in info.capabilities, info
try:
    client.show("no-such-model")
    raise SystemExit("show accepted an unknown model")
except ollama.ResponseError as e:
    assert e.status_code == 404, e
try:
    client.chat(model=name, messages=[{"role": "user", "content": "x"}], options={"temperature": "hot"})
    raise SystemExit("accepted a bad temperature")
except ollama.ResponseError as e:
    assert e.status_code == 400 and "temperature" in e.error, e
print("ok")
