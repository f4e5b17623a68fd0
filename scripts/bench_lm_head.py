#!/usr/bin/env python3
"""Quality and modelled time of the PL's LM heads (int8, and the two-pass int8 head) against float32.

Quality, measured with the numpy reference on this machine: the held-out text (scripts/data/heldout.txt)
is tokenized with the bundled model's tokenizer (each chapter preceded by <|endoftext|>, as in training) and
its first `--tokens` next-token predictions are run in windows of the model's context, each from an empty
cache. Three pipelines: the float one (float32 embeddings and head), the float one's hidden states through
the int8 head, and the full int8 one (ReferenceModel(lm_head="int8"): int8 embeddings and int8 head). Each
is compared with the float pipeline: argmax agreement, and perplexity (exp of the mean next-token NLL).
Bar: agreement >= 99% and perplexity rise <= 1%. A fourth, the two-pass head (int8 embeddings; every
logit from the rows' high nibbles, the best `head_candidates` rows rescored whole: reference
twopass_head_logits), is scored the same way, and its greedy token against the int8 head's for several
candidate counts (the two agree whenever the int8 head's token is a candidate).

Time, modelled (hls/perf.py), not measured: the PL head streams head_rows_per_stripe x head_row_words
words a stripe (perf.Model.stripes_fetch at the board clock) beside its engine loop; for comparison, the
ARM cores' float32 head of a design with lm_head=host-float32 (perf.host_ms, less the host's other work).

scripts/data/heldout.txt: the first three held-out chapters (Genesis 20, Genesis 40, Exodus 10) of the
King James Bible corpus of scripts/make_corpus.sh (its val.txt), public domain; 2,771 tokens.

    python scripts/bench_lm_head.py [--tokens 2000] [--out bench/lm_head.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import machine, save_json  # noqa: E402

from tellme.hls import perf  # noqa: E402
from tellme.hls.design import Design  # noqa: E402
from tellme.models.config import named_shape  # noqa: E402
from tellme.models.ddr_image import WORD_BYTES  # noqa: E402
from tellme.models.default_model import resolve_model_dir  # noqa: E402
from tellme.models.model_folder import ModelFolder, open_model_folder  # noqa: E402
from tellme.models.reference import HEAD_CANDIDATES, ReferenceModel, int8_head_logits, twopass_head_logits  # noqa: E402
from tellme.models.train.data import encode_documents, split_documents  # noqa: E402

HELDOUT = Path(__file__).parent / "data" / "heldout.txt"
MIN_AGREEMENT = 99.0  # % of positions with the float pipeline's argmax
MAX_PPL_RISE = 1.0  # % over the float pipeline's perplexity
BUNDLED_BOARDS = ("kv260", "zcu104", "pynq-z2")
SHAPE_BOARDS = {"bitnet-0.73b": ("kv260", "zcu104"), "bitnet-2b-4t": ("kv260", "zcu104")}
HOST_HEAD = ["lm_head=host-float32"]
CANDIDATE_COUNTS = (1, 2, 4, 8, 16, 32)
PL_HEADS = ("pl-int8", "pl-int8-twopass")


def heldout_tokens(folder: ModelFolder, count: int) -> np.ndarray:
    """The first count + 1 tokens of the held-out text (count next-token predictions)."""
    path = folder.tokenizer_path
    if path is None:
        raise SystemExit(f"{folder.path} has no tokenizer.json")
    tokens = encode_documents(Tokenizer.from_file(str(path)), split_documents(HELDOUT.read_text(encoding="utf-8")))
    if len(tokens) < count + 1:
        raise SystemExit(f"{HELDOUT} holds {len(tokens)} tokens: fewer than the {count + 1} needed")
    return tokens[: count + 1].astype(np.int64)


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Next-token negative log-likelihood of every position (float64)."""
    x = logits.astype(np.float64)
    peak = x.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(x - peak).sum(axis=-1)) + peak[:, 0]
    return log_z - x[np.arange(len(targets)), targets]


def run_pipelines(folder: ModelFolder, tokens: np.ndarray) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Per-position argmax and NLL of the four pipelines, over windows of the model's context; and per
    candidate count, how often the two-pass head's greedy token is the int8 head's."""
    fp, q8 = ReferenceModel(folder), ReferenceModel(folder, lm_head="int8")
    head_q, head_div = folder.int8_table(folder.head_name)
    context = folder.config.max_position_embeddings
    names = ("float32", "int8_head", "int8", "twopass")
    out: dict[str, dict[str, list]] = {name: {"argmax": [], "nll": []} for name in names}
    same: dict[int, list] = {k: [] for k in CANDIDATE_COUNTS}
    for start in range(0, len(tokens) - 1, context):
        window = tokens[start : min(start + context, len(tokens) - 1)].tolist()
        targets = tokens[start + 1 : start + 1 + len(window)]
        hidden = fp.forward(window, fp.new_cache(len(window)))
        hidden8 = q8.forward(window, q8.new_cache(len(window)))
        logits = {"float32": fp.lm_head_logits(hidden), "int8_head": int8_head_logits(head_q, head_div, hidden),
                  "int8": q8.lm_head_logits(hidden8),
                  "twopass": twopass_head_logits(head_q, head_div, hidden8, HEAD_CANDIDATES)}
        for name, x in logits.items():
            out[name]["argmax"].append(np.argmax(x, axis=-1))
            out[name]["nll"].append(nll(x, targets))
        for k in CANDIDATE_COUNTS:
            greedy = np.argmax(twopass_head_logits(head_q, head_div, hidden8, k), axis=-1)
            same[k].append(greedy == np.argmax(logits["int8"], axis=-1))
    agreement = {str(k): round(float(np.concatenate(v).mean()) * 100, 3) for k, v in same.items()}
    return {name: {k: np.concatenate(v) for k, v in d.items()} for name, d in out.items()}, agreement


def quality(folder: ModelFolder, count: int) -> dict:
    tokens = heldout_tokens(folder, count)
    runs, twopass_vs_int8 = run_pipelines(folder, tokens)
    base = runs["float32"]
    base_ppl = float(np.exp(base["nll"].mean()))
    rows = {}
    for name, r in runs.items():
        ppl = float(np.exp(r["nll"].mean()))
        rows[name] = {"argmax_agreement_pct": round(float((r["argmax"] == base["argmax"]).mean()) * 100, 3),
                      "next_token_accuracy_pct": round(float((r["argmax"] == tokens[1:]).mean()) * 100, 3),
                      "mean_nll": round(float(r["nll"].mean()), 5), "perplexity": round(ppl, 4),
                      "perplexity_rise_pct": round((ppl / base_ppl - 1) * 100, 4)}
        rows[name]["met"] = (rows[name]["argmax_agreement_pct"] >= MIN_AGREEMENT
                             and rows[name]["perplexity_rise_pct"] <= MAX_PPL_RISE)
    return {"tokens": count, "windows_of": folder.config.max_position_embeddings, "pipelines": rows,
            "twopass_greedy_equals_int8_pct": twopass_vs_int8, "head_candidates": HEAD_CANDIDATES}


def head_time(pl: Design, host: Design) -> dict:
    """The LM head's modelled time a token: the PL head's stream and engine loop (and the two-pass head's
    second pass), the host float32 head."""
    lay, cfg = pl.layout, pl.config
    model = perf.Model(pl)
    words = lay.head_rows_per_stripe * lay.head_row_words
    fetch = model.stripes_fetch(words)
    engine = (lay.head_rows_per_stripe * max(lay.head_row_words, cfg.weight_ports) + cfg.weight_ports
              + perf.LOOP_DEPTH["lm_head"])
    rescore = model.rescore()
    per_ms = cfg.clock_mhz * 1e3  # cycles a millisecond
    host_total = perf.host_ms(host)
    return {"board": cfg.board, "head": cfg.lm_head, "clock_mhz": cfg.clock_mhz, "weight_ports": cfg.weight_ports,
            "words_per_stripe": words, "fetch_cycles": round(fetch), "engine_cycles": engine,
            "rescore_cycles": round(rescore),
            "pl_ms": round((max(fetch, engine) + rescore) / per_ms, 4), "pl_fetch_ms": round(fetch / per_ms, 4),
            "pl_engine_ms": round(engine / per_ms, 4), "pl_rescore_ms": round(rescore / per_ms, 4),
            "host_float32_head_ms": round(host_total - perf.host_ms(pl), 4), "host_ms_total": round(host_total, 4),
            "bytes": {"pl": words * WORD_BYTES * cfg.weight_ports + perf.rescore_bytes(pl),
                      "host_float32": pl.model.vocab_size * pl.model.hidden_size * 4}}


def timing(folder: ModelFolder) -> dict[str, dict]:
    out = {}
    for board in BUNDLED_BOARDS:
        pl = Design.for_model(folder, board)
        out[f"{pl.name}@{board}"] = head_time(pl, Design.for_model(folder, board, HOST_HEAD))
    for shape, boards in SHAPE_BOARDS.items():
        for board in boards:
            config = named_shape(shape)
            host = Design.for_shape(config, board, HOST_HEAD, name=shape)
            for head in PL_HEADS:
                pl = Design.for_shape(config, board, [f"lm_head={head}"], name=shape)
                out[f"{shape}@{board} {head}"] = head_time(pl, host)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--tokens", type=int, default=2000, help="next-token predictions scored")
    parser.add_argument("--out", type=Path, default=Path("bench/lm_head.json"), help="JSON output")
    args = parser.parse_args(argv)

    folder = open_model_folder(resolve_model_dir(args.model))
    q = quality(folder, args.tokens)
    print(f"LM head quality on {q['tokens']} held-out tokens ({HELDOUT.name}), numpy reference, windows of "
          f"{q['windows_of']}; each pipeline against the float32 one (measured)")
    print(f"{'pipeline':<44} {'argmax agree':>12} {'next-tok acc':>12} {'perplexity':>11} {'ppl rise':>9}")
    labels = {"float32": "float32 embeddings + float32 head",
              "int8_head": "float32 embeddings + int8 head (same hidden)",
              "int8": "int8 embeddings + int8 head (the PL's)",
              "twopass": f"int8 embeddings + two-pass head (K={HEAD_CANDIDATES})"}
    for name, r in q["pipelines"].items():
        print(f"{labels[name]:<44} {r['argmax_agreement_pct']:>11.2f}% {r['next_token_accuracy_pct']:>11.2f}% "
              f"{r['perplexity']:>11.3f} {r['perplexity_rise_pct']:>+8.2f}%")
    for name in ("int8_head", "int8", "twopass"):
        r = q["pipelines"][name]
        print(f"  bar (agreement >= {MIN_AGREEMENT:g}%, perplexity rise <= {MAX_PPL_RISE:g}%), {labels[name]}: "
              f"{'MET' if r['met'] else 'NOT MET'}")
    print("two-pass head's greedy token == the int8 head's, by candidates K: "
          + ", ".join(f"K={k} {v:.2f}%" for k, v in q["twopass_greedy_equals_int8_pct"].items()))

    t = timing(folder)
    print()
    print(f"LM head time a token (modelled, {perf.MODEL_VERSION}; not measured)")
    print(f"{'design':<38} {'MHz':>5} {'ports':>5} {'words/stripe':>12} {'PL fetch ms':>11} {'PL engine ms':>12} "
          f"{'rescore ms':>10} {'PL ms':>7} {'host f32 ms':>11}")
    for key, r in t.items():
        print(f"{key:<38} {r['clock_mhz']:>5g} {r['weight_ports']:>5} {r['words_per_stripe']:>12,} "
              f"{r['pl_fetch_ms']:>11.3f} {r['pl_engine_ms']:>12.3f} {r['pl_rescore_ms']:>10.3f} {r['pl_ms']:>7.3f} "
              f"{r['host_float32_head_ms']:>11.3f}")
    print("  PL = max(fetch, engine) + the two-pass head's rescoring (fetch and engine overlap); host f32 = the "
          f"ARM cores' float32 head (host_ms of a {HOST_HEAD[0]} design less {perf.HOST_MS_PER_TOKEN:g} ms of "
          "other host work)")

    save_json(args.out, {
        "what": "PL LM heads (int8, two-pass): quality measured with the numpy reference; time per token modelled",
        "machine": machine(), "model_dir": str(folder.path), "heldout": str(HELDOUT.name),
        "bar": {"argmax_agreement_pct_min": MIN_AGREEMENT, "perplexity_rise_pct_max": MAX_PPL_RISE},
        "quality": q,
        "time": {"modelled": True, "model": perf.MODEL_VERSION, "designs": t},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
