"""The data plane: listeners, the query pipeline and its stages, cache, upstreams.

It answers queries and nothing else: policy arrives compiled (policymap.py),
control traffic leaves for the control plane (routing.py), events leave in
bounded queues (events.py). It runs on the control process's loop
(``workers = 1``, dataplane.py) or in worker processes (worker.py). See
docs/architecture.md.
"""
