#!/usr/bin/env python3
"""HuggingFace baseline for neoprobe's grammar-tuning challenge (see bench/README.md).

    python bench/hf_baseline.py --model-dir DIR --words data/verbs.txt data/nouns.txt --json
    python bench/hf_baseline.py --synthetic gpt-neo-125m --words data/verbs.txt data/nouns.txt --json

The challenge: GPT-Neo, hook on block 8's MLP c_fc output (matmul + bias, before GELU), every word
alone (as written: no BOS, no leading space), each word's activations averaged over its tokens,
one row per word file -> array [n_files, n_words, 3072].

Timed in one process, torch fp32 on the CPU, under torch.inference_mode():
  seed_loop       one word per forward, full model (the seed's loop)
  batched_padded  all words in one right-padded batch with attention_mask, full model
  batched_h9      the same batch through a model cut to blocks 0..8 (transformer.h[:9]), no lm_head
  batched_stop    the same batch, full model, but the hook raises to stop right after block 8's c_fc
  sgemm           numpy (and torch) float32 GEMMs at the model's shapes for this batch
All four forward variants must give the same array (checked; right padding is masked out).

With --json exactly one JSON object goes to stdout; everything else (warnings, progress bars) to
stderr.
"""
import argparse
import os
import sys

from sgemm import available_cpus, gemm_shapes, run_seconds

SCHEMA = "neoprobe-hf-baseline/1"
TOLERANCE = 1e-4
SYNTHETIC = {
    # EleutherAI/gpt-neo-125m's config.json, without the weights.
    "gpt-neo-125m": dict(vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                         intermediate_size=None, window_size=256, max_position_embeddings=2048,
                         attention_types=[[["global", "local"], 6]], activation_function="gelu_new",
                         embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0,
                         layer_norm_epsilon=1e-5, initializer_range=0.02, bos_token_id=50256,
                         eos_token_id=50256, tie_word_embeddings=True),
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOKENIZER = os.path.join(REPO, "fixtures", "tiny-neo", "tokenizer.json")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="HF model dir (config.json + model.safetensors [+ tokenizer.json])")
    src.add_argument("--synthetic", choices=sorted(SYNTHETIC),
                     help="build a seeded random-weight model of this shape instead of loading one")
    p.add_argument("--words", nargs="+", required=True, metavar="FILE",
                   help="word files, one word per line; one output row per file (all the same length)")
    p.add_argument("--tokenizer", help="tokenizer.json (default: MODEL_DIR/tokenizer.json if it exists, "
                   f"else {os.path.relpath(DEFAULT_TOKENIZER, REPO)}, GPT-2's)")
    p.add_argument("--layer", type=int, default=8, help="block whose mlp.c_fc output is hooked (default 8)")
    p.add_argument("--threads", type=int, default=available_cpus(),
                   help="torch (and BLAS) threads (default: CPUs available = %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant after one warm-up (default 3)")
    p.add_argument("--seed", type=int, default=0, help="weight seed for --synthetic (default 0)")
    p.add_argument("--skip-seed-loop", action="store_true",
                   help="do not time seed_loop (slow); batched_padded then is the reference")
    p.add_argument("--save-activations", metavar="OUT.npy",
                   help="save the batched_padded array [n_files, n_words, d_mlp] as float32 .npy")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # OpenBLAS (numpy) reads its thread count when it is loaded: set it before the imports below.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    if ARGS.json:
        # Keep stdout for the JSON alone: anything a library prints goes to stderr instead.
        JSON_OUT = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Model, tokenizer, words

def build_synthetic(name, seed):
    """HF's own GPTNeoForCausalLM at the named shape, seeded; layernorm weights and all biases are
    randomized too (as fixtures/make_fixtures.py does), so none of them is a trivial 1 or 0."""
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(GPTNeoConfig(**SYNTHETIC[name]))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn_like(module.weight))
                module.bias.copy_(0.02 * torch.randn_like(module.bias))
            elif isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.copy_(0.02 * torch.randn_like(module.bias))
    return model


def load_model(args):
    t0 = time.perf_counter()
    if args.synthetic:
        model = build_synthetic(args.synthetic, args.seed)
    else:
        model = GPTNeoForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    model = model.float().eval()
    return model, time.perf_counter() - t0


def tokenizer_path(args):
    if args.tokenizer:
        return args.tokenizer
    if args.model_dir and os.path.exists(os.path.join(args.model_dir, "tokenizer.json")):
        return os.path.join(args.model_dir, "tokenizer.json")
    return DEFAULT_TOKENIZER


def read_words(paths):
    lists = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            words = [line.rstrip("\r\n") for line in f]
        words = [w for w in words if w.strip()]
        if not words:
            sys.exit(f"error: {path}: no words")
        lists.append(words)
    if len({len(ws) for ws in lists}) != 1:
        sys.exit("error: word files differ in length: " + ", ".join(
            f"{p}: {len(ws)}" for p, ws in zip(paths, lists)))
    return lists


def token_ids(tok, words):
    # As written: no special tokens (GPT-2 adds none anyway), no added prefix space.
    return tok(words, add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------------------------------------
# The hook and the four ways to fill the array

class StopForward(Exception):
    pass


class Capture:
    """Forward hook on an nn.Module: keeps its latest output; optionally stops the forward there."""

    def __init__(self, module):
        self.out = None
        self.stop = False
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.out = output
        if self.stop:
            raise StopForward


def seed_loop(model, cap, tok, word_lists):
    """The seed: one word per forward, `model(**tokenizer(word))` (input_ids + attention_mask,
    default use_cache), full model, mean over the word's tokens. As seed_experiment.py does."""
    rows = []
    for words in word_lists:
        row = []
        for word in words:
            model(**tok(word, add_special_tokens=False, return_tensors="pt"))
            row.append(cap.out[0].mean(dim=0))
        rows.append(torch.stack(row))
    return torch.stack(rows).numpy()


def padded_batch(tok, word_lists, pad_id):
    flat = [w for words in word_lists for w in words]
    ids = token_ids(tok, flat)
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    return input_ids, mask


def masked_mean(acts, mask, word_lists):
    m = mask.unsqueeze(-1).to(acts.dtype)
    pooled = (acts * m).sum(dim=1) / m.sum(dim=1)
    return pooled.reshape(len(word_lists), len(word_lists[0]), -1).numpy()


def batched_padded(model, cap, tok, word_lists, pad_id):
    """All words in one right-padded batch, full model (with lm_head), masked mean."""
    input_ids, mask = padded_batch(tok, word_lists, pad_id)
    model(input_ids=input_ids, attention_mask=mask, use_cache=False)
    return masked_mean(cap.out, mask, word_lists)


@contextlib.contextmanager
def truncated(model, n_blocks):
    """transformer.h cut to its first n_blocks for the duration (the weights are shared)."""
    full = model.transformer.h
    model.transformer.h = torch.nn.ModuleList(list(full)[:n_blocks])
    try:
        yield model
    finally:
        model.transformer.h = full


def batched_h9(model, cap, tok, word_lists, pad_id, layer):
    """The same batch through embeddings + blocks 0..layer (+ ln_f), no lm_head."""
    input_ids, mask = padded_batch(tok, word_lists, pad_id)
    with truncated(model, layer + 1):
        model.transformer(input_ids=input_ids, attention_mask=mask, use_cache=False)
    return masked_mean(cap.out, mask, word_lists)


def batched_stop(model, cap, tok, word_lists, pad_id):
    """The same batch, but the hook raises once it has c_fc's output: blocks 0..layer-1, then
    block `layer`'s attention, ln_2 and c_fc, nothing after. The least work HF's modules can do."""
    input_ids, mask = padded_batch(tok, word_lists, pad_id)
    cap.stop = True
    try:
        model(input_ids=input_ids, attention_mask=mask, use_cache=False)
    except StopForward:
        pass
    finally:
        cap.stop = False
    return masked_mean(cap.out, mask, word_lists)


class OthersMeter:
    """How much of the machine other processes used meanwhile: (all CPUs' busy time from
    /proc/stat - this process's CPU time) / (CPUs x wall time). 0 = the machine was ours, 0.5 =
    half of it went to others. None where /proc/stat is missing (not Linux)."""

    def __init__(self):
        self.t0, self.cpu0, self.busy0 = time.perf_counter(), time.process_time(), self._busy()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
        except (OSError, ValueError, IndexError):
            return None

    def frac(self):
        busy = self._busy()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        others = (busy - self.busy0) - (time.process_time() - self.cpu0)
        return max(0.0, others / ((os.cpu_count() or 1) * wall)) if wall > 0 else None


def timed(fn, repeats):
    """One warm-up, then `repeats` timed runs. Returns (timing dict, result of the last run)."""
    t0 = time.perf_counter()
    out = fn()
    warmup = time.perf_counter() - t0
    samples, others = [], []
    meter = OthersMeter()
    for _ in range(repeats):
        one = OthersMeter()
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
        others.append(one.frac())
    return {"median_s": statistics.median(samples), "min_s": min(samples), "samples_s": samples,
            "warmup_s": warmup, "others_cpu_frac": meter.frac(), "samples_others_cpu_frac": others}, out


# ---------------------------------------------------------------------------------------------
# GEMMs

def sgemm(m, d, d_mlp):
    rng = np.random.default_rng(0)
    rows = []
    for name, mm, k, n in gemm_shapes(m, d, d_mlp):
        a = rng.standard_normal((mm, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((mm, n), dtype=np.float32)
        np_samples = run_seconds(lambda: np.matmul(a, b, out=c))
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty((mm, n))
        t_samples = run_seconds(lambda: torch.mm(ta, tb, out=tc))
        np_s, np_median_s, np_runs = min(np_samples), statistics.median(np_samples), len(np_samples)
        t_s, t_median_s, t_runs = min(t_samples), statistics.median(t_samples), len(t_samples)
        gflop = 2.0 * mm * k * n / 1e9
        rows.append({"name": name, "m": mm, "k": k, "n": n, "gflop": gflop,
                     "numpy_best_s": np_s, "numpy_gflops": gflop / np_s,
                     "numpy_median_s": np_median_s, "numpy_median_gflops": gflop / np_median_s,
                     "numpy_runs": np_runs,
                     "torch_best_s": t_s, "torch_gflops": gflop / t_s,
                     "torch_median_s": t_median_s, "torch_median_gflops": gflop / t_median_s,
                     "torch_runs": t_runs})
    return rows


def numpy_blas():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy: no mode="dicts"
        return "unknown"


def versions():
    import tokenizers
    import safetensors
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__,
            "numpy_blas": numpy_blas(), "torch_blas": torch_blas()}


def torch_blas():
    """torch's CPU GEMM library and parallel backend, from its build/parallel info."""
    info = torch.__config__.parallel_info().splitlines()
    blas = next((l.split(" for ")[0] for l in info if "Math Kernel Library" in l or "OpenBLAS" in l), "unknown")
    backend = next((l.split(":", 1)[1].strip() for l in info if l.startswith("ATen parallel backend")), "?")
    return f"{blas}; parallel backend {backend}"


# ---------------------------------------------------------------------------------------------

def loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def run(args):
    load_before = loadavg()
    whole = OthersMeter()
    torch.set_num_threads(args.threads)
    word_lists = read_words(args.words)
    tok_path = tokenizer_path(args)
    tok = PreTrainedTokenizerFast(tokenizer_file=tok_path)
    model, load_s = load_model(args)
    cfg = model.config
    if not 0 <= args.layer < cfg.num_layers:
        sys.exit(f"error: --layer {args.layer}: the model has {cfg.num_layers} blocks")
    pad_id = cfg.eos_token_id if cfg.eos_token_id is not None else 0
    hook = f"transformer.h.{args.layer}.mlp.c_fc"
    cap = Capture(model.transformer.h[args.layer].mlp.c_fc)

    ids = token_ids(tok, [w for ws in word_lists for w in ws])
    n_tokens = sum(len(x) for x in ids)
    width = max(len(x) for x in ids)

    variants = []
    if not args.skip_seed_loop:
        variants.append(("seed_loop", lambda: seed_loop(model, cap, tok, word_lists)))
    variants += [
        ("batched_padded", lambda: batched_padded(model, cap, tok, word_lists, pad_id)),
        ("batched_h9", lambda: batched_h9(model, cap, tok, word_lists, pad_id, args.layer)),
        ("batched_stop", lambda: batched_stop(model, cap, tok, word_lists, pad_id)),
    ]
    times, arrays = {}, {}
    with torch.inference_mode():
        for name, fn in variants:
            print(f"timing {name} ...", file=sys.stderr, flush=True)
            times[name], arrays[name] = timed(fn, args.repeats)

    reference = variants[0][0]
    ref = arrays[reference]
    diffs = {name: float(np.max(np.abs(arr - ref))) for name, arr in arrays.items() if name != reference}
    finite = all(np.isfinite(a).all() for a in arrays.values())
    agree = finite and all(d <= TOLERANCE for d in diffs.values())

    saved = None
    if args.save_activations:
        out = np.ascontiguousarray(arrays["batched_padded"], dtype=np.float32)
        tmp = args.save_activations + ".tmp.npy"
        np.save(tmp, out)
        os.replace(tmp, args.save_activations)
        saved = args.save_activations

    print("timing sgemm ...", file=sys.stderr, flush=True)
    gemms = sgemm(n_tokens, cfg.hidden_size, ref.shape[-1])

    return {
        "schema": SCHEMA,
        "model": {
            "source": "synthetic" if args.synthetic else "dir",
            "model_dir": os.path.abspath(args.model_dir) if args.model_dir else None,
            "synthetic": args.synthetic, "seed": args.seed if args.synthetic else None,
            "tokenizer": os.path.abspath(tok_path),
            "attn_implementation": cfg._attn_implementation,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
            "window_size": cfg.window_size, "vocab_size": cfg.vocab_size,
            "n_params": sum(p.numel() for p in model.parameters()),
        },
        "hook": hook,
        "layer": args.layer,
        "word_files": [os.path.abspath(p) for p in args.words],
        "n_words": sum(len(ws) for ws in word_lists),
        "n_tokens": n_tokens,
        "max_word_tokens": width,
        "padded_tokens": len(ids) * width,
        "shape": list(ref.shape),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        # 1/5/15-minute load averages: other processes on the machine make every time above noisy.
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "others_cpu_frac": whole.frac(),
        "repeats": args.repeats,
        "load_seconds": load_s,
        "times": times,
        "agreement": {"reference": reference, "tolerance": TOLERANCE, "max_abs_diff": diffs,
                      "all_finite": finite, "agree": agree},
        "saved_activations": os.path.abspath(saved) if saved else None,
        "sgemm": gemms,
        "versions": versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(),
                     "processor": cpu_model()},
    }


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(r):
    m = r["model"]
    src = m["model_dir"] if m["source"] == "dir" else f"synthetic {m['synthetic']} (seed {m['seed']})"
    print(f"model        {src}  [{m['attn_implementation']} attention, {m['dtype']}, {m['n_params']:,} params]")
    print(f"hook         {r['hook']}  -> array {r['shape']}")
    print(f"words        {r['n_words']} words, {r['n_tokens']} tokens "
          f"(padded batch {r['padded_tokens']} = {r['n_words']} x {r['max_word_tokens']})")
    print(f"threads      {r['threads']} torch threads, {r['cpus_available']} CPUs available "
          f"(torch: {r['versions']['torch_blas']})")
    print(f"versions     python {r['versions']['python']}, torch {r['versions']['torch']}, "
          f"transformers {r['versions']['transformers']}, numpy {r['versions']['numpy']} "
          f"({r['versions']['numpy_blas']})")
    print(f"load         {r['load_seconds']:.3f} s")
    print(f"loadavg      before {r['loadavg_before']}, after {r['loadavg_after']} (busy machine = noisy times)")
    o = r["others_cpu_frac"]
    print(f"others       {'-' if o is None else f'{o:.0%}'} of the machine's CPU time went to other processes "
          "during this run (per variant: column 'others')")
    print()
    print(f"{'variant':<16}{'median s':>10}{'min s':>10}{'warm-up s':>11}{'others':>8}"
          f"   max |diff| vs {r['agreement']['reference']}")
    for name, t in r["times"].items():
        d = r["agreement"]["max_abs_diff"].get(name)
        o = "-" if t["others_cpu_frac"] is None else f"{t['others_cpu_frac']:.0%}"
        print(f"{name:<16}{t['median_s']:>10.4f}{t['min_s']:>10.4f}{t['warmup_s']:>11.4f}{o:>8}   "
              f"{'(reference)' if d is None else f'{d:.2e}'}")
    a = r["agreement"]
    print(f"agreement    {'OK' if a['agree'] else 'FAILED'} (tolerance {a['tolerance']:g}, "
          f"all finite: {a['all_finite']})")
    if r["saved_activations"]:
        print(f"saved        {r['saved_activations']}")
    print()
    print(f"{'sgemm (fp32)':<14}{'M x K @ K x N':>22}{'GFLOP':>9}{'numpy GFLOP/s':>15}{'torch GFLOP/s':>15}  (best run)")
    for g in r["sgemm"]:
        shape = f"{g['m']}x{g['k']} @ {g['k']}x{g['n']}"
        print(f"{g['name']:<14}{shape:>22}{g['gflop']:>9.3f}{g['numpy_gflops']:>15.1f}{g['torch_gflops']:>15.1f}")


def main():
    result = run(ARGS)
    if ARGS.json:
        json.dump(result, JSON_OUT, indent=2)
        JSON_OUT.write("\n")
        JSON_OUT.flush()
    else:
        print_table(result)
    if not result["agreement"]["agree"]:
        print("error: the variants disagree beyond the tolerance: "
              f"{result['agreement']['max_abs_diff']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
