"""Times `run_with_cache` from Python against `neoprobe extract` on the same work: the challenge's
200 words (data/verbs.txt + data/nouns.txt, each alone, mean-pooled) at blocks.8.mlp.hook_pre, with
`return_type=None` (the forward stops at the hook, as extract's does).

Like is compared with like, in alternating runs:
  forward:  extract's `--json` `seconds.forward` (its batches through the model) against the
            in-process `run_with_cache` call on a model already loaded (the same batches, plus
            tokenizing and the copy into numpy);
  whole:    one `neoprobe extract` process from start to exit against loading the model in this
            process (`Model.from_dir`) plus the call.
  warm:     a second run_with_cache call on the same loaded model, which a process that keeps the
            model pays for each further input (extract pays its first-forward costs every time).
Medians over the runs, and each ratio Python ÷ CLI, are printed (and written as JSON with --json).

    cargo build --release
    neoprobe bench --synthetic gpt-neo-125m --save-synthetic /tmp/gpt-neo-125m-synthetic
    python bench/python_api.py --model-dir /tmp/gpt-neo-125m-synthetic --runs 5

Needs the module installed (`pip install ./python`) and numpy.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import neoprobe

REPO = Path(__file__).resolve().parents[1]
HOOK = "blocks.8.mlp.hook_pre"


def words():
    lines = []
    for name in ("verbs.txt", "nouns.txt"):
        lines += [w.strip() for w in (REPO / "data" / name).read_text(encoding="utf-8").splitlines() if w.strip()]
    return lines


def cli_run(cli, model_dir, words_file, out, variant):
    args = [str(cli), "extract", "--model-dir", str(model_dir), "--words", str(words_file), "--hook", HOOK, "--out", str(out), "--json"]
    if variant:
        args += ["--kernel-variant", variant]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"extract failed: {done.stderr}")
    summary = json.loads(done.stdout)
    return wall, summary["seconds"]["forward"], summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(REPO / "fixtures" / "tiny-neo"), help="model folder (default: the tiny fixture)")
    parser.add_argument("--cli", default=str(REPO / "target" / "release" / "neoprobe"), help="the neoprobe binary")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of each (default 5)")
    parser.add_argument("--kernel-variant", default=None, help="kernel variant for both (default: the adapter's)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    listed = words()
    with tempfile.TemporaryDirectory() as tmp:
        words_file = Path(tmp) / "words.txt"
        words_file.write_text("\n".join(listed) + "\n", encoding="utf-8")
        cli_forward, cli_wall, py_call, py_whole, py_warm = [], [], [], [], []
        adapter = variant = None
        for run in range(args.runs):
            out = Path(tmp) / f"run{run}.npy"
            wall, forward, summary = cli_run(args.cli, args.model_dir, words_file, out, args.kernel_variant)
            cli_wall.append(wall)
            cli_forward.append(forward)

            started = time.perf_counter()
            model = neoprobe.Model.from_dir(args.model_dir, kernel_variant=args.kernel_variant)
            call_started = time.perf_counter()
            _, cache = model.run_with_cache(listed, names=[HOOK], return_type=None)
            ended = time.perf_counter()
            py_call.append(ended - call_started)
            py_whole.append(ended - started)
            warm_started = time.perf_counter()
            model.run_with_cache(listed, names=[HOOK], return_type=None)
            py_warm.append(time.perf_counter() - warm_started)
            adapter, variant = model.adapter, model.kernel_variant
            same = np.array_equal(cache[HOOK].view(np.uint32), np.load(out).view(np.uint32))
            if not same:
                sys.exit("run_with_cache and extract disagree")
            del model, cache
        n_tokens = summary["n_tokens"]

    median = statistics.median
    results = {
        "model_dir": args.model_dir,
        "adapter": adapter,
        "variant": variant,
        "words": len(listed),
        "tokens": n_tokens,
        "hook": HOOK,
        "runs": args.runs,
        "forward_seconds": {
            "extract": median(cli_forward),
            "run_with_cache": median(py_call),
            "run_with_cache_warm": median(py_warm),
        },
        "whole_seconds": {"extract_process": median(cli_wall), "from_dir_plus_call": median(py_whole)},
    }
    results["forward_ratio"] = results["forward_seconds"]["run_with_cache"] / results["forward_seconds"]["extract"]
    results["warm_ratio"] = results["forward_seconds"]["run_with_cache_warm"] / results["forward_seconds"]["extract"]
    results["whole_ratio"] = results["whole_seconds"]["from_dir_plus_call"] / results["whole_seconds"]["extract_process"]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{adapter}, {variant} kernels, {len(listed)} words ({n_tokens} tokens) at {HOOK}, {args.runs} alternating runs, medians:")
    print(f"  forward  extract --json seconds.forward {median(cli_forward) * 1e3:9.1f} ms   run_with_cache call   {median(py_call) * 1e3:9.1f} ms   ratio {results['forward_ratio']:.3f}")
    print(f"  warm     (the same)                                       second call, same model {median(py_warm) * 1e3:7.1f} ms   ratio {results['warm_ratio']:.3f}")
    print(f"  whole    extract process                {median(cli_wall) * 1e3:9.1f} ms   from_dir + call       {median(py_whole) * 1e3:9.1f} ms   ratio {results['whole_ratio']:.3f}")


if __name__ == "__main__":
    main()
