# Timing-only variants of an emitted matvec source: python3 hack.py SRC OUT opt[,opt...]
import sys

MB = r"""
__device__ __forceinline__ u32 mb_smem(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_init(u64* bar, u32 n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(mb_smem(bar)), "r"(n) : "memory");
}
__device__ __forceinline__ void mb_arrive(u64* bar) {
    asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];" :: "r"(mb_smem(bar)) : "memory");
}
__device__ __forceinline__ void mb_wait(u64* bar) {
    u32 done = 0;
    while (!done) {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done) : "r"(mb_smem(bar)) : "memory");
    }
}
"""
src, out, opts = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
s = open(src).read()
i = s.index('extern "C"')
head, body = s[:i], s[i:]
BAR = 'if (s == 1u) {\n            __syncthreads();\n        }'
assert BAR in body, 'barrier'
for o in opts:
    if o == 'ctl':
        pass
    elif o == 'nowait':
        body = body.replace('greta_wait_prior_launch();', '', 1)
    elif o == 'nox':
        n = body.count('reinterpret_cast<const f32x4*>(x)[')
        assert n > 0
        body = body.replace('reinterpret_cast<const f32x4*>(x)[i / 4u]', 'f32x4{{1.0f, -2.0f, 3.0f, (f32)(i & 7u)}}')
        body = body.replace('reinterpret_cast<const f32x4*>(x)[i_2 / 4u]', 'f32x4{{1.0f, -2.0f, 3.0f, (f32)(i_2 & 7u)}}')
    elif o == 'nobar':
        body = body.replace(BAR, '', 1)
    elif o == 'lateallow':
        assert body.count('greta_allow_next_launch();') == 1
        body = body.replace('greta_allow_next_launch();', '', 1)
        body = body.replace(BAR, 'if (s == 1u) {\n            __syncthreads();\n            greta_allow_next_launch();\n        }', 1)
    elif o == 'endallow':
        body = body.replace('greta_allow_next_launch();', '', 1)
    elif o == 'startbar':
        body = body.replace('    __shared__ f32 ssw[32];\n', '    __shared__ f32 ssw[32];\n    __syncthreads();\n', 1)
    elif o in ('mbar', 'mbarw', 'mbarw2'):
        head = head + MB
        n = '1024u' if o == 'mbar' else '32u'
        init = 'if (threadIdx.x == 0u) { mb_init(&mbar, ' + n + '); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }\n    __syncthreads();\n'
        if o == 'mbarw2':
            body = body.replace('    __shared__ f32 ssw[32];\n', '    __shared__ f32 ssw[32];\n    __shared__ __align__(8) u64 mbar;\n', 1)
            body = body.replace('greta_wait_prior_launch();', init + 'greta_wait_prior_launch();', 1)
        else:
          body = body.replace('    __shared__ f32 ssw[32];\n', '    __shared__ f32 ssw[32];\n    __shared__ __align__(8) u64 mbar;\n    if (threadIdx.x == 0u) { mb_init(&mbar, ' + n + '); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }\n    __syncthreads();\n', 1)
        arrive = 'mb_arrive(&mbar);' if o == 'mbar' else '__syncwarp(); if (greta_lane_id() == 0u) mb_arrive(&mbar);'
        body = body.replace(BAR, 'if (s == 0u) {\n            ' + arrive + '\n        }\n        if (s == 1u) {\n            mb_wait(&mbar);\n        }', 1)
    elif o == 'mbarhalf':
        head = head + MB
        body = body.replace('    __shared__ f32 ssw[32];\n', '    __shared__ f32 ssw[32];\n    __shared__ __align__(8) u64 mbar[2];\n', 1)
        init = 'if (threadIdx.x == 0u) { mb_init(&mbar[0], 16u); mb_init(&mbar[1], 16u); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }\n    __syncthreads();\n'
        body = body.replace('greta_wait_prior_launch();', init + 'greta_wait_prior_launch();', 1)
        arrive = '__syncwarp(); if (greta_lane_id() == 0u) mb_arrive(&mbar[greta_wave_id() / 16u]);'
        body = body.replace(BAR, 'if (s == 0u) {\n            ' + arrive + '\n        }\n        if (s == 1u) {\n            mb_wait(&mbar[0]);\n        }\n        if (s == 2u) {\n            mb_wait(&mbar[1]);\n        }', 1)
    elif o == 'noxq':
        import re
        a = head.index('if (fmt == Q4K) {\n#line 342')
        b = head.index('} else {', a)
        seg = head[a:b]
        seg = re.sub(r'reinterpret_cast<const i32x4\*>\(xq\)\[([^\]]+)\]', r'i32x4{{(i32)(\1), 3, 5, 7}}', seg)
        seg = re.sub(r'\b(dx|sx)\[([^\]]+)\]', r'(f32)(\2)', seg)
        head = head[:a] + seg + head[b:]
    elif o == 'gxq':
        # Timing only: the input read as if it were already int8 blocks in global memory
        # (values are the f32 input's bits), no prologue, no barrier.
        cols = 4096 if 'XCAP4096_' in src else 11008
        w, nb = cols // 4, cols // 32
        a = body.index('if (s == 0u) {')
        b = body.index(BAR)
        body = body[:a] + 'if (s == 0u) {\n            greta_wait_prior_launch();\n        }\n        ' + body[b + len(BAR):]
        old = 'it_1, xq, dx, sx, s16, x, nw, false)'
        assert old in body
        body = body.replace(old, f'it_1, reinterpret_cast<const i32*>(x), x + {w}u, x + {w + nb}u, reinterpret_cast<const i32*>(x), x, nw, false)')
    elif o == 'scales':
        old1 = 'u32 sm0 = q4k_scale_min(v0[1u], v0[2u], v0[3u], 2u * g);'
        old2 = 'u32 sm1 = q4k_scale_min(v0[1u], v0[2u], v0[3u], 2u * g + 1u);'
        assert old1 in head and old2 in head
        new = ('u32 sh_ = 16u * (g & 1u);\n'
               'u32 a16 = v0[1u] >> sh_, b16 = v0[2u] >> sh_, c16 = v0[3u] >> sh_;\n'
               'bool hi_ = g >= 2u;\n'
               'u32 scp = hi_ ? ((c16 & 0x0f0fu) | ((a16 >> 2) & 0x3030u)) : (a16 & 0x3f3fu);\n'
               'u32 mp = hi_ ? (((c16 >> 4) & 0x0f0fu) | ((b16 >> 2) & 0x3030u)) : (b16 & 0x3f3fu);\n'
               'u32 sm0 = (scp & 255u) | (mp & 255u) << 8;\n'
               'u32 sm1 = (scp >> 8 & 255u) | (mp >> 8 & 255u) << 8;')
        head = head.replace(old1, new, 1).replace(old2, '', 1)
    elif o == 'nibbles':
        a = head.index('if (fmt == Q4K) {\n#line 342')
        b = head.index('} else {', a)
        seg = head[a:b]
        import re
        n0 = len(re.findall(r'>> 4 & 252645135u\), (xc|xd)', seg))
        seg = re.sub(r'greta_dp4a\(\(i32\)\((v[12])\[(\d)\] >> 4 & 252645135u\), (xc|xd)\[(\d)\], dot1\)',
                     r'greta_dp4a_us(\1[\2] & 4042322160u, \3[\4], dot1)', seg)
        assert seg.count('greta_dp4a_us') == 8, seg.count('greta_dp4a_us')
        seg = seg.replace('(f32)(sm1 & 255u) * dx[u_1 + 1u] * (f32)(dot1)', '(f32)(sm1 & 255u) * dx[u_1 + 1u] * ((f32)(dot1) * 0.0625f)')
        assert '0.0625f' in seg
        head = head[:a] + seg + head[b:]
        head = head.replace('__device__ __forceinline__ u32 q4k_scale_min', '__device__ __forceinline__ i32 greta_dp4a_us(u32 a, i32 b, i32 c) { i32 d; asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c)); return d; }\n__device__ __forceinline__ u32 q4k_scale_min', 1)
    elif o in ('imad', 'imadmagic'):
        old = 'f32 main_1 = (f32)(sm & 255u) * dx[u_1] * (f32)(dot0) + (f32)(sm >> 8 & 255u) * dx[u_1 + 1u] * (f32)(dot1);'
        assert old in head
        if o == 'imad':
            new = 'f32 main_1 = (f32)((i32)(sm & 255u) * dot0) * dx[u_1] + (f32)((i32)(sm >> 8 & 255u) * dot1) * dx[u_1 + 1u];'
        else:
            new = ('f32 main_1 = (__int_as_float(0x4B400000 + (i32)(sm & 255u) * dot0) - 12582912.0f) * dx[u_1]'
                   ' + (__int_as_float(0x4B400000 + (i32)(sm >> 8 & 255u) * dot1) - 12582912.0f) * dx[u_1 + 1u];')
            old2 = 'f32 offset = (f32)(sm >> 16 & 255u) * sx[u_1] + (f32)(sm >> 24) * sx[u_1 + 1u];'
            assert old2 in head
            head = head.replace(old2, 'f32 offset = (__uint_as_float(0x4B000000u | (sm >> 16 & 255u)) - 8388608.0f) * sx[u_1] + (__uint_as_float(0x4B000000u | (sm >> 24)) - 8388608.0f) * sx[u_1 + 1u];')
        head = head.replace(old, new)
    elif o == 'pairsel':
        old = 'u32 sm = q4k_group_scales(v0[1u], v0[2u], v0[3u], g);'
        assert old in head
        new = ('u32 sh_ = 16u * (g & 1u);\n'
               'u32 a16 = v0[1u] >> sh_, b16 = v0[2u] >> sh_, c16 = v0[3u] >> sh_;\n'
               'bool hi_ = g >= 2u;\n'
               'u32 scp = hi_ ? ((c16 & 0x0f0fu) | ((a16 >> 2) & 0x3030u)) : (a16 & 0x3f3fu);\n'
               'u32 mp = hi_ ? (((c16 >> 4) & 0x0f0fu) | ((b16 >> 2) & 0x3030u)) : (b16 & 0x3f3fu);\n'
               'u32 sm = (scp & 0xffffu) | (mp << 16);')
        head = head.replace(old, new)
    elif o == 'pro16':
        # Prologue: 16 values per thread (one STS.128), pairs of lanes per 32-value block.
        w = body.index('greta_wait_prior_launch();')
        a = body.index('{', w)
        d = 0
        for k in range(a, len(body)):
            if body[k] == '{': d += 1
            elif body[k] == '}':
                d -= 1
                if d == 0: e = k + 1; break
        pro = r'''{
                u32 chunks = cols / 16u;
                if (greta_wave_id() * WAVE < chunks) {
                    u32 c = threadIdx.x;
                    bool valid = c < chunks;
                    f32x4 v[4];
                    #pragma unroll
                    for (u32 k = 0u; k < 4u; ++k) v[k] = valid ? reinterpret_cast<const f32x4*>(x)[4u * c + k] : f32x4{{0.0f, 0.0f, 0.0f, 0.0f}};
                    u32 top = 0u;
                    #pragma unroll
                    for (u32 k = 0u; k < 4u; ++k) top = greta_max(top, greta_max(greta_max(greta_bitcast<u32>(greta_abs(v[k][0])), greta_bitcast<u32>(greta_abs(v[k][1]))), greta_max(greta_bitcast<u32>(greta_abs(v[k][2])), greta_bitcast<u32>(greta_abs(v[k][3])))));
                    top = greta_max(top, greta_shfl_xor(top, 1u));
                    f32 dd = greta_bitcast<f32>(top) * 0.007874016f;
                    f32 inv = dd > 0.0f ? greta_rcp(dd) : 0.0f;
                    i32x4 packed;
                    u32 sum = 0u;
                    #pragma unroll
                    for (u32 k = 0u; k < 4u; ++k) {
                        u32 b0 = greta_bitcast<u32>(v[k][0] * inv + 12582912.0f);
                        u32 b1 = greta_bitcast<u32>(v[k][1] * inv + 12582912.0f);
                        u32 b2 = greta_bitcast<u32>(v[k][2] * inv + 12582912.0f);
                        u32 b3 = greta_bitcast<u32>(v[k][3] * inv + 12582912.0f);
                        packed[k] = (i32)(b0 & 255u | (b1 & 255u) << 8 | (b2 & 255u) << 16 | b3 << 24);
                        sum += b0 + b1 + b2 + b3;
                    }
                    i32 sum16 = (i32)(sum - 4u * 754974720u);
                    i32 sum32 = sum16 + greta_shfl_xor(sum16, 1u);
                    if (valid) {
                        reinterpret_cast<i32x4*>(xq)[xq_slot(c)] = packed;
                        s16[c] = sum16;
                        if (c % 2u == 0u) {
                            dx[c / 2u] = dd;
                            sx[c / 2u] = dd * (f32)(sum32);
                        }
                    }
                }
            }'''
        body = body[:a] + pro + body[e:]
    elif o.startswith('pro'):
        N = int(o[3:])
        # Prologue: 16 values per thread (one STS.128), pairs of lanes per 32-value block.
        w = body.index('greta_wait_prior_launch();')
        a = body.index('{', w)
        d = 0
        for k in range(a, len(body)):
            if body[k] == '{': d += 1
            elif body[k] == '}':
                d -= 1
                if d == 0: e = k + 1; break
        pro = (r'''{
                u32 chunks = cols / NNu;
                for (u32 c = threadIdx.x; c - greta_lane_id() < chunks; c += 1024u) {
                    bool valid = c < chunks;
                    f32x4 v[VV];
                    #pragma unroll
                    for (u32 k = 0u; k < VVu; ++k) v[k] = valid ? reinterpret_cast<const f32x4*>(x)[VVu * c + k] : f32x4{{0.0f, 0.0f, 0.0f, 0.0f}};
                    u32 top = 0u;
                    #pragma unroll
                    for (u32 k = 0u; k < VVu; ++k) top = greta_max(top, greta_max(greta_max(greta_bitcast<u32>(greta_abs(v[k][0])), greta_bitcast<u32>(greta_abs(v[k][1]))), greta_max(greta_bitcast<u32>(greta_abs(v[k][2])), greta_bitcast<u32>(greta_abs(v[k][3])))));
                    SHMAX
                    f32 dd = greta_bitcast<f32>(top) * 0.007874016f;
                    f32 inv = dd > 0.0f ? greta_rcp(dd) : 0.0f;
                    i32 packed[VV];
                    u32 sum = 0u;
                    #pragma unroll
                    for (u32 k = 0u; k < VVu; ++k) {
                        u32 b0 = greta_bitcast<u32>(v[k][0] * inv + 12582912.0f);
                        u32 b1 = greta_bitcast<u32>(v[k][1] * inv + 12582912.0f);
                        u32 b2 = greta_bitcast<u32>(v[k][2] * inv + 12582912.0f);
                        u32 b3 = greta_bitcast<u32>(v[k][3] * inv + 12582912.0f);
                        packed[k] = (i32)(b0 & 255u | (b1 & 255u) << 8 | (b2 & 255u) << 16 | b3 << 24);
                        sum += b0 + b1 + b2 + b3;
                    }
SUMS
                    if (valid) {
STORES
                    }
                }
            }''')
        VV = N // 4
        if N == 8:
            shmax = 'top = greta_max(top, greta_shfl_xor(top, 1u)); top = greta_max(top, greta_shfl_xor(top, 2u));'
            sums = 'i32 sum8 = (i32)(sum - 2u * 754974720u); i32 sum16 = sum8 + greta_shfl_xor(sum8, 1u); i32 sum32 = sum16 + greta_shfl_xor(sum16, 2u);'
            stores = ('reinterpret_cast<int2*>(xq)[2u * xq_slot(c / 2u) + c % 2u] = make_int2(packed[0], packed[1]);\n'
                      'if (c % 2u == 0u) s16[c / 2u] = sum16;\n'
                      'if (c % 4u == 0u) { dx[c / 4u] = dd; sx[c / 4u] = dd * (f32)(sum32); }')
        elif N == 16:
            shmax = 'top = greta_max(top, greta_shfl_xor(top, 1u));'
            sums = 'i32 sum16 = (i32)(sum - 4u * 754974720u); i32 sum32 = sum16 + greta_shfl_xor(sum16, 1u);'
            stores = ('reinterpret_cast<i32x4*>(xq)[xq_slot(c)] = i32x4{{packed[0], packed[1], packed[2], packed[3]}};\n'
                      's16[c] = sum16;\n'
                      'if (c % 2u == 0u) { dx[c / 2u] = dd; sx[c / 2u] = dd * (f32)(sum32); }')
        else:
            shmax = ''
            sums = 'u32 sumlo = 0u; (void)sumlo; i32 sum32 = (i32)(sum - 8u * 754974720u); i32 sum16 = sum32;'
            stores = ('reinterpret_cast<i32x4*>(xq)[xq_slot(2u * c)] = i32x4{{packed[0], packed[1], packed[2], packed[3]}};\n'
                      'reinterpret_cast<i32x4*>(xq)[xq_slot(2u * c + 1u)] = i32x4{{packed[4], packed[5], packed[6], packed[7]}};\n'
                      's16[2u * c] = s16a; s16[2u * c + 1u] = sum32 - s16a;\n'
                      'dx[c] = dd; sx[c] = dd * (f32)(sum32);')
            # first half's sum, for s16
            pro = pro.replace('sum += b0 + b1 + b2 + b3;', 'sum += b0 + b1 + b2 + b3; if (k == 3u) s16a = (i32)(sum - 4u * 754974720u);')
            pro = pro.replace('u32 sum = 0u;', 'u32 sum = 0u; i32 s16a = 0;')
        pro = pro.replace('NN', str(N)).replace('VV', str(VV)).replace('SHMAX', shmax).replace('SUMS', sums).replace('STORES', stores)
        body = body[:a] + pro + body[e:]
    elif o == 'half16':
        old = "for (u32 k = 0u; k < 4u; ++k) v[k] = valid ? reinterpret_cast<const f32x4*>(x)[4u * c + k] : f32x4{{0.0f, 0.0f, 0.0f, 0.0f}};"
        assert old in body, 'pro16 first'
        new = ('''uint4 hraw[2];
                    #pragma unroll
                    for (u32 k = 0u; k < 2u; ++k) hraw[k] = valid ? reinterpret_cast<const uint4*>(x)[2u * c + k] : make_uint4(0u, 0u, 0u, 0u);
                    #pragma unroll
                    for (u32 k = 0u; k < 4u; ++k) {
                        u32 wlo = k % 2u == 0u ? (k < 2u ? hraw[0].x : hraw[1].x) : (k < 2u ? hraw[0].z : hraw[1].z);
                        u32 whi = k % 2u == 0u ? (k < 2u ? hraw[0].y : hraw[1].y) : (k < 2u ? hraw[0].w : hraw[1].w);
                        v[k] = f32x4{{__half2float(__ushort_as_half((unsigned short)(wlo & 0xffffu))), __half2float(__ushort_as_half((unsigned short)(wlo >> 16))), __half2float(__ushort_as_half((unsigned short)(whi & 0xffffu))), __half2float(__ushort_as_half((unsigned short)(whi >> 16)))}};
                    }''')
        body = body.replace(old, new)
        if '#include <cuda_fp16.h>' not in head:
            head = '#include <cuda_fp16.h>\n' + head
    elif o == 'xfirst':
        # The input's loads issued right after the wait, its quantisation after the next
        # step's loads (so x is ahead of them in the queue, and they run during it).
        import re
        w = body.index('greta_wait_prior_launch();')
        a = body.index('{', w)
        d = 0
        for k in range(a, len(body)):
            if body[k] == '{': d += 1
            elif body[k] == '}':
                d -= 1
                if d == 0: e = k + 1; break
        pro = body[a:e]
        m = re.search(r'f32x4 xv\[(\d+)\] = \{[^;]*\};', pro)
        n = int(m.group(1))
        pro = pro.replace(m.group(0), '')
        calls = re.findall(r'quantise_pass\(times\(xv\[(\d+)u\], gv\[\d+u\]\), i_1, i_1 < cols, xq, dx, sx, s16\);', pro)
        assert len(calls) == n, (calls, n)
        pro = re.sub(r'quantise_pass\(times\(xv\[(\d+)u\], gv\[\d+u\]\), i_1, i_1 < cols, xq, dx, sx, s16\);', '', pro)
        pro = pro.replace('xv[', 'xv_h[')
        body = body[:a] + pro + body[e:]
        q = ''.join('{ u32 i_q = (%du * 1024u + threadIdx.x) * 4u; quantise_pass(xv_h[%du], i_q, i_q < cols, xq, dx, sx, s16); }\n' % (k, k) for k in range(n))
        body = body.replace(BAR, 'if (s == 1u) {\n' + q + '            __syncthreads();\n        }', 1)
        decl = 'f32x4 xv_h[%d];\n    ' % n
        body = body.replace('    greta_allow_next_launch();', '    ' + decl + 'greta_allow_next_launch();', 1)
    else:
        raise SystemExit('unknown ' + o)
open(out, 'w').write(head + body)
