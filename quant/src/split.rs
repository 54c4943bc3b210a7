//! Splitting a GGUF into shards the way llama.cpp's `gguf-split` lays them out:
//! `NAME-00001-of-0000N.gguf`, tensors kept in file order, the first shard carrying all
//! the metadata, every shard carrying `split.no` (u16), `split.count` (u16) and
//! `split.tensors.count` (i32). This is the pure part: which tensors go to which shard.

use std::ops::Range;

/// One tensor as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardTensor {
    /// Bytes of its entry in the tensor-info table.
    pub info_bytes: u64,
    /// Bytes of its data, padded to the alignment.
    pub data_bytes: u64,
}

/// What a shard's header costs besides its tensor infos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeaders {
    /// The first shard: magic, counts, all of the model's KV pairs and the split keys.
    pub first: u64,
    /// Any other shard: magic, counts and the split keys (and the alignment key, if any).
    pub other: u64,
    /// The data alignment (the header is padded to it).
    pub alignment: u64,
}

/// The limits a split must respect; at least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SplitLimits {
    /// Largest shard file, in bytes (header included).
    pub max_bytes: Option<u64>,
    /// Most tensors in one shard.
    pub max_tensors: Option<u64>,
}

/// One planned shard: a run of tensors and the exact size of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub tensors: Range<usize>,
    pub file_bytes: u64,
}

fn align(n: u64, a: u64) -> u64 {
    n.div_ceil(a.max(1)) * a.max(1)
}

/// The file size of a shard holding `tensors`.
fn shard_bytes(base: u64, alignment: u64, tensors: &[ShardTensor]) -> u64 {
    let infos: u64 = tensors.iter().map(|t| t.info_bytes).sum();
    let data: u64 = tensors.iter().map(|t| t.data_bytes).sum();
    align(base + infos, alignment) + data
}

/// Cuts `tensors` (in file order) into shards. A tensor joins the current shard while
/// the shard stays within the limits; every shard holds at least one tensor, so a
/// tensor larger than `max_bytes` gets a shard of its own (over the limit: the only
/// case where a shard exceeds it).
pub fn plan_shards(
    tensors: &[ShardTensor],
    headers: ShardHeaders,
    limits: SplitLimits,
) -> Vec<Shard> {
    let mut shards: Vec<Shard> = Vec::new();
    let mut start = 0usize;
    let base = |n_shards: usize| {
        if n_shards == 0 {
            headers.first
        } else {
            headers.other
        }
    };
    for i in 0..tensors.len() {
        if i == start {
            continue; // the shard's first tensor always stays
        }
        let b = base(shards.len());
        let too_big = limits
            .max_bytes
            .is_some_and(|m| shard_bytes(b, headers.alignment, &tensors[start..=i]) > m);
        let too_many = limits.max_tensors.is_some_and(|m| (i - start) as u64 >= m);
        if too_big || too_many {
            shards.push(Shard {
                tensors: start..i,
                file_bytes: shard_bytes(b, headers.alignment, &tensors[start..i]),
            });
            start = i;
        }
    }
    if start < tensors.len() || shards.is_empty() {
        let b = base(shards.len());
        shards.push(Shard {
            tensors: start..tensors.len(),
            file_bytes: shard_bytes(b, headers.alignment, &tensors[start..]),
        });
    }
    shards
}

/// `model.gguf` (or `model`) -> `model-00002-of-00005.gguf`, as llama.cpp's
/// `llama_split_path` names shard `no` (0-based) of `count`.
pub fn shard_name(output: &str, no: usize, count: usize) -> String {
    let prefix = output.strip_suffix(".gguf").unwrap_or(output);
    format!("{prefix}-{:05}-of-{count:05}.gguf", no + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(sizes: &[u64]) -> Vec<ShardTensor> {
        sizes
            .iter()
            .map(|&d| ShardTensor {
                info_bytes: 40,
                data_bytes: d,
            })
            .collect()
    }

    const H: ShardHeaders = ShardHeaders {
        first: 1000,
        other: 100,
        alignment: 32,
    };

    #[test]
    fn by_size_in_order_with_headers_counted() {
        let t = ts(&[3200, 3200, 3200, 3200, 3200]);
        let s = plan_shards(
            &t,
            H,
            SplitLimits {
                max_bytes: Some(8000),
                max_tensors: None,
            },
        );
        // first: align(1000+80)=1088 + 6400 = 7488; +1 would be 1120+9600 > 8000
        assert_eq!(
            s.iter().map(|s| s.tensors.clone()).collect::<Vec<_>>(),
            vec![0..2, 2..4, 4..5]
        );
        assert_eq!(s[0].file_bytes, 1088 + 6400);
        assert_eq!(s[1].file_bytes, 192 + 6400);
        assert!(s.iter().all(|s| s.file_bytes <= 8000));
        let covered: usize = s.iter().map(|s| s.tensors.len()).sum();
        assert_eq!(covered, t.len());
    }

    #[test]
    fn oversized_tensor_gets_its_own_shard() {
        let t = ts(&[100, 50_000, 100]);
        let s = plan_shards(
            &t,
            H,
            SplitLimits {
                max_bytes: Some(2000),
                max_tensors: None,
            },
        );
        assert_eq!(
            s.iter().map(|s| s.tensors.clone()).collect::<Vec<_>>(),
            vec![0..1, 1..2, 2..3]
        );
        assert!(s[1].file_bytes > 2000);
    }

    #[test]
    fn by_tensor_count_and_both() {
        let t = ts(&[32; 7]);
        let lim = SplitLimits {
            max_bytes: None,
            max_tensors: Some(3),
        };
        let s = plan_shards(&t, H, lim);
        assert_eq!(
            s.iter().map(|s| s.tensors.clone()).collect::<Vec<_>>(),
            vec![0..3, 3..6, 6..7]
        );
        let big = SplitLimits {
            max_bytes: Some(1_000_000),
            max_tensors: Some(100),
        };
        assert_eq!(plan_shards(&t, H, big).len(), 1);
        assert_eq!(plan_shards(&[], H, big).len(), 1);
    }

    #[test]
    fn names_like_llama_cpp() {
        assert_eq!(shard_name("a/m.gguf", 0, 3), "a/m-00001-of-00003.gguf");
        assert_eq!(shard_name("m", 2, 3), "m-00003-of-00003.gguf");
    }
}
