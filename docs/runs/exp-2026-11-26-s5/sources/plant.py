# Replaces the cached code object holding kernel NAME with CUBIN (same key).
import glob, hashlib, struct, sys
cache, name, cubin = sys.argv[1], sys.argv[2].encode() + b"\0", open(sys.argv[3], "rb").read()
hits = 0
for p in glob.glob(cache + "/*.co"):
    d = open(p, "rb").read()
    if name in d[48:]:
        open(p, "wb").write(b"GRETACO1" + struct.pack("<Q", len(cubin)) + hashlib.sha256(cubin).digest() + cubin)
        hits += 1
print("planted", sys.argv[3], "in", hits, "entries")
