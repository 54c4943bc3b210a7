//! Whether a draft model can propose tokens for a target: the same token ids must mean
//! the same text. The rule is llama.cpp's `common_speculative_are_compatible`: the same
//! tokenizer type, the same BOS/EOS use and ids, vocabulary sizes within 128 of each
//! other, and byte-equal token texts for every id from 5 up to the smaller size.

/// What the check needs from one model's vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct VocabFacts {
    /// The tokenizer type (SPM, BPE, …), as llama.cpp numbers it.
    pub kind: i32,
    pub n_tokens: usize,
    pub add_bos: bool,
    pub bos: Option<i32>,
    pub add_eos: bool,
    pub eos: Option<i32>,
    /// Each token's text, by id.
    pub texts: Vec<Vec<u8>>,
}

/// llama.cpp's `SPEC_VOCAB_MAX_SIZE_DIFFERENCE`: converters pad vocabularies to a
/// round size, so the sizes of one tokenizer's models may differ by this much.
pub const MAX_SIZE_DIFFERENCE: usize = 128;
/// llama.cpp's `SPEC_VOCAB_CHECK_START_TOKEN_ID`: the first ids are control tokens
/// that fine-tunes rename freely.
pub const CHECK_FROM_ID: usize = 5;

/// Why a draft cannot serve a target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VocabMismatch {
    #[error("the tokenizers differ (type {target} vs {draft})")]
    Kind { target: i32, draft: i32 },
    #[error(
        "vocabulary sizes differ by more than {MAX_SIZE_DIFFERENCE} ({target} vs {draft} tokens)"
    )]
    Size { target: usize, draft: usize },
    #[error("the models disagree on the {which} token ({target} vs {draft})")]
    Special {
        which: &'static str,
        target: String,
        draft: String,
    },
    #[error("token {id} differs ({target:?} vs {draft:?})")]
    Text {
        id: usize,
        target: String,
        draft: String,
    },
}

/// Ok when `draft` may propose tokens for `target`.
pub fn check_compatible(target: &VocabFacts, draft: &VocabFacts) -> Result<(), VocabMismatch> {
    if target.kind != draft.kind {
        return Err(VocabMismatch::Kind {
            target: target.kind,
            draft: draft.kind,
        });
    }
    let special = |which, t: (bool, Option<i32>), d: (bool, Option<i32>)| {
        let show = |(add, id): (bool, Option<i32>)| match (add, id) {
            (false, _) => "not added".to_string(),
            (true, Some(id)) => format!("id {id}"),
            (true, None) => "added, no id".to_string(),
        };
        // Only an added token must match: one nobody adds never reaches the draft.
        if t.0 != d.0 || (t.0 && t.1 != d.1) {
            return Err(VocabMismatch::Special {
                which,
                target: show(t),
                draft: show(d),
            });
        }
        Ok(())
    };
    special(
        "BOS",
        (target.add_bos, target.bos),
        (draft.add_bos, draft.bos),
    )?;
    special(
        "EOS",
        (target.add_eos, target.eos),
        (draft.add_eos, draft.eos),
    )?;
    if target.n_tokens.abs_diff(draft.n_tokens) > MAX_SIZE_DIFFERENCE {
        return Err(VocabMismatch::Size {
            target: target.n_tokens,
            draft: draft.n_tokens,
        });
    }
    let common = target
        .n_tokens
        .min(draft.n_tokens)
        .min(target.texts.len())
        .min(draft.texts.len());
    for id in CHECK_FROM_ID..common {
        if target.texts[id] != draft.texts[id] {
            return Err(VocabMismatch::Text {
                id,
                target: String::from_utf8_lossy(&target.texts[id]).into_owned(),
                draft: String::from_utf8_lossy(&draft.texts[id]).into_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(words: &[&str]) -> VocabFacts {
        VocabFacts {
            kind: 2,
            n_tokens: words.len(),
            add_bos: true,
            bos: Some(1),
            add_eos: false,
            eos: Some(2),
            texts: words.iter().map(|w| w.as_bytes().to_vec()).collect(),
        }
    }

    const WORDS: [&str; 9] = ["<unk>", "<s>", "</s>", "a", "b", "the", "cat", "sat", "on"];

    #[test]
    fn same_vocabulary_passes_and_first_ids_are_not_compared() {
        let t = vocab(&WORDS);
        assert_eq!(check_compatible(&t, &t), Ok(()));
        let mut renamed = WORDS;
        renamed[3] = "<|im_start|>";
        assert_eq!(check_compatible(&t, &vocab(&renamed)), Ok(()));
        // A few extra padding tokens at the end are fine.
        let mut longer = WORDS.to_vec();
        longer.extend(["[PAD9]", "[PAD10]"]);
        assert_eq!(check_compatible(&t, &vocab(&longer)), Ok(()));
    }

    #[test]
    fn each_difference_is_named() {
        let t = vocab(&WORDS);
        let mut other = WORDS;
        other[6] = "dog";
        assert_eq!(
            check_compatible(&t, &vocab(&other)),
            Err(VocabMismatch::Text {
                id: 6,
                target: "cat".into(),
                draft: "dog".into()
            })
        );
        let spm = VocabFacts {
            kind: 1,
            ..t.clone()
        };
        assert!(matches!(
            check_compatible(&t, &spm),
            Err(VocabMismatch::Kind {
                target: 2,
                draft: 1
            })
        ));
        let bos = VocabFacts {
            bos: Some(0),
            ..t.clone()
        };
        let err = check_compatible(&t, &bos).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the models disagree on the BOS token (id 1 vs id 0)"
        );
        // An EOS id nobody adds is not compared; adding one is.
        let eos_id = VocabFacts {
            eos: Some(7),
            ..t.clone()
        };
        assert_eq!(check_compatible(&t, &eos_id), Ok(()));
        let eos_added = VocabFacts {
            add_eos: true,
            ..t.clone()
        };
        assert!(matches!(
            check_compatible(&t, &eos_added),
            Err(VocabMismatch::Special { which: "EOS", .. })
        ));
        let big = VocabFacts {
            n_tokens: WORDS.len() + 129,
            ..t.clone()
        };
        assert_eq!(
            check_compatible(&t, &big).unwrap_err().to_string(),
            "vocabulary sizes differ by more than 128 (9 vs 138 tokens)"
        );
    }
}
