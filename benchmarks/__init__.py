"""Benchmarks of the proxy, one module per scenario (`python -m benchmarks.<name> --help`).

Each runs a real proxy process and a `fake-agents` process, measures from a third process (the
benchmark itself), prints one line of figures and exits 0. Timings are reported beside a reference
measured in the same run: prometheus_client's `generate_latest` rendering the same number of samples
with the same label shapes. See benchmarks/README.md.
"""
