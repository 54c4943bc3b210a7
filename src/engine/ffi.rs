//! The only place edge calls llama.cpp's C API directly (through `llama-cpp-sys-2`),
//! for what the safe `llama-cpp-2` crate does not cover: log routing, build facts,
//! quantization, the imatrix eval callback and ggml RPC devices.
//! Every `unsafe` block states why it is sound.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::error::EngineError;

static VERBOSE: AtomicBool = AtomicBool::new(false);
/// Recent warning/error lines from llama.cpp, so a failed load can say why even when
/// logs are hidden (llama.cpp reports most load failures only through its log).
static RECENT_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MAX_RECENT: usize = 16;

extern "C" fn log_callback(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string that lives for the call.
    let line = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if VERBOSE.load(Ordering::Relaxed) {
        eprint!("{line}");
    }
    let is_problem = level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR
        || level == llama_cpp_sys_2::GGML_LOG_LEVEL_WARN;
    if is_problem {
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            if let Ok(mut recent) = RECENT_ERRORS.lock() {
                if recent.len() == MAX_RECENT {
                    recent.remove(0);
                }
                recent.push(trimmed.to_string());
            }
        }
    }
}

/// Routes llama.cpp and ggml logs through edge: printed to stderr only when `verbose`,
/// otherwise kept (warnings and errors only) for error messages.
pub fn install_log_callback(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    // SAFETY: the callback is a plain `extern "C" fn` with 'static lifetime and no user
    // data; llama_log_set/ggml_log_set only store the pointers.
    unsafe {
        llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut());
        llama_cpp_sys_2::ggml_log_set(Some(log_callback), std::ptr::null_mut());
    }
}

/// llama.cpp's most recent warning or error line (drained), or `fallback`: why a load
/// or context creation failed, even with logs hidden.
pub fn last_error_line(fallback: &str) -> String {
    take_recent_errors()
        .into_iter()
        .rev()
        .find(|l| {
            !l.starts_with("llama_model_load_from_file") && !l.starts_with("llama_init_from_model")
        })
        .unwrap_or_else(|| fallback.to_string())
}

/// Drains the warnings and errors llama.cpp logged since the last call.
pub fn take_recent_errors() -> Vec<String> {
    RECENT_ERRORS
        .lock()
        .map(|mut recent| std::mem::take(&mut *recent))
        .unwrap_or_default()
}

/// llama.cpp's own system-info line (compiled CPU features such as AVX2, FMA, F16C).
pub fn system_info() -> String {
    // SAFETY: returns a pointer to a static buffer inside llama.cpp, valid until the next
    // call; we copy it out immediately and edge never calls it concurrently.
    unsafe {
        let ptr = llama_cpp_sys_2::llama_print_system_info();
        if ptr.is_null() {
            return String::new();
        }
        CStr::from_ptr(ptr).to_string_lossy().trim().to_string()
    }
}

/// Names of the ggml backends compiled into this binary (CPU, CUDA, Metal, Vulkan, …).
pub fn backend_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: registry count/get/name are read-only queries on ggml's static backend
    // registry; the returned name pointers are static strings.
    unsafe {
        for i in 0..llama_cpp_sys_2::ggml_backend_reg_count() {
            let reg = llama_cpp_sys_2::ggml_backend_reg_get(i);
            if reg.is_null() {
                continue;
            }
            let name = llama_cpp_sys_2::ggml_backend_reg_name(reg);
            if !name.is_null() {
                names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
        }
    }
    names
}

/// ggml's version and commit as compiled into this binary.
pub fn ggml_version() -> String {
    // SAFETY: both return pointers to static strings compiled into ggml.
    unsafe {
        let v = llama_cpp_sys_2::ggml_version();
        let c = llama_cpp_sys_2::ggml_commit();
        let v = if v.is_null() {
            "?".into()
        } else {
            CStr::from_ptr(v).to_string_lossy()
        };
        let c = if c.is_null() {
            "?".into()
        } else {
            CStr::from_ptr(c).to_string_lossy()
        };
        format!("ggml {v} (commit {c})")
    }
}

// ---- quantization (llama_model_quantize, imatrix eval callback) ----

/// What `llama_model_quantize` should do; the Rust side of `llama_model_quantize_params`.
#[derive(Debug, Clone, Default)]
pub struct QuantizeParams {
    /// `enum llama_ftype`.
    pub ftype: u32,
    pub threads: i32,
    /// ggml type ids; None keeps llama.cpp's choice.
    pub output_tensor_type: Option<u32>,
    pub token_embedding_type: Option<u32>,
    pub allow_requantize: bool,
    /// Every tensor at the file type's default type (llama.cpp's `--pure`).
    pub pure: bool,
    pub keep_split: bool,
    pub dry_run: bool,
    /// (regex, ggml type id), first match wins, as `--tensor-type`.
    pub tensor_types: Vec<(String, u32)>,
    /// Per tensor name: the mean squared activations (per expert, concatenated).
    pub imatrix: Vec<(String, Vec<f32>)>,
}

type LogSink = Box<dyn FnMut(&str) + Send>;
static QUANT_LOG_SINK: Mutex<Option<LogSink>> = Mutex::new(None);

extern "C" fn quant_log_callback(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    user: *mut c_void,
) {
    log_callback(level, text, user);
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string that lives for the call.
    let line = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if let Ok(mut sink) = QUANT_LOG_SINK.lock() {
        if let Some(f) = sink.as_mut() {
            f(&line);
        }
    }
}

/// Runs `llama_model_quantize(input, output, params)`. Every llama.cpp log line goes to
/// `on_log` as well (progress and the dry-run plan are read from it). Returns llama.cpp's
/// error line on failure.
pub fn model_quantize(
    input: &std::path::Path,
    output: &std::path::Path,
    p: &QuantizeParams,
    on_log: LogSink,
) -> Result<(), EngineError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use EngineError::Quantize;
    let cpath = |path: &std::path::Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Quantize(format!("{}: path contains a NUL byte", path.display())))
    };
    let c_in = cpath(input)?;
    let c_out = cpath(output)?;
    let patterns: Vec<CString> = p
        .tensor_types
        .iter()
        .map(|(re, _)| {
            CString::new(re.as_str()).map_err(|_| Quantize(format!("{re}: contains a NUL byte")))
        })
        .collect::<Result<_, _>>()?;
    let mut overrides: Vec<llama_cpp_sys_2::llama_model_tensor_override> = patterns
        .iter()
        .zip(&p.tensor_types)
        .map(
            |(c, (_, ty))| llama_cpp_sys_2::llama_model_tensor_override {
                pattern: c.as_ptr(),
                type_: *ty as _,
            },
        )
        .collect();
    overrides.push(llama_cpp_sys_2::llama_model_tensor_override {
        pattern: std::ptr::null(),
        type_: 0,
    });
    let im_names: Vec<CString> = p
        .imatrix
        .iter()
        .map(|(n, _)| {
            CString::new(n.as_str()).map_err(|_| Quantize(format!("{n}: contains a NUL byte")))
        })
        .collect::<Result<_, _>>()?;
    let mut im: Vec<llama_cpp_sys_2::llama_model_imatrix_data> = im_names
        .iter()
        .zip(&p.imatrix)
        .map(|(c, (_, v))| llama_cpp_sys_2::llama_model_imatrix_data {
            name: c.as_ptr(),
            data: v.as_ptr(),
            size: v.len(),
        })
        .collect();
    im.push(llama_cpp_sys_2::llama_model_imatrix_data {
        name: std::ptr::null(),
        data: std::ptr::null(),
        size: 0,
    });

    // SAFETY: returns a plain struct by value.
    let mut params = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    params.nthread = p.threads;
    params.ftype = p.ftype as _;
    if let Some(t) = p.output_tensor_type {
        params.output_tensor_type = t as _;
    }
    if let Some(t) = p.token_embedding_type {
        params.token_embedding_type = t as _;
    }
    params.allow_requantize = p.allow_requantize;
    params.pure_ = p.pure;
    params.keep_split = p.keep_split;
    params.dry_run = p.dry_run;
    if !p.tensor_types.is_empty() {
        params.tt_overrides = overrides.as_ptr();
    }
    if !p.imatrix.is_empty() {
        params.imatrix = im.as_ptr();
    }

    if let Ok(mut sink) = QUANT_LOG_SINK.lock() {
        *sink = Some(on_log);
    }
    take_recent_errors();
    // SAFETY: the callback is a 'static extern "C" fn without user data.
    unsafe {
        llama_cpp_sys_2::llama_log_set(Some(quant_log_callback), std::ptr::null_mut());
        llama_cpp_sys_2::ggml_log_set(Some(quant_log_callback), std::ptr::null_mut());
    }
    // SAFETY: the paths are NUL-terminated C strings; `params` and every array it points
    // to (`overrides`, `im`, with the CStrings and f32 vectors they borrow) live until
    // this call returns; both arrays end with the null-name terminator llama.cpp reads
    // up to. llama_model_quantize catches its C++ exceptions and returns non-zero.
    let rc =
        unsafe { llama_cpp_sys_2::llama_model_quantize(c_in.as_ptr(), c_out.as_ptr(), &params) };
    install_log_callback(VERBOSE.load(Ordering::Relaxed));
    if let Ok(mut sink) = QUANT_LOG_SINK.lock() {
        *sink = None;
    }
    drop((overrides, im, patterns, im_names));
    if rc == 0 {
        return Ok(());
    }
    let errors = take_recent_errors();
    let why = errors
        .iter()
        .rev()
        .find_map(|l| l.split("failed to quantize: ").nth(1).map(str::to_string))
        .or_else(|| errors.last().cloned())
        .unwrap_or_else(|| "llama.cpp could not quantize it (run with -v for details)".into());
    Err(Quantize(why.trim().to_string()))
}

/// Quantizes `rows` (row-major, `n_per_row` each) to ggml type `type_id` and back to f32,
/// as llama.cpp does (with the optional per-column importance `imatrix`). None when the
/// type cannot be produced for this row length or needs an imatrix that is missing.
pub fn quantize_roundtrip(
    type_id: u32,
    rows: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
) -> Option<Vec<f32>> {
    if n_per_row == 0
        || !rows.len().is_multiple_of(n_per_row)
        || imatrix.is_some_and(|m| m.len() != n_per_row)
    {
        return None;
    }
    let ty = type_id as llama_cpp_sys_2::ggml_type;
    let nrows = rows.len() / n_per_row;
    // SAFETY: pure queries on ggml's static type table; ggml_get_type_traits returns a
    // pointer into that static table (checked for null) for any id below GGML_TYPE_COUNT.
    let (block, to_float, needs_im) = unsafe {
        if type_id >= llama_cpp_sys_2::GGML_TYPE_COUNT {
            return None;
        }
        let traits = llama_cpp_sys_2::ggml_get_type_traits(ty);
        if traits.is_null() {
            return None;
        }
        (
            llama_cpp_sys_2::ggml_blck_size(ty),
            (*traits).to_float,
            llama_cpp_sys_2::ggml_quantize_requires_imatrix(ty),
        )
    };
    let to_float = to_float?;
    if block <= 0 || n_per_row as i64 % block != 0 || (needs_im && imatrix.is_none()) {
        return None;
    }
    // SAFETY: a pure size computation.
    let row_bytes = unsafe { llama_cpp_sys_2::ggml_row_size(ty, n_per_row as i64) };
    let mut q = vec![0u8; row_bytes * nrows];
    let mut out = vec![0f32; rows.len()];
    // SAFETY: `rows` holds nrows*n_per_row floats, `q` exactly nrows row_size bytes,
    // `out` as many floats as `rows`; the row length is a multiple of the block size and
    // an imatrix (n_per_row floats) is passed whenever the type requires one, so neither
    // call hits a ggml assertion.
    unsafe {
        let written = llama_cpp_sys_2::ggml_quantize_chunk(
            ty,
            rows.as_ptr(),
            q.as_mut_ptr().cast(),
            0,
            nrows as i64,
            n_per_row as i64,
            imatrix.map_or(std::ptr::null(), |m| m.as_ptr()),
        );
        if written != q.len() {
            return None;
        }
        to_float(q.as_ptr().cast(), out.as_mut_ptr(), rows.len() as i64);
    }
    Some(out)
}

/// Importance-matrix statistics gathered by [`imatrix_collect`]: per weight tensor the
/// summed squared input activations per column (`ne0` per expert for MoE `_exps`
/// tensors) and the tokens seen per matrix, as llama-imatrix collects them.
#[derive(Debug, Default)]
pub struct ImatrixAcc {
    pub entries: std::collections::HashMap<String, (Vec<f32>, Vec<f32>)>,
    error: Option<String>,
    scratch: Vec<u8>,
}

/// llama-imatrix's `filter_tensor_name`: strips a `BACKEND#` prefix and `#N` suffix.
fn imatrix_weight_name(raw: &str) -> &str {
    match raw.split_once('#') {
        Some((_, rest)) => rest.split('#').next().unwrap_or(rest),
        None => raw,
    }
}

/// Copies a tensor's bytes to host memory (or borrows them when already on the host).
///
/// SAFETY (caller): `t` is a live tensor of the graph being evaluated.
unsafe fn tensor_bytes(t: *const llama_cpp_sys_2::ggml_tensor, scratch: &mut Vec<u8>) -> &[u8] {
    let n = llama_cpp_sys_2::ggml_nbytes(t);
    if !(*t).buffer.is_null()
        && llama_cpp_sys_2::ggml_backend_buffer_is_host((*t).buffer)
        && !(*t).data.is_null()
    {
        return std::slice::from_raw_parts((*t).data as *const u8, n);
    }
    scratch.resize(n, 0);
    llama_cpp_sys_2::ggml_backend_tensor_get(t, scratch.as_mut_ptr().cast(), 0, n);
    &scratch[..]
}

extern "C" fn imatrix_callback(
    t: *mut llama_cpp_sys_2::ggml_tensor,
    ask: bool,
    user: *mut c_void,
) -> bool {
    if t.is_null() || user.is_null() {
        return !ask;
    }
    // SAFETY: ggml calls this with a live graph node `t` during llama_decode on the
    // thread that called it; `user` is the `ImatrixAcc` that `imatrix_collect` lent for
    // exactly that call and does not touch meanwhile. Source tensors are checked for null,
    // and every read stays inside the byte ranges ggml_nbytes reports, with offsets
    // computed from the tensors' own ne/nb strides.
    unsafe {
        let node = &*t;
        let is_id = node.op == llama_cpp_sys_2::GGML_OP_MUL_MAT_ID;
        if node.op != llama_cpp_sys_2::GGML_OP_MUL_MAT && !is_id {
            return !ask;
        }
        let (src0, src1) = (node.src[0], node.src[1]);
        if src0.is_null() || src1.is_null() {
            return !ask;
        }
        let name = CStr::from_ptr((*src0).name.as_ptr())
            .to_string_lossy()
            .into_owned();
        let wname = imatrix_weight_name(&name).to_string();
        let s1 = &*src1;
        if ask {
            if is_id {
                return true;
            }
            return s1.ne[1] >= 16
                && s1.type_ == llama_cpp_sys_2::GGML_TYPE_F32
                && wname.starts_with("blk.");
        }
        let acc = &mut *(user as *mut ImatrixAcc);
        if s1.type_ != llama_cpp_sys_2::GGML_TYPE_F32 || s1.nb[0] != 4 {
            return true;
        }
        let ne0 = s1.ne[0] as usize;
        let mut scratch = std::mem::take(&mut acc.scratch);
        let data = tensor_bytes(src1, &mut scratch).to_vec();
        acc.scratch = scratch;
        let row = |i1: i64, i2: i64, i3: i64| -> Option<&[u8]> {
            let off = i1 as usize * s1.nb[1] + i2 as usize * s1.nb[2] + i3 as usize * s1.nb[3];
            data.get(off..off + ne0 * 4)
        };
        let add = |vals: &mut [f32], x: &[u8]| {
            for (v, c) in vals.iter_mut().zip(x.chunks_exact(4)) {
                let f = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                *v += f * f;
            }
        };
        if is_id {
            let ids_t = node.src[2];
            if ids_t.is_null() {
                return true;
            }
            let ids = &*ids_t;
            let n_as = (*src0).ne[2].max(1) as usize;
            let mut s2 = Vec::new();
            let id_bytes = tensor_bytes(ids_t, &mut s2).to_vec();
            let e = acc
                .entries
                .entry(wname.clone())
                .or_insert_with(|| (vec![0.0; ne0 * n_as], vec![0.0; n_as]));
            if e.0.len() != ne0 * n_as {
                acc.error = Some(format!("{wname}: inconsistent activation shapes"));
                return false;
            }
            for idx in 0..ids.ne[0] {
                for r in 0..s1.ne[2] {
                    let off = r as usize * ids.nb[1] + idx as usize * ids.nb[0];
                    let Some(b) = id_bytes.get(off..off + 4) else {
                        continue;
                    };
                    let ex = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if ex < 0 || ex as usize >= n_as {
                        continue;
                    }
                    let ex = ex as usize;
                    if let Some(x) = row(idx % s1.ne[1], r, 0) {
                        e.1[ex] += 1.0;
                        add(&mut e.0[ex * ne0..(ex + 1) * ne0], x);
                    }
                }
            }
        } else {
            let (ne02, ne03) = ((*src0).ne[2].max(1), (*src0).ne[3].max(1));
            let n_mat = (ne02 * ne03) as usize;
            let e = acc
                .entries
                .entry(wname.clone())
                .or_insert_with(|| (vec![0.0; ne0 * n_mat], vec![0.0; n_mat]));
            if e.0.len() != ne0 * n_mat {
                acc.error = Some(format!("{wname}: inconsistent activation shapes"));
                return false;
            }
            for i3 in 0..s1.ne[3] {
                for i2 in 0..s1.ne[2] {
                    let mat = ((i2 % ne02) + (i3 % ne03) * ne02) as usize;
                    for i1 in 0..s1.ne[1] {
                        if let Some(x) = row(i1, i2, i3) {
                            e.1[mat] += 1.0;
                            add(&mut e.0[mat * ne0..(mat + 1) * ne0], x);
                        }
                    }
                }
            }
        }
        true
    }
}

/// Owns a raw llama.cpp model and context; frees them on drop.
struct RawModel(*mut llama_cpp_sys_2::llama_model);
impl Drop for RawModel {
    fn drop(&mut self) {
        // SAFETY: the pointer came from llama_model_load_from_file and is freed once.
        unsafe { llama_cpp_sys_2::llama_model_free(self.0) }
    }
}
struct RawContext(*mut llama_cpp_sys_2::llama_context);
impl Drop for RawContext {
    fn drop(&mut self) {
        // SAFETY: the pointer came from llama_init_from_model and is freed once, before
        // its model (declared later, dropped later).
        unsafe { llama_cpp_sys_2::llama_free(self.0) }
    }
}

/// The context settings of [`super::ContextSpec`] for the raw C struct.
#[derive(Debug, Clone)]
pub struct RawContextParams {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub n_seq: u32,
    pub threads: i32,
    pub type_k: Option<llama_cpp_sys_2::ggml_type>,
    pub type_v: Option<llama_cpp_sys_2::ggml_type>,
    pub flash_attn: Option<bool>,
}

/// llama.cpp's flash-attention policy for "required" (`true`) or "off" (`false`).
pub fn flash_attn_policy(on: bool) -> llama_cpp_sys_2::llama_flash_attn_type {
    if on {
        llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
    } else {
        llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
    }
}

/// Runs the model at `model_path` (`n_gpu_layers` on the GPU-like devices, tensors
/// matching `cpu_overrides` on the CPU) over `text` in chunks of
/// `cp.n_ctx` tokens (each from an empty cache with BOS first, as llama-imatrix does),
/// skipping the first `skip` chunks and stopping after `max` more, and adds the
/// activations of every matrix multiplication to `acc`. `on_chunk(done, total)` is
/// called after each chunk. Returns (chunks done, total).
#[allow(clippy::too_many_arguments)]
pub fn imatrix_collect(
    model_path: &std::path::Path,
    n_gpu_layers: u32,
    cpu_overrides: &[String],
    cp: &RawContextParams,
    text: &str,
    skip: usize,
    max: Option<usize>,
    acc: &mut ImatrixAcc,
    on_chunk: &mut dyn FnMut(usize, usize),
) -> Result<(usize, usize), EngineError> {
    use EngineError::Imatrix;
    let n_ctx = cp.n_ctx;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(model_path.as_os_str().as_bytes())
        .map_err(|_| Imatrix("the model path contains a NUL byte".into()))?;
    let patterns = cpu_overrides
        .iter()
        .map(|p| CString::new(p.as_str()).map_err(|_| EngineError::BadPattern(p.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    take_recent_errors();
    // SAFETY: plain constructors and queries on pointers checked for null; the model and
    // context are freed by their guards (context first); the buffer-type override list
    // is NUL-terminated and points into `patterns`, both alive until the load returns;
    // token buffers are sized from llama_tokenize's own answer; the eval callback's user
    // data (`acc`) outlives every llama_decode call and is not used by Rust code while a
    // decode runs.
    unsafe {
        let mut mparams = llama_cpp_sys_2::llama_model_default_params();
        mparams.n_gpu_layers = n_gpu_layers as i32;
        let cpu = llama_cpp_sys_2::ggml_backend_cpu_buffer_type();
        let mut overrides: Vec<llama_cpp_sys_2::llama_model_tensor_buft_override> = patterns
            .iter()
            .map(|p| llama_cpp_sys_2::llama_model_tensor_buft_override {
                pattern: p.as_ptr(),
                buft: cpu,
            })
            .collect();
        overrides.push(llama_cpp_sys_2::llama_model_tensor_buft_override {
            pattern: std::ptr::null(),
            buft: std::ptr::null_mut(),
        });
        if !patterns.is_empty() {
            mparams.tensor_buft_overrides = overrides.as_ptr();
        }
        let model = llama_cpp_sys_2::llama_model_load_from_file(cpath.as_ptr(), mparams);
        drop(overrides);
        if model.is_null() {
            return Err(EngineError::Load {
                path: model_path.to_path_buf(),
                reason: last_error_line("llama.cpp could not load it"),
            });
        }
        let model = RawModel(model);
        let vocab = llama_cpp_sys_2::llama_model_get_vocab(model.0);
        let add_bos = llama_cpp_sys_2::llama_vocab_get_add_bos(vocab);
        let bos = llama_cpp_sys_2::llama_vocab_bos(vocab);
        let bytes = text.as_bytes();
        let len = i32::try_from(bytes.len()).map_err(|_| EngineError::TextTooLong)?;
        let mut tokens = vec![0 as llama_cpp_sys_2::llama_token; bytes.len() + 2];
        let n = llama_cpp_sys_2::llama_tokenize(
            vocab,
            bytes.as_ptr().cast(),
            len,
            tokens.as_mut_ptr(),
            tokens.len() as i32,
            true,
            false,
        );
        if n < 0 {
            return Err(Imatrix("tokenizing the text failed".into()));
        }
        tokens.truncate(n as usize);
        let n_ctx_us = n_ctx as usize;
        let total = tokens.len() / n_ctx_us;
        if total == 0 {
            return Err(EngineError::TextTooShort {
                tokens: tokens.len(),
                chunk: n_ctx_us,
            });
        }
        let end = max.map_or(total, |m| (skip + m).min(total));
        let mut cparams = llama_cpp_sys_2::llama_context_default_params();
        cparams.n_ctx = n_ctx;
        cparams.n_batch = cp.n_batch;
        cparams.n_ubatch = cp.n_ubatch;
        cparams.n_seq_max = cp.n_seq.max(1);
        cparams.n_threads = cp.threads;
        cparams.n_threads_batch = cp.threads;
        if let Some(t) = cp.type_k {
            cparams.type_k = t;
        }
        if let Some(t) = cp.type_v {
            cparams.type_v = t;
        }
        if let Some(fa) = cp.flash_attn {
            cparams.flash_attn_type = flash_attn_policy(fa);
        }
        cparams.cb_eval = Some(imatrix_callback);
        cparams.cb_eval_user_data = (acc as *mut ImatrixAcc).cast();
        let ctx = llama_cpp_sys_2::llama_init_from_model(model.0, cparams);
        if ctx.is_null() {
            return Err(EngineError::Context {
                n_ctx,
                for_seqs: String::new(),
                reason: last_error_line("llama.cpp could not create it"),
            });
        }
        let ctx = RawContext(ctx);
        let mut done = 0;
        for c in skip..end {
            let mut chunk: Vec<llama_cpp_sys_2::llama_token> =
                tokens[c * n_ctx_us..(c + 1) * n_ctx_us].to_vec();
            if add_bos && bos >= 0 {
                chunk[0] = bos;
            }
            llama_cpp_sys_2::llama_memory_clear(llama_cpp_sys_2::llama_get_memory(ctx.0), true);
            // Every position is an output, as in llama-imatrix: otherwise llama.cpp
            // drops the non-output rows before the last layer's FFN and those weights
            // would get no statistics.
            let m = chunk.len();
            let mut pos: Vec<llama_cpp_sys_2::llama_pos> = (0..m as i32).collect();
            let mut n_seq = vec![1i32; m];
            let mut seq_ids = vec![0 as llama_cpp_sys_2::llama_seq_id; m];
            let mut seq_ptrs: Vec<*mut llama_cpp_sys_2::llama_seq_id> =
                seq_ids.iter_mut().map(|s| s as *mut _).collect();
            let mut logits = vec![1i8; m];
            let batch = llama_cpp_sys_2::llama_batch {
                n_tokens: m as i32,
                token: chunk.as_mut_ptr(),
                embd: std::ptr::null_mut(),
                pos: pos.as_mut_ptr(),
                n_seq_id: n_seq.as_mut_ptr(),
                seq_id: seq_ptrs.as_mut_ptr(),
                logits: logits.as_mut_ptr(),
            };
            let rc = llama_cpp_sys_2::llama_decode(ctx.0, batch);
            drop((pos, n_seq, seq_ptrs, seq_ids, logits));
            if let Some(e) = acc.error.take() {
                return Err(Imatrix(e));
            }
            if rc != 0 {
                return Err(EngineError::Decode(format!("error {rc}")));
            }
            done += 1;
            on_chunk(skip + done, total);
        }
        drop(ctx);
        drop(model);
        Ok((done, total))
    }
}

// ---- ggml RPC: another llama.cpp process (or a thread of this one) as a device ----

// ggml-rpc.h is not in llama-cpp-sys-2's bindings; these match its declarations
// (ggml/include/ggml-rpc.h, protocol 7.0.0). Linked statically when built with
// GGML_RPC=ON (.cargo/config.toml).
extern "C" {
    fn ggml_backend_rpc_add_server(endpoint: *const c_char) -> llama_cpp_sys_2::ggml_backend_reg_t;
    fn ggml_backend_rpc_start_server(
        endpoint: *const c_char,
        cache_dir: *const c_char,
        n_threads: usize,
        n_devices: usize,
        devices: *mut llama_cpp_sys_2::ggml_backend_dev_t,
    );
}

/// Serves this process's CPU device over ggml's RPC protocol at `endpoint` (HOST:PORT).
/// Blocks forever: run it on its own thread (or as `edge rpc-server`).
pub fn rpc_serve_cpu(endpoint: &str, threads: usize) -> Result<(), EngineError> {
    let rpc_err = |reason: &str| EngineError::Rpc {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let endpoint = std::ffi::CString::new(endpoint).map_err(|_| rpc_err("has a NUL byte"))?;
    // SAFETY: ggml_backend_dev_by_type only reads ggml's static device registry.
    let mut cpu = unsafe {
        llama_cpp_sys_2::ggml_backend_dev_by_type(llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU)
    };
    if cpu.is_null() {
        return Err(rpc_err("no CPU device in this build"));
    }
    // SAFETY: endpoint is a valid C string for the call; a null cache_dir disables the
    // tensor cache; `devices` points to one valid device handle that outlives the call
    // (device handles are static).
    unsafe {
        ggml_backend_rpc_start_server(
            endpoint.as_ptr(),
            std::ptr::null(),
            threads.max(1),
            1,
            &mut cpu,
        );
    }
    Err(rpc_err("the server stopped"))
}

/// Connects to an RPC server and registers its devices with ggml, so llama.cpp offloads
/// to them like to a GPU. Returns the names of the devices added (e.g. `RPC0`).
pub fn rpc_add_server(endpoint: &str) -> Result<Vec<String>, EngineError> {
    let rpc_err = |reason: &str| EngineError::Rpc {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let c_endpoint = std::ffi::CString::new(endpoint).map_err(|_| rpc_err("has a NUL byte"))?;
    // SAFETY: plain queries of the device registry before and after registration.
    let before = unsafe { llama_cpp_sys_2::ggml_backend_dev_count() };
    // SAFETY: the endpoint string is valid for the call; ggml copies it.
    let reg = unsafe { ggml_backend_rpc_add_server(c_endpoint.as_ptr()) };
    if reg.is_null() {
        return Err(rpc_err("cannot connect"));
    }
    // SAFETY: `reg` is a valid registry entry returned by ggml; registering it adds its
    // devices to the global list.
    unsafe { llama_cpp_sys_2::ggml_backend_register(reg) };
    // SAFETY: a read-only query of the device registry.
    let after = unsafe { llama_cpp_sys_2::ggml_backend_dev_count() };
    let mut names = Vec::new();
    for i in before..after {
        // SAFETY: i < dev_count; the returned name is a static C string owned by ggml.
        let name = unsafe {
            let dev = llama_cpp_sys_2::ggml_backend_dev_get(i);
            CStr::from_ptr(llama_cpp_sys_2::ggml_backend_dev_name(dev))
                .to_string_lossy()
                .into_owned()
        };
        names.push(name);
    }
    if names.is_empty() {
        return Err(rpc_err("it offers no device"));
    }
    Ok(names)
}
