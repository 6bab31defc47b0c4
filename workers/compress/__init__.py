"""Compression jobs: make a trained pool model smaller and cheaper to run, and measure it.

From a finished job's checkpoint (`checkpoint.py`) the pipeline
(`pipeline.py`) produces dynamic int8 quantization (`quantize.py`),
magnitude pruning (`prune.py`), a distilled smaller student (`distil.py`)
and an ONNX export checked with onnxruntime (`export.py`); `measure.py`
times each one and estimates its energy with the pool's telemetry, and
`report.py` lays them side by side with the original. Run it with
`commonpool compress JOB_ID` or as a pool job with the entrypoint
`commonpool.workers.compress.job:run`.
"""
