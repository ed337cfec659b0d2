"""The payfirst benchmark suite (`make bench`, docs/PERFORMANCE.md): real processes, real
PostgreSQL, anvil with 1 s blocks. `run.py` is the driver; one module per phase:

- `accept_closed`: wrk (closed loop) at 100 and 1,000 connections, then one more run under
  py-spy;
- `accept_open`: an open loop (requests sent at a fixed rate, latency counted from each
  request's scheduled time) at 1,000 and 2,000 payments/s (`open_loop` is its client);
- `memory`: the API's peak RSS with 10,000 payments queued;
- `latency`: request -> mint confirmed for a steady stream of payments;
- `settlement`: a burst of 5,000 payments, then gas batched vs one tx per payment;
- `peer_sdk`: the official x402 SDK facilitator at several concurrencies, side by side
  with payfirst on the same chain.

`common` holds the environment (database, payfirst processes, options), `signing` the
pre-signing pool, `load` the closed-loop HTTP clients, `pipeline` what the settling phases
share, `pyspy` the profile summary, `report` the JSON / markdown / chart output.
"""
