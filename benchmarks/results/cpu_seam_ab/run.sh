set -u
cd /work/main
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
O=/tmp/abcpu2; rm -rf $O; mkdir -p $O
(cd /tmp/before_fix && PYTHONPATH=/tmp/before_fix exec /work/main/.venv/bin/python -m mlx_manager.cli serve --model /tmp/tinym --port 8201 > $O/sb.log 2>&1) &
(PYTHONPATH=/work/main exec .venv/bin/python -m mlx_manager.cli serve --model /tmp/tinym --port 8202 > $O/sa.log 2>&1) &
for p in 8201 8202; do for i in $(seq 1 90); do curl -sf http://127.0.0.1:$p/health >/dev/null && break; sleep 1; done; done
sw() { .venv/bin/python benchmarks/load_sweep.py --url http://127.0.0.1:$1 --tokenizer /tmp/tinym --prompt-tokens 128 --max-tokens 64 \
  --concurrency 1,8,32 --requests-per-level 32 --warmup ${4:-none} --label seam-$2 --out $O/$2_r$3.json > $O/$2_r$3.txt 2>&1; }
sw 8201 before 1 burst; sw 8202 after 1 burst
for r in 2 3 4 5 6; do if [ $((r%2)) = 0 ]; then sw 8202 after $r; sw 8201 before $r; else sw 8201 before $r; sw 8202 after $r; fi; done
for f in $O/*_r*.txt; do echo "== $f"; grep -E "^ +[0-9]+ " $f; done
kill %1 %2
