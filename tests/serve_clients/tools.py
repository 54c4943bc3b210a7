"""Tool calls through the real `openai` client on a model whose template has no tool
support (SmolLM2): a named or required tool_choice still yields a schema-valid call,
whole and streamed; `auto` is a clear 400. Usage: tools.py BASE_URL"""
import json
import sys

import jsonschema
import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0, timeout=120)
model = client.models.list().data[0].id
schema = {"type": "object",
          "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"type": "string", "enum": ["c", "f"]},
                         "days": {"type": "integer", "minimum": 1, "maximum": 7}},
          "required": ["city", "unit", "days"], "additionalProperties": False}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city",
                                           "parameters": schema}},
         {"type": "function", "function": {"name": "get_time", "description": "The current time",
                                           "parameters": {"type": "object", "properties": {}}}}]
messages = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]
named = {"type": "function", "function": {"name": "get_weather"}}

r = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice=named, temperature=0)
choice = r.choices[0]
assert choice.finish_reason == "tool_calls", choice
calls = choice.message.tool_calls
assert len(calls) == 1 and calls[0].function.name == "get_weather", calls
assert calls[0].id.startswith("call_") and calls[0].type == "function", calls
args = json.loads(calls[0].function.arguments)
jsonschema.validate(args, schema)
assert not (choice.message.content or "").strip(), choice.message.content

# Streamed: the client's own accumulator rebuilds the same call.
with client.chat.completions.stream(model=model, messages=messages, tools=tools, tool_choice=named,
                                    temperature=0) as s:
    final = s.get_final_completion()
scalls = final.choices[0].message.tool_calls
assert [c.function.name for c in scalls] == ["get_weather"], scalls
assert json.loads(scalls[0].function.arguments) == args, (scalls, args)
assert final.choices[0].finish_reason == "tool_calls", final

# Raw deltas follow the accumulation rule: index on every entry, id/type/name once.
seen = {}
for chunk in client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="required",
                                            temperature=0, stream=True):
    for c in chunk.choices:
        for tc in c.delta.tool_calls or []:
            assert tc.index is not None, tc
            if tc.index in seen:
                assert tc.id is None and tc.function.name is None, tc
            else:
                assert tc.id and tc.type == "function" and tc.function.name, tc
                seen[tc.index] = tc.function.name
assert len(seen) == 1, seen  # one call unless parallel_tool_calls is asked for

# A full round trip in the history is accepted.
history = messages + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(args)}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
]
r = client.chat.completions.create(model=model, messages=history, max_tokens=30, temperature=0)
assert r.choices[0].message.content, r

# This template cannot show tools to the model: letting it choose is refused clearly.
try:
    client.chat.completions.create(model=model, messages=messages, tools=tools)
    raise SystemExit("auto tool_choice accepted on a template without tools")
except openai.BadRequestError as e:
    assert "does not support tools" in e.body["message"] and e.body["param"] == "tools", e.body
for bad in [dict(tool_choice={"type": "function", "function": {"name": "nope"}}), dict(tools=[{"type": "function"}])]:
    try:
        client.chat.completions.create(model=model, messages=messages, **{"tools": tools, **bad})
        raise SystemExit(f"accepted {bad}")
    except openai.BadRequestError as e:
        assert e.status_code == 400, e
print("ok")
