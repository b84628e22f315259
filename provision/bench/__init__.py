"""``gpuprov bench``: measure an OpenAI-compatible inference server, keep the history, estimate long jobs.

Layers, each its own module:

- :mod:`~provision.bench.sse` — the streaming wire format (``data: {...}`` lines, ``data: [DONE]``) and
  what one streamed chunk says (text, usage, error);
- :mod:`~provision.bench.workload` — the requests to send, seeded and deterministic;
- :mod:`~provision.bench.client` — one streamed request over ``http.client``, timed;
- :mod:`~provision.bench.deadline` — the one watchdog thread that ends requests past their deadline;
- :mod:`~provision.bench.tokens` — output tokens without usage: the server's tokenizer, or an estimate;
- :mod:`~provision.bench.stats` — percentiles and the summary of one concurrency level;
- :mod:`~provision.bench.gpu` — GPU readings through the probe while the load runs;
- :mod:`~provision.bench.config` — a run's settings and their checks;
- :mod:`~provision.bench.serverinfo` — before the load: the server reachable, what it says it is, this host's GPUs;
- :mod:`~provision.bench.runner` — the load at one concurrency, the sweep, the best level;
- :mod:`~provision.bench.progress` — the progress display; :mod:`~provision.bench.tables` and
  :mod:`~provision.bench.json_output` — the results for people and for scripts;
- :mod:`~provision.bench.historydb` — the SQLite history file, its schema and migrations;
  :mod:`~provision.bench.store` — the bench runs in it; :mod:`~provision.bench.history` — comparing runs
  and estimating how long N requests take at each stored configuration.
"""
