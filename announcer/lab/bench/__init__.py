"""The failover benchmark, `announcer lab bench` (method: docs/benchmark.md).

`command` (the CLI) -> `run` (lab up, every system, lab down) -> per system a `phase` (r1's
FIB watched) in which `scenarios` and `rolling` (the planned restart, with the `client` driven
by `traffic`) inject faults through `announcer.lab.faults` and read timings from the FIB;
`systems` says how each contender runs on a node, `footprint` reads /proc; `outcome` holds the
results, which `report` (JSON, Markdown) and `plots` (PNG) render.
"""
