set -u
SECONDS=0
export GRETA_CACHE_DIR=/tmp/gq
B=.carry/bin/greta
timeout 120 $B bench-kernels --backend cuda --reps 100 > $OUT/warm.txt 2>&1; echo "warm rc $? ${SECONDS}s"
for r in 1 2; do for v in ctl nosin fast; do
  for fb in 5 6; do python3 .carry/qkv/plant.py /tmp/gq matvec__FMT5_FMT_B${fb}_NORM1_EPI3_ROWS1_XCAP4096_BLOCK1024 .carry/qkv/q$fb-$v.cubin > /dev/null; done
  timeout 60 $B bench-kernels --backend cuda --reps 100 > $OUT/$v-$r.txt 2>&1; echo "$v $r rc $? ${SECONDS}s"
  grep -E "qkv" $OUT/$v-$r.txt | cut -c1-100
done; done
