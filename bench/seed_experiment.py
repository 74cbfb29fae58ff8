#!/usr/bin/env python3
"""The seed's experiment as a whole process, the way a HuggingFace user writes it (bench/README.md).

    python bench/seed_experiment.py --model-dir DIR --verbs data/verbs.txt --nouns data/nouns.txt --out OUT.npy

GPT-Neo's block 8 MLP c_fc output (before GELU), each word alone, mean over its tokens
-> float32 array [2, n_words, 3072] (verbs, nouns). Prints nothing but errors.
"""
import argparse

import numpy as np
import torch
from transformers import AutoTokenizer, GPTNeoForCausalLM
from transformers.utils import logging

logging.disable_progress_bar()

parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", required=True)
parser.add_argument("--verbs", required=True)
parser.add_argument("--nouns", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()

tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
model = GPTNeoForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()

captured = {}
model.transformer.h[8].mlp.c_fc.register_forward_hook(
    lambda module, inputs, output: captured.update(act=output))


def activations(path):
    words = [line.strip() for line in open(path) if line.strip()]
    rows = []
    for word in words:
        inputs = tokenizer(word, return_tensors="pt")
        with torch.no_grad():
            model(**inputs)
        rows.append(captured["act"][0].mean(dim=0))
    return torch.stack(rows)


result = torch.stack([activations(args.verbs), activations(args.nouns)])
np.save(args.out, result.numpy().astype(np.float32))
