//! cuBLAS as the reference rate for the generated matrix products: loaded on first use,
//! on the backend's stream, so its launches are timed by the same events.

use crate::error::{Error, Result};
use cudarc::cublas::{result, sys};
use cudarc::driver::sys::{CUdeviceptr, CUstream};
use std::ffi::c_void;

/// A cuBLAS handle bound to one stream.
pub struct Cublas {
    handle: sys::cublasHandle_t,
}

// SAFETY: the handle is used by one backend, whose calls bind its context first; cuBLAS
// handles may move between threads.
unsafe impl Send for Cublas {}
unsafe impl Sync for Cublas {}

impl Cublas {
    /// Loads cuBLAS and creates a handle on `stream`, or says why it cannot.
    pub fn new(stream: CUstream) -> std::result::Result<Cublas, String> {
        // SAFETY: probing for the library has no preconditions.
        if !unsafe { sys::is_culib_present() } {
            return Err(
                "cuBLAS (libcublas.so) was not found; add its folder to LD_LIBRARY_PATH".into(),
            );
        }
        let handle =
            result::create_handle().map_err(|e| format!("cuBLAS handle creation: {e:?}"))?;
        // SAFETY: a fresh handle and the backend's live stream.
        unsafe { result::set_stream(handle, stream as sys::cudaStream_t) }
            .map_err(|e| format!("cuBLAS stream binding: {e:?}"))?;
        Ok(Cublas { handle })
    }

    /// `c = a · bᵀ` with `a` `m x k` and `b` `n x k` f16 and `c` `m x n` f32, row-major,
    /// accumulated in f32. Column-major cuBLAS sees `cᵀ = b · aᵀ`: `b` transposed, `a` not.
    pub fn gemm_f16(
        &self,
        a: CUdeviceptr,
        b: CUdeviceptr,
        c: CUdeviceptr,
        (m, n, k): (usize, usize, usize),
    ) -> Result<()> {
        let dim = |v: usize| {
            i32::try_from(v)
                .map_err(|_| Error::Backend(format!("cuBLAS dimension {v} exceeds i32")))
        };
        let (m, n, k) = (dim(m)?, dim(n)?, dim(k)?);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the caller checked that the buffers hold the shapes' elements.
        unsafe {
            result::gemm_ex(
                self.handle,
                sys::cublasOperation_t::CUBLAS_OP_T,
                sys::cublasOperation_t::CUBLAS_OP_N,
                n,
                m,
                k,
                &alpha as *const f32 as *const c_void,
                b as *const c_void,
                sys::cudaDataType::CUDA_R_16F,
                k,
                a as *const c_void,
                sys::cudaDataType::CUDA_R_16F,
                k,
                &beta as *const f32 as *const c_void,
                c as *mut c_void,
                sys::cudaDataType::CUDA_R_32F,
                n,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| Error::Backend(format!("cuBLAS GemmEx: {e:?}")))
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: the handle is live and used by no one else.
        let _ = unsafe { result::destroy_handle(self.handle) };
    }
}
