//! Recipes: named per-tensor-class type mixes, kept as TOML data in `quant/recipes/`.
//!
//! ```toml
//! description = "MoE: routed experts low, attention and shared experts high"
//! base = "Q4_K_M"             # llama.cpp file type for every tensor no key names
//! [types]                     # class key or group key = ggml type
//! experts = "Q3_K"            # groups: experts, shared_experts, attn, ffn
//! ffn_down_exps = "Q4_K"      # a class key wins over its group
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::classify::{TensorClass, CLASSES};
use crate::types::{file_type_by_name, ggml_type_by_name, FileType, GgmlType};

/// The recipes shipped with edge (`quant/recipes/*.toml`, compiled in).
pub const BUILTIN: &[(&str, &str)] = &[
    ("moe-balanced", include_str!("../recipes/moe-balanced.toml")),
    ("moe-compact", include_str!("../recipes/moe-compact.toml")),
    (
        "dense-balanced",
        include_str!("../recipes/dense-balanced.toml"),
    ),
    (
        "dense-compact",
        include_str!("../recipes/dense-compact.toml"),
    ),
];

/// Group keys a recipe may use besides the class keys.
pub const GROUPS: &[&str] = &["experts", "shared_experts", "attn", "ffn"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecipeError {
    #[error("unknown recipe '{name}' (built-in recipes: {known})")]
    Unknown { name: String, known: String },
    #[error("recipe {name}: {msg}")]
    Invalid { name: String, msg: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    description: String,
    base: String,
    #[serde(default)]
    types: BTreeMap<String, String>,
}

/// A parsed, validated recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    /// The file type for every tensor the recipe does not name (llama.cpp's own
    /// per-tensor rules for that type apply there).
    pub base: &'static FileType,
    /// Class or group key -> type.
    pub types: BTreeMap<String, &'static GgmlType>,
}

impl Recipe {
    /// Parses a recipe from TOML text.
    pub fn parse(name: &str, text: &str) -> Result<Recipe, RecipeError> {
        let invalid = |msg: String| RecipeError::Invalid {
            name: name.to_string(),
            msg,
        };
        let file: RecipeFile =
            toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        let base = file_type_by_name(&file.base)
            .ok_or_else(|| invalid(format!("unknown base file type '{}'", file.base)))?;
        let mut types = BTreeMap::new();
        for (key, ty) in file.types {
            if TensorClass::from_key(&key).is_none() && !GROUPS.contains(&key.as_str()) {
                let classes: Vec<&str> = CLASSES.iter().map(|(_, k)| *k).collect();
                return Err(invalid(format!(
                    "unknown tensor class '{key}' (classes: {}; groups: {})",
                    classes.join(", "),
                    GROUPS.join(", ")
                )));
            }
            let t = ggml_type_by_name(&ty)
                .filter(|t| t.quantizable || matches!(t.id, 0 | 1 | 30))
                .ok_or_else(|| invalid(format!("unknown tensor type '{ty}' for '{key}'")))?;
            types.insert(key, t);
        }
        Ok(Recipe {
            name: name.to_string(),
            description: file.description,
            base,
            types,
        })
    }

    /// A built-in recipe by name.
    pub fn builtin(name: &str) -> Result<Recipe, RecipeError> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Recipe::parse(n, text),
            None => Err(RecipeError::Unknown {
                name: name.to_string(),
                known: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// All built-in recipes.
    pub fn all_builtin() -> Vec<Recipe> {
        BUILTIN
            .iter()
            .filter_map(|(n, t)| Recipe::parse(n, t).ok())
            .collect()
    }

    /// The type this recipe gives a tensor class: its class key, else its group, else
    /// None (the base file type's rules decide).
    pub fn type_for(&self, class: TensorClass) -> Option<&'static GgmlType> {
        if let Some(t) = self.types.get(class.key()) {
            return Some(t);
        }
        class
            .groups()
            .iter()
            .find_map(|g| self.types.get(*g).copied())
    }

    /// Whether any entry targets MoE tensors.
    pub fn is_moe(&self) -> bool {
        self.types.keys().any(|k| {
            k == "experts"
                || k == "shared_experts"
                || TensorClass::from_key(k)
                    .is_some_and(|c| c.is_routed_expert() || c.is_shared_expert())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse() {
        let all = Recipe::all_builtin();
        assert_eq!(all.len(), BUILTIN.len());
        let moe = Recipe::builtin("moe-balanced").unwrap();
        assert!(moe.is_moe());
        let exp = moe.type_for(TensorClass::FfnGateExps).unwrap();
        let attn = moe.type_for(TensorClass::AttnV).unwrap();
        assert!(exp.bpw() < attn.bpw(), "experts lower than attention");
        assert!(!Recipe::builtin("dense-balanced").unwrap().is_moe());
    }

    #[test]
    fn class_beats_group() {
        let r = Recipe::parse(
            "t",
            "description = \"x\"\nbase = \"Q4_K_M\"\n[types]\nexperts = \"Q2_K\"\nffn_down_exps = \"Q4_K\"\n",
        )
        .unwrap();
        assert_eq!(r.type_for(TensorClass::FfnUpExps).unwrap().name, "q2_K");
        assert_eq!(r.type_for(TensorClass::FfnDownExps).unwrap().name, "q4_K");
        assert!(r.type_for(TensorClass::AttnQ).is_none());
        assert_eq!(r.base.name, "Q4_K_M");
    }

    #[test]
    fn bad_recipes_are_rejected() {
        let e = Recipe::parse(
            "t",
            "description = \"x\"\nbase = \"Q4_K_M\"\n[types]\nfoo = \"Q4_K\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown tensor class 'foo'"), "{e}");
        let e = Recipe::parse(
            "t",
            "description = \"x\"\nbase = \"Q4_K_M\"\n[types]\nattn = \"Q9\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown tensor type 'Q9'"), "{e}");
        let e = Recipe::parse("t", "description = \"x\"\nbase = \"Q7\"\n").unwrap_err();
        assert!(e.to_string().contains("base"), "{e}");
        assert!(Recipe::parse("t", "base = ").is_err());
        let e = Recipe::builtin("nope").unwrap_err();
        assert!(e.to_string().contains("moe-balanced"), "{e}");
    }
}
