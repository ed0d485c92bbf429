# Timing-only variants of the Q4_K down (+=) product: the first weight step in registers
# before the wait, the rest of each wave's row staged in shared memory by one bulk copy.
# WHEN: pre = bulk copy before the wait; post = after the input's loads; late = after quantising.
import sys
src, out, when = sys.argv[1], sys.argv[2], sys.argv[3]
stepwise = when.endswith('s')
when = when.rstrip('s') if stepwise else when
s = open(src).read()
head = s[:s.index('extern "C"')]
e = s.index('matvec__', s.index('extern "C"'))
name = s[e:s.index('(', e)]
HELP = r'''
__device__ __forceinline__ u32 sm_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_init(u64* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(sm_addr(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mb_wait(u64* bar) {
    u32 done = 0;
    while (!done) {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done) : "r"(sm_addr(bar)) : "memory");
    }
}
__device__ __forceinline__ void tma_fetch(void* dst, const void* src, u32 bytes, u64* bar) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(sm_addr(bar)), "r"(bytes) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(sm_addr(dst)), "l"(src), "r"(bytes), "r"(sm_addr(bar)) : "memory");
}
'''
K = r'''
#define REST_MAX 5040u
__device__ __forceinline__ void fetch_rest(unsigned char* dst, const unsigned char* src, u32 rest, u64* bars) {
    if (STEPWISE) {
        for (u32 k = 0u; k * 1152u < rest; ++k) {
            u32 n = rest - k * 1152u < 1152u ? rest - k * 1152u : 1152u;
            tma_fetch(dst + k * 1152u, src + k * 1152u, n, &bars[k]);
        }
    } else if (rest > 0u) {
        tma_fetch(dst, src, rest, &bars[0]);
    }
}
extern "C" __global__ void __launch_bounds__(1024, 1) NAME(
    const u32* __restrict__ wa, const u32* __restrict__ wb, const f32* x, const f32* nw, f32* y,
    f16* kc, f16* vc, const u32* pos, u32 rows_a, u32 rows_b, u32 cols, f32 eps, u32 q_rows,
    u32 head_dim, u32 ctx, f32 rope_step) {
    __shared__ i32 xq[3072];
    __shared__ f32 dx[384];
    __shared__ f32 sx[384];
    __shared__ i32 s16[768];
    __shared__ __align__(8) u64 rbar[32 * 8];
    extern __shared__ __align__(128) unsigned char wsm[];
    const u32 rows = rows_a + rows_b;
    const u32 items = cols / 64u;
    const u32 row_bytes = cols / 256u * 144u;
    const u32 w = greta_wave_id();
    const u32 lane = greta_lane_id();
    const u32 row = w * gridDim.x + blockIdx.x;
    const bool has_row = row < rows;
    const u32 first_bytes = row_bytes < 1152u ? row_bytes : 1152u;
    const u32 rest = row_bytes - first_bytes;
    const u32x4* g = reinterpret_cast<const u32x4*>(wa);
    const u32x4 z = u32x4{{0u, 0u, 0u, 0u}};
    u32x4 a0 = z, a1 = z, a2 = z;
    if (has_row && lane < items) {
        u32 sb = row * (cols / 256u) + lane / 4u;
        a0 = g[sb * 9u];
        a1 = g[sb * 9u + 2u * (lane % 4u) + 1u];
        a2 = g[sb * 9u + 2u * (lane % 4u) + 2u];
    }
    const unsigned char* rsrc = reinterpret_cast<const unsigned char*>(wa) + (size_t)row * row_bytes + first_bytes;
    unsigned char* rdst = wsm + w * REST_MAX;
    if (lane == 0u) {
        for (u32 k = 0u; k < 8u; ++k) mb_init(&rbar[8u * w + k]);
#if WHEN_PRE
        if (has_row) fetch_rest(rdst, rsrc, rest, &rbar[8u * w]);
#endif
    }
    greta_allow_next_launch();
    greta_wait_prior_launch();
    f32x4 xv[3];
    #pragma unroll
    for (u32 p = 0u; p < 3u; ++p) {
        u32 i = (p * 1024u + threadIdx.x) * 4u;
        xv[p] = f32x4{{0.0f, 0.0f, 0.0f, 0.0f}};
        if (i < cols) xv[p] = reinterpret_cast<const f32x4*>(x)[i / 4u];
    }
#if WHEN_POST
    if (lane == 0u && has_row) fetch_rest(rdst, rsrc, rest, &rbar[8u * w]);
#endif
    #pragma unroll
    for (u32 p = 0u; p < 3u; ++p) {
        u32 i = (p * 1024u + threadIdx.x) * 4u;
        quantise_pass(xv[p], i, i < cols, xq, dx, sx, s16);
    }
#if WHEN_LATE
    if (lane == 0u && has_row) fetch_rest(rdst, rsrc, rest, &rbar[8u * w]);
#endif
    __syncthreads();
    if (!has_row) return;
    f32 resid = 0.0f;
    if (lane == 0u) resid = y[row];
    f32 acc = 0.0f;
    if (lane < items) acc += dot_fetched(FMT, a0, a1, a2, a0, 0u, lane, xq, dx, sx, s16, x, nw, false);
    const u32x4* slot = reinterpret_cast<const u32x4*>(rdst) - first_bytes / 16u;
    const u32 steps = (items + 31u) / 32u;
    for (u32 st = 1u; st < steps; ++st) {
        u32 it = lane + 32u * st;
        if (STEPWISE) mb_wait(&rbar[8u * w + st - 1u]); else if (st == 1u) mb_wait(&rbar[8u * w]);
        if (it < items) {
            u32 sb = it / 4u;
            u32x4 v0 = slot[sb * 9u];
            u32x4 v1 = slot[sb * 9u + 2u * (it % 4u) + 1u];
            u32x4 v2 = slot[sb * 9u + 2u * (it % 4u) + 2u];
            acc += dot_fetched(FMT, v0, v1, v2, v0, 0u, it, xq, dx, sx, s16, x, nw, false);
        }
    }
    acc = greta_wave_reduce<greta_sum>(acc);
    if (lane == 0u) y[row] = resid + acc;
}
'''
if when == 'ctl':
    open(out, 'w').write(s); sys.exit()
flags = f'#define STEPWISE {int(stepwise)}\n' + ''.join(f'#define WHEN_{k} {int(k.lower() == when)}\n' for k in ['PRE', 'POST', 'LATE'])
open(out, 'w').write(head + HELP + flags + K.replace('NAME', name))
