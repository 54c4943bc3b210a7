//! ggml tensor types and llama.cpp file types (`llama_ftype`), as data.
//!
//! The numbers are those of `ggml.h` / `llama.h` in the llama.cpp that
//! `llama-cpp-sys-2` bundles; a unit test checks the table against itself, and the
//! edge crate checks the ids against the bindings.

/// A ggml tensor type with its block geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    /// `enum ggml_type` value.
    pub id: u32,
    /// ggml's own name, as `ggml_type_name` spells it (`q4_K`, `iq4_xs`, `f16`).
    pub name: &'static str,
    /// Elements per block.
    pub block: u64,
    /// Bytes per block.
    pub block_bytes: u64,
    /// A quantized (block) type that `llama_model_quantize` can produce.
    pub quantizable: bool,
}

impl GgmlType {
    /// Bits per weight.
    pub fn bpw(&self) -> f64 {
        self.block_bytes as f64 * 8.0 / self.block as f64
    }
    /// Bytes of one row of `ne0` elements, or None when `ne0` is not a multiple of the block.
    pub fn row_bytes(&self, ne0: u64) -> Option<u64> {
        ne0.is_multiple_of(self.block)
            .then(|| ne0 / self.block * self.block_bytes)
    }
    /// Bytes of a tensor of this shape (ggml order, `dims[0]` the row), or None.
    pub fn tensor_bytes(&self, dims: &[u64]) -> Option<u64> {
        let rows = dims
            .iter()
            .skip(1)
            .try_fold(1u64, |a, &d| a.checked_mul(d))?;
        self.row_bytes(*dims.first()?)?.checked_mul(rows)
    }
    /// Needs an importance matrix to give usable quality (llama.cpp refuses without one).
    pub fn needs_imatrix(&self) -> bool {
        matches!(self.id, 16 | 17 | 18 | 19 | 22 | 29)
    }
}

const fn t(id: u32, name: &'static str, block: u64, block_bytes: u64, q: bool) -> GgmlType {
    GgmlType {
        id,
        name,
        block,
        block_bytes,
        quantizable: q,
    }
}

/// Every ggml type edge knows, by id.
pub const GGML_TYPES: &[GgmlType] = &[
    t(0, "f32", 1, 4, false),
    t(1, "f16", 1, 2, false),
    t(2, "q4_0", 32, 18, true),
    t(3, "q4_1", 32, 20, true),
    t(6, "q5_0", 32, 22, true),
    t(7, "q5_1", 32, 24, true),
    t(8, "q8_0", 32, 34, true),
    t(9, "q8_1", 32, 36, false),
    t(10, "q2_K", 256, 84, true),
    t(11, "q3_K", 256, 110, true),
    t(12, "q4_K", 256, 144, true),
    t(13, "q5_K", 256, 176, true),
    t(14, "q6_K", 256, 210, true),
    t(15, "q8_K", 256, 292, false),
    t(16, "iq2_xxs", 256, 66, true),
    t(17, "iq2_xs", 256, 74, true),
    t(18, "iq3_xxs", 256, 98, true),
    t(19, "iq1_s", 256, 50, true),
    t(20, "iq4_nl", 32, 18, true),
    t(21, "iq3_s", 256, 110, true),
    t(22, "iq2_s", 256, 82, true),
    t(23, "iq4_xs", 256, 136, true),
    t(24, "i8", 1, 1, false),
    t(25, "i16", 1, 2, false),
    t(26, "i32", 1, 4, false),
    t(27, "i64", 1, 8, false),
    t(28, "f64", 1, 8, false),
    t(29, "iq1_m", 256, 56, true),
    t(30, "bf16", 1, 2, false),
    t(34, "tq1_0", 256, 54, true),
    t(35, "tq2_0", 256, 66, true),
    t(39, "mxfp4", 32, 17, true),
];

/// The ggml type with this id.
pub fn ggml_type(id: u32) -> Option<&'static GgmlType> {
    GGML_TYPES.iter().find(|t| t.id == id)
}

/// The ggml type with this name, case-insensitive (`Q4_K`, `q4_k`, `IQ4_XS`, `F16`).
pub fn ggml_type_by_name(name: &str) -> Option<&'static GgmlType> {
    GGML_TYPES
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name.trim()))
}

/// Names of the types a tensor can be set to with `--tensor-type` and recipes.
pub fn tensor_type_names() -> Vec<String> {
    GGML_TYPES
        .iter()
        .filter(|t| t.quantizable || matches!(t.id, 0 | 1 | 30))
        .map(|t| t.name.to_ascii_uppercase())
        .collect()
}

/// A llama.cpp file type (`llama_ftype`): a default tensor type plus llama.cpp's
/// per-tensor mix rules (the `_S`/`_M`/`_L` variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    pub name: &'static str,
    /// `enum llama_ftype` value.
    pub ftype: u32,
    /// The ggml type most tensors get (`llama_ftype_get_default_type`).
    pub default_type: u32,
    /// llama-quantize refuses this file type without an imatrix.
    pub needs_imatrix: bool,
    pub description: &'static str,
}

const fn f(name: &'static str, ftype: u32, dt: u32, im: bool, d: &'static str) -> FileType {
    FileType {
        name,
        ftype,
        default_type: dt,
        needs_imatrix: im,
        description: d,
    }
}

/// Every file type `llama_model_quantize` accepts, in llama-quantize's order.
pub const FILE_TYPES: &[FileType] = &[
    f("Q4_0", 2, 2, false, "4.34 bpw legacy"),
    f("Q4_1", 3, 3, false, "4.78 bpw legacy"),
    f("Q5_0", 8, 6, false, "5.21 bpw legacy"),
    f("Q5_1", 9, 7, false, "5.65 bpw legacy"),
    f("IQ2_XXS", 19, 16, true, "2.06 bpw, needs an imatrix"),
    f("IQ2_XS", 20, 17, true, "2.31 bpw, needs an imatrix"),
    f("IQ2_S", 28, 17, true, "2.5 bpw, needs an imatrix"),
    f("IQ2_M", 29, 22, false, "2.7 bpw"),
    f("IQ1_S", 24, 19, true, "1.56 bpw, needs an imatrix"),
    f("IQ1_M", 31, 29, true, "1.75 bpw, needs an imatrix"),
    f("TQ1_0", 36, 34, false, "1.69 bpw ternary"),
    f("TQ2_0", 37, 35, false, "2.06 bpw ternary"),
    f("Q2_K", 10, 10, false, "2.96 bpw K-quant mix"),
    f("Q2_K_S", 21, 10, true, "2.96 bpw, needs an imatrix"),
    f("IQ3_XXS", 23, 18, false, "3.06 bpw"),
    f("IQ3_S", 26, 21, false, "3.44 bpw"),
    f("IQ3_M", 27, 21, false, "3.66 bpw mix"),
    f("IQ3_XS", 22, 21, false, "3.3 bpw mix"),
    f("Q3_K_S", 11, 11, false, "3.41 bpw K-quant"),
    f("Q3_K_M", 12, 11, false, "3.74 bpw K-quant mix"),
    f("Q3_K_L", 13, 11, false, "4.03 bpw K-quant mix"),
    f("IQ4_NL", 25, 20, false, "4.50 bpw non-linear"),
    f("IQ4_XS", 30, 23, false, "4.25 bpw non-linear"),
    f("Q4_K_S", 14, 12, false, "4.37 bpw K-quant"),
    f("Q4_K_M", 15, 12, false, "4.58 bpw K-quant mix"),
    f("Q5_K_S", 16, 13, false, "5.21 bpw K-quant"),
    f("Q5_K_M", 17, 13, false, "5.33 bpw K-quant mix"),
    f("Q6_K", 18, 14, false, "6.56 bpw K-quant"),
    f("Q8_0", 7, 8, false, "8.5 bpw"),
    f("MXFP4_MOE", 38, 39, false, "MXFP4 experts, Q8_0 elsewhere"),
    f("F16", 1, 1, false, "16 bpw half precision"),
    f("BF16", 32, 30, false, "16 bpw bfloat16"),
    f("F32", 0, 0, false, "32 bpw full precision"),
];

/// Looks up a file type by name, case-insensitive, with llama-quantize's aliases
/// (`Q4_K` = `Q4_K_M`, `Q5_K` = `Q5_K_M`, `Q3_K` = `Q3_K_M`).
pub fn file_type_by_name(name: &str) -> Option<&'static FileType> {
    let upper = name.trim().to_ascii_uppercase();
    let canonical = match upper.as_str() {
        "Q4_K" => "Q4_K_M",
        "Q5_K" => "Q5_K_M",
        "Q3_K" => "Q3_K_M",
        other => other,
    };
    FILE_TYPES.iter().find(|f| f.name == canonical)
}

/// The file type with this `llama_ftype` value.
pub fn file_type(ftype: u32) -> Option<&'static FileType> {
    FILE_TYPES.iter().find(|f| f.ftype == ftype)
}

/// A short list of the file type names, for error messages.
pub fn file_type_names() -> String {
    FILE_TYPES
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_sizes() {
        assert_eq!(ggml_type_by_name("Q4_K").unwrap().id, 12);
        assert_eq!(ggml_type_by_name("iq4_xs").unwrap().id, 23);
        assert_eq!(ggml_type_by_name("BF16").unwrap().id, 30);
        assert!(ggml_type_by_name("Q4_K_M").is_none());
        let q4k = ggml_type(12).unwrap();
        assert_eq!(q4k.bpw(), 4.5);
        assert_eq!(q4k.tensor_bytes(&[512, 3]), Some(2 * 144 * 3));
        assert_eq!(q4k.tensor_bytes(&[576, 3]), None);
        assert_eq!(ggml_type(8).unwrap().tensor_bytes(&[64]), Some(68));
        assert_eq!(file_type_by_name("q4_k").unwrap().name, "Q4_K_M");
        assert_eq!(file_type_by_name("Q8_0").unwrap().ftype, 7);
        assert!(file_type_by_name("Q9_K").is_none());
        assert!(file_type_by_name("IQ2_XS").unwrap().needs_imatrix);
        assert!(!file_type_by_name("IQ4_XS").unwrap().needs_imatrix);
    }

    #[test]
    fn tables_are_consistent() {
        for (i, a) in GGML_TYPES.iter().enumerate() {
            for b in &GGML_TYPES[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.name, b.name);
            }
        }
        for f in FILE_TYPES {
            assert!(ggml_type(f.default_type).is_some(), "{}", f.name);
            assert_eq!(file_type(f.ftype).unwrap().name, f.name);
        }
    }
}
