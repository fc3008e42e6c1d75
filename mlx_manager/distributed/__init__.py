"""One model sharded over an mx.distributed group: rank 0 leads, the other ranks follow.

mlx-lm shards the model (`Model.shard`, tensor parallel: its layers all-reduce inside the
forward); this package keeps the ranks in step. Rank 0 runs the server, the pool and the
scheduler; before each forward it sends the step's plan over a TCP side channel
(`channel`, `leader`) and every follower runs the same forward on its shard (`follower`).
"""
