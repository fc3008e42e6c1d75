# old vs new server, embedded SmolLM2 (float32 on CPU), C=1, 64-token prompts, 16 tokens, 2 interleaved rounds
export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
cd /work/main
for round in 1 2; do for v in old new; do
  P=$((8600 + RANDOM % 300))
  (cd /tmp/${v}_src && PYTHONPATH=/tmp/${v}_src exec /work/main/.venv/bin/python -m mlx_manager.cli serve --port $P > /tmp/cpu_srv_$v.log 2>&1) &
  SP=$!
  for i in $(seq 60); do curl -sf localhost:$P/health >/dev/null && break; sleep 1; done
  .venv/bin/python benchmarks/load_sweep.py --url http://127.0.0.1:$P --tokenizer ~/.cache/mlx-manager/models/SmolLM2-135M-Instruct-q4-float32 --concurrency 1 --requests-per-level 6 --prompt-tokens 64 --max-tokens 16 --out /tmp/cpu_ttft_${v}_$round.json 2>&1 | grep -E "^ +1 " | sed "s/^/$v r$round: /"
  kill $SP; wait $SP 2>/dev/null
done; done
