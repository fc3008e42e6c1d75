#!/usr/bin/env bash
# One H200: (1) single-process throughput before/after the distributed merge (engine hot path
# touched), interleaved; (2) a 2-rank ring group of the same model on the one GPU.
set -u
bash .gpu/b/install.sh > /dev/null
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
R=$PWD
python3 benchmarks/make_random_model.py /tmp/m --shape 0.5b --tokenizer .gpu/b/tok --dtype bfloat16 | tail -1
(cd .gpu/base && MLX_MANAGER_DATA_DIR=/tmp/d_before PYTHONPATH=/tmp/site:$PWD exec python3 -m mlx_manager.cli serve --model /tmp/m --port 8101 > $OUT/server_before.log 2>&1) &
(MLX_MANAGER_DATA_DIR=/tmp/d_after exec python3 -m mlx_manager.cli serve --model /tmp/m --port 8102 > $OUT/server_after.log 2>&1) &
for p in 8101 8102; do for i in $(seq 1 120); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 1; done; done
sweep() { # port label round
  timeout 150 python3 benchmarks/load_sweep.py --url http://127.0.0.1:$1 --tokenizer /tmp/m --prompt-tokens 512 --max-tokens 128 \
    --concurrency 1,64 --label $2 --out $OUT/$2_r$3.json > $OUT/$2_r$3.txt 2>&1
}
sweep 8101 before 1; sweep 8102 after 1; sweep 8102 after 2; sweep 8101 before 2
pkill -f "port 810[12]"; sleep 3
echo '[["127.0.0.1:29501"], ["127.0.0.1:29502"]]' > /tmp/hosts.json
for rank in 0 1; do
  (MLX_MANAGER_DATA_DIR=/tmp/d_group$rank MLX_HOSTFILE=/tmp/hosts.json MLX_RANK=$rank exec python3 -m mlx_manager.cli serve --distributed --model /tmp/m --port 8103 > $OUT/group_rank$rank.log 2>&1) &
done
ok=0; for i in $(seq 1 150); do curl -sf http://127.0.0.1:8103/health >/dev/null && { ok=1; break; }; sleep 1; done
echo "group up: $ok"
if [ $ok = 1 ]; then
  curl -s http://127.0.0.1:8103/admin/models/status | head -c 600; echo
  sweep 8103 group 1
fi
pkill -f "port 8103"; sleep 2
for f in $OUT/*_r*.txt; do echo "== $f"; tail -6 $f; done
tail -5 $OUT/group_rank0.log $OUT/group_rank1.log
