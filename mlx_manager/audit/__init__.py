"""The request audit log: one small row per client request on the generating APIs.

- `middleware`: starts a record for each audited path (arrival, request id, API), sees the
  status, the error's code and a client that goes away, and hands the finished row over.
- `route_note`: the generation seam's hook (routing/route_audit.py): the rule, the backend
  tried, the targets passed over, whether data left the machine.
- `record`: the record, and the watch on the answer's event stream (first token, tokens,
  an error event mid-stream).
- `writer`: a bounded queue and a batched writer on the event loop (full queue: rows are
  dropped and counted, never waited for); retention deletes old rows in batches.
- `query`: filters, keyset pages and aggregates for GET /admin/requests.
"""
