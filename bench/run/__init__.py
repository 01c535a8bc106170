"""The pieces of ``bench/run_bench.py``: the workload W(N, K) and one runner per tool.

* :mod:`.workload` — what every tool must bring about on every host, how to reset and verify it;
* :mod:`.timing` — timing one tool invocation (a subprocess, interpreter start included);
* :mod:`.fabric_loop` — the baseline: a hand-written, tuned Fabric loop (also a script);
* :mod:`.ansible_play` — ansible-playbook at its best settings;
* :mod:`.pyinfra_deploy` — pyinfra;
* :mod:`.fedi` — fedi-run itself (``fedi-run run``);
* :mod:`.report` — the Markdown table.

Every runner has the same shape (:class:`.timing.Tool`): ``prepare`` writes its input files
once per lab, ``reset`` forgets whatever the tool keeps between runs, ``invoke`` runs the
tool once and returns an :class:`.timing.Invocation` (wall time, exit status, output and the
number of changes the tool reported, when it reports one), ``cleanup`` runs after every
invocation, outside the timing, and ``close`` once at the end. ``warm_up`` says whether the
tool gets one untimed run before the repetitions.
"""
