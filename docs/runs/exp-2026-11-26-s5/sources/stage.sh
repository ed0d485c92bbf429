set -u
SECONDS=0
export GRETA_CACHE_DIR=/tmp/gc
B=.carry/exp/greta
K=matvec__FMT5_FMT_B5_NORM0_EPI0_ROWS1_XCAP12288_BLOCK1024
timeout 120 $B bench-kernels --backend cuda --reps 100 > $OUT/warm.txt 2>&1; echo "warm rc $? ${SECONDS}s"
for r in 1 2; do
  python3 .carry/tma/plant.py /tmp/gc $K .carry/tma/h-1024-12288-ctl.cubin
  timeout 60 $B bench-kernels --backend cuda --reps 100 > $OUT/ctl-$r.txt 2>&1; echo "ctl $r rc $? ${SECONDS}s"
  grep -E "Q4_K r1b1024u1 +(4096->4096 |11008->4096)" $OUT/ctl-$r.txt | cut -c1-100
  python3 .carry/tma/plant.py /tmp/gc $K .carry/tma/h-1024-12288-stage.cubin
  GRETA_EXP_DYNSHARED=198144 GRETA_EXP_DYNSHARED_KERNEL=NORM0_EPI0_ROWS1_XCAP12288 timeout 60 $B bench-kernels --backend cuda --reps 100 > $OUT/stage-$r.txt 2>&1; echo "stage $r rc $? ${SECONDS}s"
  grep -E "Q4_K r1b1024u1 +(4096->4096 |11008->4096)" $OUT/stage-$r.txt | cut -c1-100
  tail -3 $OUT/stage-$r.txt | grep -i error
done
