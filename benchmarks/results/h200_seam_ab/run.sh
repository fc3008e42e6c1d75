#!/usr/bin/env bash
# A/B: before (6e96e13) on 8101, after (HEAD) on 8102, both up; alternate rounds.
set -u
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
R=$PWD
(cd .gpu/b/before && PYTHONPATH=/tmp/site:$PWD exec python3 -m mlx_manager.cli serve --model /tmp/m --port 8101 > $OUT/server_before.log 2>&1) &
(PYTHONPATH=/tmp/site:$R exec python3 -m mlx_manager.cli serve --model /tmp/m --port 8102 > $OUT/server_after.log 2>&1) &
for p in 8101 8102; do for i in $(seq 1 90); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 1; done; done
curl -s http://127.0.0.1:8101/v1/models | head -c 300; echo
curl -s http://127.0.0.1:8102/v1/models | head -c 300; echo
sweep() { # port label round
  python3 benchmarks/load_sweep.py --url http://127.0.0.1:$1 --tokenizer /tmp/m --prompt-tokens 512 --max-tokens 128 \
    --concurrency 1 --requests-per-level 6 --warmup ${4:-none} --label $2 --out $OUT/$2_r$3_c1.json > $OUT/$2_r$3_c1.txt 2>&1
  python3 benchmarks/load_sweep.py --url http://127.0.0.1:$1 --tokenizer /tmp/m --prompt-tokens 512 --max-tokens 128 \
    --concurrency 8,32,64 --warmup ${4:-none} --label $2 --out $OUT/$2_r$3.json > $OUT/$2_r$3.txt 2>&1
  python3 benchmarks/load_sweep.py --url http://127.0.0.1:$1 --tokenizer /tmp/m --prefix-test --label $2 --out $OUT/$2_r$3_prefix.json > $OUT/$2_r$3_prefix.txt 2>&1
}
sweep 8101 before 1 burst; sweep 8102 after 1 burst
sweep 8102 after 2; sweep 8101 before 2
sweep 8101 before 3; sweep 8102 after 3
sweep 8102 after 4; sweep 8101 before 4
for f in $OUT/*_r*.txt; do echo "== $f"; tail -12 $f; done
