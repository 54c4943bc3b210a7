//! Python call lists as Llama 4 writes them: `[f(a="x", b=1), g()]`, with Python
//! literals (strings in either quote with escapes, numbers, True/False/None, lists,
//! tuples, dicts) turned into JSON.

use serde_json::{Map, Number, Value};

#[derive(Debug, PartialEq, Eq)]
pub enum PyError {
    /// More text could still complete it.
    Incomplete,
    Malformed,
}

type R<T> = Result<T, PyError>;

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> R<u8> {
        self.s.get(self.i).copied().ok_or(PyError::Incomplete)
    }

    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(PyError::Malformed)
        }
    }

    fn ident(&mut self) -> R<String> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || matches!(self.s[self.i], b'_' | b'.' | b'-'))
        {
            self.i += 1;
        }
        if self.i == self.s.len() {
            return Err(PyError::Incomplete);
        }
        if self.i == start || self.s[start].is_ascii_digit() {
            return Err(PyError::Malformed);
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn string(&mut self) -> R<String> {
        let quote = self.peek()?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            if c == quote {
                return String::from_utf8(out).map_err(|_| PyError::Malformed);
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let e = self.peek()?;
            self.i += 1;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'u' => {
                    let hex = self.s.get(self.i..self.i + 4).ok_or(PyError::Incomplete)?;
                    let code = u32::from_str_radix(
                        std::str::from_utf8(hex).map_err(|_| PyError::Malformed)?,
                        16,
                    )
                    .map_err(|_| PyError::Malformed)?;
                    self.i += 4;
                    let ch = char::from_u32(code).ok_or(PyError::Malformed)?;
                    out.extend_from_slice(ch.to_string().as_bytes());
                }
                other => out.push(other),
            }
        }
    }

    fn number(&mut self) -> R<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'_'
            )
        {
            self.i += 1;
        }
        if self.i == self.s.len() {
            return Err(PyError::Incomplete);
        }
        let text: String = String::from_utf8_lossy(&self.s[start..self.i]).replace('_', "");
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or(PyError::Malformed)
    }

    fn seq(&mut self, close: u8) -> R<Vec<Value>> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek()? == close {
                self.i += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {}
                _ => return Err(PyError::Malformed),
            }
        }
    }

    fn dict(&mut self) -> R<Value> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.peek()? == b'}' {
                self.i += 1;
                return Ok(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.ws();
            self.eat(b':')?;
            self.ws();
            let v = self.value()?;
            map.insert(key, v);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {}
                _ => return Err(PyError::Malformed),
            }
        }
    }

    fn value(&mut self) -> R<Value> {
        self.ws();
        match self.peek()? {
            b'"' | b'\'' => self.string().map(Value::String),
            b'[' => self.seq(b']').map(Value::Array),
            b'(' => self.seq(b')').map(Value::Array),
            b'{' => self.dict(),
            b'0'..=b'9' | b'-' | b'+' | b'.' => self.number(),
            _ => match self.ident()?.as_str() {
                "True" | "true" => Ok(Value::Bool(true)),
                "False" | "false" => Ok(Value::Bool(false)),
                "None" | "null" => Ok(Value::Null),
                _ => Err(PyError::Malformed),
            },
        }
    }

    fn call(&mut self) -> R<(String, Map<String, Value>)> {
        self.ws();
        let name = self.ident()?;
        self.ws();
        self.eat(b'(')?;
        let mut args = Map::new();
        loop {
            self.ws();
            if self.peek()? == b')' {
                self.i += 1;
                return Ok((name, args));
            }
            let key = self.ident()?;
            self.ws();
            self.eat(b'=')?;
            let v = self.value()?;
            args.insert(key, v);
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b')' => {}
                _ => return Err(PyError::Malformed),
            }
        }
    }
}

/// A call: the function's name and its keyword arguments.
pub type PyCall = (String, Map<String, Value>);

/// Parses `[call, …]` at the start of `s` (after whitespace): the calls and the bytes
/// consumed.
pub fn parse_call_list(s: &str) -> Result<(Vec<PyCall>, usize), PyError> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    c.ws();
    c.eat(b'[')?;
    let mut calls = Vec::new();
    loop {
        c.ws();
        if c.peek()? == b']' && !calls.is_empty() {
            c.i += 1;
            return Ok((calls, c.i));
        }
        calls.push(c.call()?);
        c.ws();
        match c.peek()? {
            b',' => c.i += 1,
            b']' => {}
            _ => return Err(PyError::Malformed),
        }
    }
}

/// A Python literal (for Qwen3-Coder values that are not JSON).
pub fn parse_literal(s: &str) -> Option<Value> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let v = c.value().ok()?;
    c.ws();
    (c.i == s.len()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_lists_parse() {
        let (calls, n) = parse_call_list("[get_weather(city='LA', metric=\"C\"), register(name='Doe', age=9, tags=['a', 'b'], extra={'k': None}, ok=True)] tail").unwrap();
        assert_eq!(n, "[get_weather(city='LA', metric=\"C\"), register(name='Doe', age=9, tags=['a', 'b'], extra={'k': None}, ok=True)]".len());
        assert_eq!(calls[0].0, "get_weather");
        assert_eq!(
            Value::Object(calls[1].1.clone()),
            json!({"name": "Doe", "age": 9, "tags": ["a", "b"], "extra": {"k": null}, "ok": true})
        );
        assert_eq!(parse_call_list("[f()]").unwrap().0[0].1.len(), 0);
        assert_eq!(
            parse_call_list("[get_weather(city='Martha\\'s')]")
                .unwrap()
                .0[0]
                .1["city"],
            "Martha's"
        );
    }

    #[test]
    fn partial_and_bad_lists() {
        assert_eq!(
            parse_call_list("[get_weather(city='L"),
            Err(PyError::Incomplete)
        );
        assert_eq!(parse_call_list("[get_weather"), Err(PyError::Incomplete));
        assert_eq!(parse_call_list("[1, 2]"), Err(PyError::Malformed));
        assert_eq!(parse_call_list("[]"), Err(PyError::Malformed));
        assert_eq!(parse_call_list("Hello"), Err(PyError::Malformed));
    }
}
