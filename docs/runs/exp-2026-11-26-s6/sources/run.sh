set -u
SECONDS=0
export GRETA_CACHE_DIR=/tmp/gc
B=.carry/exp/greta
K=matvec__FMT5_FMT_B5_NORM0_EPI1_ROWS1_XCAP12288_BLOCK1024
timeout 120 $B bench-kernels --backend cuda --reps 100 > $OUT/warm.txt 2>&1; echo "warm rc $? ${SECONDS}s"
for r in 1 2; do
  for v in ${VARIANTS:-ctl pre post late}; do
    python3 .carry/v/plant.py /tmp/gc $K .carry/v/$v.cubin > /dev/null
    GRETA_EXP_DYNSHARED=161280 GRETA_EXP_DYNSHARED_KERNEL=NORM0_EPI1_ROWS1_XCAP12288 timeout 60 $B bench-kernels --backend cuda --reps 100 > $OUT/$v-$r.txt 2>&1; echo "$v $r rc $? ${SECONDS}s"
    grep -E "copy bandwidth|Q4_K r1b1024u1 +(4096->4096 |11008->4096)" $OUT/$v-$r.txt | cut -c1-100
    tail -3 $OUT/$v-$r.txt | grep -i error
  done
done
