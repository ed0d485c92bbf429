set -u
SECONDS=0
export GRETA_CACHE_DIR=/tmp/gc
B=.carry/bin/greta
timeout 120 $B bench-kernels --backend cuda --reps 100 > $OUT/warm.txt 2>&1; echo "warm rc $? ${SECONDS}s"
plant() { for sh in 4096 12288; do python3 .carry/tma/plant.py /tmp/gc matvec__FMT5_FMT_B5_NORM0_EPI0_ROWS1_XCAP${sh}_BLOCK$1 .carry/tma/h-$1-$sh-$2.cubin > /dev/null; done; }
for r in 1 2; do
  for v in $VARIANTS; do
    plant 1024 $v
    timeout 60 $B bench-kernels --backend cuda --reps 100 > $OUT/b1024-$v-$r.txt 2>&1; echo "1024 $v $r rc $? ${SECONDS}s"
    grep -E "Q4_K r1b1024u1 +(4096->4096 |11008->4096 |4096->22016 |4096->32000 )" $OUT/b1024-$v-$r.txt | cut -c1-100
  done
done
