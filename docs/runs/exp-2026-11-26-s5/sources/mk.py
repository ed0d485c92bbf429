# Variants of the emitted matvec with the input fetched by one bulk (TMA) copy.
import re, sys
HELP = r'''
__device__ __forceinline__ u32 greta_smem(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void tma_init(u64* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(greta_smem(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
__device__ __forceinline__ void tma_fetch(void* dst, const void* src, u32 bytes, u64* bar) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(greta_smem(bar)), "r"(bytes) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(greta_smem(dst)), "l"(src), "r"(bytes), "r"(greta_smem(bar)) : "memory");
}
__device__ __forceinline__ void tma_wait(u64* bar) {
    u32 done = 0;
    while (!done) {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done) : "r"(greta_smem(bar)) : "memory");
    }
}
'''
src, out, variant, cols = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = open(src).read()
if variant == 'ctl':
    open(out, 'w').write(s); sys.exit()
s = s.replace('extern "C" __global__', HELP + 'extern "C" __global__', 1)
m = re.search(r'    __shared__ i32 xq\[(\d+)\];\n    __shared__ f32 dx\[(\d+)\];\n    __shared__ f32 sx\[(\d+)\];\n    __shared__ i32 s16\[(\d+)\];\n', s)
nxq, ndx, nsx, ns16 = map(int, m.groups())
overlay = cols * 4 + (nxq + ndx + nsx + ns16) * 4 > 48 * 1024 - 256
if overlay:
    # Quantised input laid over the fetched floats, after a barrier.
    assert (nxq + ndx + nsx + ns16) <= cols
    decl = (f'    __shared__ __align__(128) f32 xs[{cols}];\n'
            f'    i32* xq = reinterpret_cast<i32*>(xs);\n'
            f'    f32* dx = xs + {nxq};\n    f32* sx = xs + {nxq + ndx};\n'
            f'    i32* s16 = reinterpret_cast<i32*>(xs + {nxq + ndx + nsx});\n')
else:
    decl = m.group(0) + f'    __shared__ __align__(128) f32 xs[{cols}];\n'
decl += '    __shared__ __align__(8) u64 tma_bar;\n    if (threadIdx.x == 0u) tma_init(&tma_bar);\n    __syncthreads();\n'
s = s.replace(m.group(0), decl, 1)
# The global loads of the input become shared loads of the fetched copy.
issue = f'if (threadIdx.x == 0u) tma_fetch(xs, x, {cols * 4}u, &tma_bar);\n'
body = s[s.index('extern "C"'):]
head = s[:s.index('extern "C"')]
body = body.replace('reinterpret_cast<const f32x4*>(x)[', 'reinterpret_cast<const f32x4*>(xs)[')
# The prologue block after the wait.
w = body.index('greta_wait_prior_launch();')
pro_start = body.index('{', w)
# matching brace
d = 0
for k in range(pro_start, len(body)):
    if body[k] == '{': d += 1
    elif body[k] == '}':
        d -= 1
        if d == 0: pro_end = k + 1; break
prologue = body[pro_start:pro_end]
# barrier between reading the fetched floats and writing the overlay
if overlay:
    prologue = prologue.replace('#line 180', '__syncthreads();\n#line 180', 1)
if variant == 'A':
    newpro = '{ ' + issue + 'tma_wait(&tma_bar);\n' + prologue + '}'
    body = body[:pro_start] + newpro + body[pro_end:]
elif variant == 'B':
    body = body[:pro_start] + '{ ' + issue + '}' + body[pro_end:]
    # at s == 1, before the barrier: wait for the copy, then quantise
    body = body.replace('if (s == 1u) {\n            __syncthreads();', 'if (s == 1u) {\n tma_wait(&tma_bar);\n {\n' + prologue[prologue.index('{') + 1:] + '\n            __syncthreads();', 1)
open(out, 'w').write(head + body)
