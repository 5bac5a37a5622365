"""AgentChat's benchmark, run as `python -m bench` from the repository root (see bench/run.py)."""
