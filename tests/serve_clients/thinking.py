"""Thinking on/off through chat_template_kwargs (and reasoning_effort) gives
reasoning_content apart from content, whole and streamed. Usage: thinking.py BASE_URL"""
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0, timeout=120)
model = client.models.list().data[0].id
messages = [{"role": "user", "content": "hello"}]

def whole(**extra):
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0, **extra)
    m = r.choices[0].message
    return getattr(m, "reasoning_content", None) or "", m.content or ""

def streamed(**extra):
    reasoning, content = [], []
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=12,
                                                temperature=0, stream=True, **extra):
        for c in chunk.choices:
            reasoning.append(getattr(c.delta, "reasoning_content", None) or "")
            content.append(c.delta.content or "")
    return "".join(reasoning), "".join(content)

on = dict(extra_body={"chat_template_kwargs": {"enable_thinking": True}})
off = dict(extra_body={"chat_template_kwargs": {"enable_thinking": False}})
r_on, c_on = whole(**on)
assert r_on and not c_on, (r_on, c_on)
assert "<think>" not in r_on and "</think>" not in r_on, r_on
r_off, c_off = whole(**off)
assert not r_off and c_off, (r_off, c_off)
assert "<think>" not in c_off, c_off
assert streamed(**on) == (r_on, c_on), (streamed(**on), r_on, c_on)
assert streamed(**off) == (r_off, c_off), (streamed(**off), r_off, c_off)
assert whole(reasoning_effort="none") == (r_off, c_off)
print("ok")
