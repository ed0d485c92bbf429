# Timing-only variant of the Q4_K down (+=) product: step 0 in registers before the wait;
# after the input's loads, one bulk copy per wave brings steps 1..T into shared memory
# (so DRAM streams during the quantisation); steps T+1.. go through registers one ahead.
import sys
src, out, T = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = open(src).read()
e = s.index('extern "C"')
head = s[:e]
e2 = s.index('matvec__', e)
name = s[e2:s.index('(', e2)]
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
extern "C" __global__ void __launch_bounds__(1024, 1) NAME(
    const u32* __restrict__ wa, const u32* __restrict__ wb, const f32* x, const f32* nw, f32* y,
    f16* kc, f16* vc, const u32* pos, u32 rows_a, u32 rows_b, u32 cols, f32 eps, u32 q_rows,
    u32 head_dim, u32 ctx, f32 rope_step) {
    __shared__ i32 xq[3072];
    __shared__ f32 dx[384];
    __shared__ f32 sx[384];
    __shared__ i32 s16[768];
    __shared__ __align__(8) u64 rbar[32];
    extern __shared__ __align__(128) unsigned char wsm[];
    const u32 rows = rows_a + rows_b;
    const u32 items = cols / 64u;
    const u32 steps = (items + 31u) / 32u;
    const u32 row_bytes = cols / 256u * 144u;
    const u32 w = greta_wave_id();
    const u32 lane = greta_lane_id();
    const u32 row = w * gridDim.x + blockIdx.x;
    const bool has_row = row < rows;
    const u32 staged_end = steps < TT + 1u ? steps : TT + 1u;  // steps [1, staged_end) staged
    u32 sbytes = (staged_end - 1u) * 1152u;
    if (1152u + sbytes > row_bytes) sbytes = row_bytes > 1152u ? row_bytes - 1152u : 0u;
    const u32x4* g = reinterpret_cast<const u32x4*>(wa) + (size_t)row * (row_bytes / 16u);
    const u32x4 z = u32x4{{0u, 0u, 0u, 0u}};
    u32x4 a0 = z, a1 = z, a2 = z;
    if (has_row && lane < items) {
        u32 sb = lane / 4u;
        a0 = g[sb * 9u]; a1 = g[sb * 9u + 2u * (lane % 4u) + 1u]; a2 = g[sb * 9u + 2u * (lane % 4u) + 2u];
    }
    unsigned char* rdst = wsm + w * (TT * 1152u);
    if (lane == 0u) mb_init(&rbar[w]);
    greta_allow_next_launch();
    greta_wait_prior_launch();
    f32x4 xv[3];
    #pragma unroll
    for (u32 p = 0u; p < 3u; ++p) {
        u32 i = (p * 1024u + threadIdx.x) * 4u;
        xv[p] = f32x4{{0.0f, 0.0f, 0.0f, 0.0f}};
        if (i < cols) xv[p] = reinterpret_cast<const f32x4*>(x)[i / 4u];
    }
    if (lane == 0u && has_row && sbytes > 0u)
        tma_fetch(rdst, reinterpret_cast<const unsigned char*>(g) + 1152u, sbytes, &rbar[w]);
    #pragma unroll
    for (u32 p = 0u; p < 3u; ++p) {
        u32 i = (p * 1024u + threadIdx.x) * 4u;
        quantise_pass(xv[p], i, i < cols, xq, dx, sx, s16);
    }
    // Register stream from step staged_end, one step ahead.
    u32x4 b0 = z, b1 = z, b2 = z;
    u32 st = staged_end;
    if (has_row && st < steps) {
        u32 it = lane + 32u * st;
        if (it < items) { u32 sb = it / 4u; b0 = g[sb * 9u]; b1 = g[sb * 9u + 2u * (it % 4u) + 1u]; b2 = g[sb * 9u + 2u * (it % 4u) + 2u]; }
    }
    __syncthreads();
    if (!has_row) return;
    f32 resid = 0.0f;
    if (lane == 0u) resid = y[row];
    f32 acc = 0.0f;
    if (lane < items) acc += dot_fetched(FMT, a0, a1, a2, a0, 0u, lane, xq, dx, sx, s16, x, nw, false);
    if (sbytes > 0u) {
        mb_wait(&rbar[w]);
        const u32x4* slot = reinterpret_cast<const u32x4*>(rdst) - 72u;
        for (u32 k = 1u; k < staged_end; ++k) {
            u32 it = lane + 32u * k;
            if (it < items) {
                u32 sb = it / 4u;
                acc += dot_fetched(FMT, slot[sb * 9u], slot[sb * 9u + 2u * (it % 4u) + 1u], slot[sb * 9u + 2u * (it % 4u) + 2u], z, 0u, it, xq, dx, sx, s16, x, nw, false);
            }
        }
    }
    for (; st < steps; ++st) {
        u32x4 n0 = z, n1 = z, n2 = z;
        u32 itn = lane + 32u * (st + 1u);
        if (st + 1u < steps && itn < items) { u32 sb = itn / 4u; n0 = g[sb * 9u]; n1 = g[sb * 9u + 2u * (itn % 4u) + 1u]; n2 = g[sb * 9u + 2u * (itn % 4u) + 2u]; }
        u32 it = lane + 32u * st;
        if (it < items) acc += dot_fetched(FMT, b0, b1, b2, z, 0u, it, xq, dx, sx, s16, x, nw, false);
        b0 = n0; b1 = n1; b2 = n2;
    }
    acc = greta_wave_reduce<greta_sum>(acc);
    if (lane == 0u) y[row] = resid + acc;
}
'''
open(out, 'w').write(head + HELP + f'#define TT {T}u\n' + K.replace('NAME', name))
