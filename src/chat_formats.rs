//! Chat formats for models whose GGUF carries no chat template: the family's own turn
//! markers, picked from the vocabulary and architecture (never ChatML on a vocabulary
//! without `<|im_end|>`, where the model would invent turns until the context fills),
//! or plain completion when no format is recognisable. Also what `--chat-template
//! NAME` names. Pure logic.

/// A built-in chat format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinFormat {
    ChatMl,
    Gemma,
    Llama3,
    Phi3,
    Mistral,
    /// No turns: the messages' text, for the model to continue.
    Plain,
}

pub const ALL: [BuiltinFormat; 6] = [
    BuiltinFormat::ChatMl,
    BuiltinFormat::Gemma,
    BuiltinFormat::Llama3,
    BuiltinFormat::Phi3,
    BuiltinFormat::Mistral,
    BuiltinFormat::Plain,
];

impl BuiltinFormat {
    pub fn name(self) -> &'static str {
        match self {
            BuiltinFormat::ChatMl => "chatml",
            BuiltinFormat::Gemma => "gemma",
            BuiltinFormat::Llama3 => "llama3",
            BuiltinFormat::Phi3 => "phi3",
            BuiltinFormat::Mistral => "mistral",
            BuiltinFormat::Plain => "plain",
        }
    }

    pub fn by_name(name: &str) -> Option<BuiltinFormat> {
        ALL.into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The format for a vocabulary (`has_token(text)`: one token spells `text`) and a
    /// GGUF architecture name.
    pub fn detect(arch: &str, has_token: &dyn Fn(&str) -> bool) -> BuiltinFormat {
        let all = |ts: &[&str]| ts.iter().all(|t| has_token(t));
        if all(&["<start_of_turn>", "<end_of_turn>"]) || arch.starts_with("gemma") {
            BuiltinFormat::Gemma
        } else if all(&["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]) {
            BuiltinFormat::Llama3
        } else if all(&["<|im_start|>", "<|im_end|>"]) {
            BuiltinFormat::ChatMl
        } else if all(&["<|user|>", "<|assistant|>", "<|end|>"]) {
            BuiltinFormat::Phi3
        } else if all(&["[INST]", "[/INST]"]) {
            BuiltinFormat::Mistral
        } else {
            BuiltinFormat::Plain
        }
    }

    /// The Jinja template (HF conventions: `messages`, `add_generation_prompt`,
    /// `bos_token`, `eos_token`).
    pub fn template(self) -> &'static str {
        match self {
            BuiltinFormat::ChatMl => crate::chat_template::FALLBACK_CHATML,
            BuiltinFormat::Gemma => "{{ bos_token }}{%- for message in messages %}{%- set role = 'model' if message['role'] == 'assistant' else 'user' %}{{- '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}",
            BuiltinFormat::Llama3 => "{{ bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
            BuiltinFormat::Phi3 => "{%- for message in messages %}{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}",
            BuiltinFormat::Mistral => "{{ bos_token }}{%- for message in messages %}{%- if message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}{%- else %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- endif %}{%- endfor %}",
            BuiltinFormat::Plain => "{%- for message in messages %}{{- message['content'] }}{%- if not loop.last %}{{- '\\n\\n' }}{%- endif %}{%- endfor %}",
        }
    }

    /// Text that ends the model's turn: generation stops there even where the
    /// vocabulary has no special token for it.
    pub fn end_of_turn(self) -> &'static [&'static str] {
        match self {
            BuiltinFormat::ChatMl => &["<|im_end|>", "<|im_start|>"],
            BuiltinFormat::Gemma => &["<end_of_turn>", "<start_of_turn>"],
            BuiltinFormat::Llama3 => &["<|eot_id|>", "<|start_header_id|>"],
            BuiltinFormat::Phi3 => &["<|end|>", "<|user|>"],
            BuiltinFormat::Mistral => &["[INST]"],
            BuiltinFormat::Plain => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::{ChatTemplate, Message, RenderOptions, SpecialTokens};

    fn vocab(tokens: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |t| tokens.contains(&t)
    }

    #[test]
    fn formats_come_from_the_vocabulary_and_architecture() {
        let gemma = vocab(&["<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>"]);
        assert_eq!(
            BuiltinFormat::detect("gemma3", &gemma),
            BuiltinFormat::Gemma
        );
        // A Gemma vocabulary has no ChatML tokens: never ChatML.
        assert_eq!(BuiltinFormat::detect("llama", &gemma), BuiltinFormat::Gemma);
        let llama3 = vocab(&[
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ]);
        assert_eq!(
            BuiltinFormat::detect("llama", &llama3),
            BuiltinFormat::Llama3
        );
        let chatml = vocab(&["<|im_start|>", "<|im_end|>"]);
        assert_eq!(
            BuiltinFormat::detect("llama", &chatml),
            BuiltinFormat::ChatMl
        );
        assert_eq!(
            BuiltinFormat::detect("phi3", &vocab(&["<|user|>", "<|assistant|>", "<|end|>"])),
            BuiltinFormat::Phi3
        );
        assert_eq!(
            BuiltinFormat::detect("llama", &vocab(&["[INST]", "[/INST]"])),
            BuiltinFormat::Mistral
        );
        assert_eq!(
            BuiltinFormat::detect("gpt2", &vocab(&["<|endoftext|>"])),
            BuiltinFormat::Plain
        );
        assert_eq!(BuiltinFormat::by_name("Gemma"), Some(BuiltinFormat::Gemma));
        assert_eq!(BuiltinFormat::by_name("nope"), None);
    }

    #[test]
    fn every_format_renders_a_conversation() {
        let msgs = [
            Message::system("S"),
            Message::user("Hi"),
            Message::assistant("Yo"),
            Message::user("Q"),
        ];
        let opts = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        for f in ALL {
            let tokens = SpecialTokens {
                bos: Some("<bos>".into()),
                eos: Some("<eos>".into()),
                ..Default::default()
            };
            let t = ChatTemplate::new(f.template(), tokens).unwrap();
            let out = t.render(&msgs, &opts).unwrap();
            assert!(out.contains("Hi") && out.contains('Q'), "{f:?}: {out}");
            if let Some(end) = f.end_of_turn().first() {
                assert!(
                    out.contains(end) || f == BuiltinFormat::Mistral,
                    "{f:?}: {out}"
                );
            }
        }
        let t = ChatTemplate::new(
            BuiltinFormat::Gemma.template(),
            SpecialTokens {
                bos: Some("<bos>".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            t.render(&msgs[1..2], &opts).unwrap(),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
