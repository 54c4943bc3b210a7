"""Renders a chat template exactly as Python transformers' apply_chat_template does
(its jinja2 environment, filters and globals), from a JSON request on stdin:
{"template", "messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "kwargs"}."""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


req = json.load(sys.stdin)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now
template = env.from_string(req["template"])
out = template.render(messages=req["messages"], tools=req.get("tools"), documents=None,
                      add_generation_prompt=req["add_generation_prompt"],
                      bos_token=req.get("bos_token"), eos_token=req.get("eos_token"), **req.get("kwargs", {}))
sys.stdout.write(out)
