#!/usr/bin/env python3
"""numpy's float32 GEMM at GPT-Neo's shapes, in rounds on request (see bench/README.md).

    python bench/sgemm.py --threads 2 --shapes 279x768x2304 279x768x768

Prints "ready" once its matrices exist, then answers each line "round" on stdin with one JSON
line on stdout, {"samples_s": [[seconds, ...] per shape]}: every shape timed by `run_seconds`.
It exits at the end of stdin. `neoprobe bench --baseline` alternates these rounds with rounds of
its own kernels, so both sides are timed in the same stretches of the machine's time.

As a module it holds the timing rule and the shapes that bench/hf_baseline.py times numpy and
torch with; it imports numpy only when it serves, after setting the BLAS thread count.
"""
import argparse
import json
import os
import sys
import time


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gemm_shapes(m, d, d_mlp):
    """(name, M, K, N) of the model's GEMMs for a batch of m tokens."""
    return [
        ("qkv", m, d, 3 * d),        # q, k, v projections as one GEMM (HF runs three of m x d x d)
        ("out_proj", m, d, d),
        ("c_fc", m, d, d_mlp),
        ("c_proj", m, d_mlp, d),
        ("anchor_256", 256, 768, 3072),  # gpt-neo-notes.md's anchor, fixed whatever the model
    ]


def run_seconds(fn, min_runs=10, min_total=0.3):
    """Seconds of each of at least min_runs timed runs lasting min_total seconds in all (after two
    warm-up runs): the rule neoprobe bench times its kernels with."""
    fn()
    fn()
    samples = []
    while len(samples) < min_runs or sum(samples) < min_total:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def parse_shape(text):
    try:
        m, k, n = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MxKxN (three positive integers)")
    if min(m, k, n) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not MxKxN (three positive integers)")
    return m, k, n


def serve(shapes, threads):
    # OpenBLAS reads its thread count when it is loaded.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numpy as np

    rng = np.random.default_rng(0)
    operands = []
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        operands.append((a, b, np.empty((m, n), dtype=np.float32)))
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            print(json.dumps({"error": f"unknown request {line.strip()!r}; send 'round'"}), flush=True)
            continue
        samples = [run_seconds(lambda: np.matmul(a, b, out=c)) for a, b, c in operands]
        print(json.dumps({"samples_s": samples}), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", type=parse_shape, required=True, metavar="MxKxN")
    p.add_argument("--threads", type=int, default=available_cpus(),
                   help="BLAS threads (default: CPUs available = %(default)s)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    serve(args.shapes, args.threads)


if __name__ == "__main__":
    main()
