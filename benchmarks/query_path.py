"""Where a DiSCo query's time goes: ``student.query_encoder() >> retriever`` split into its stages, per query, at
batch 1 and in batches, on real iKAT 2023 conversations. Prints JSON (progress on stderr).

    python benchmarks/query_path.py                 # 48 turns, batches 1, 8 and 32, 2 torch threads
    python benchmarks/query_path.py --quick         # 16 turns
    python benchmarks/query_path.py --student runs/student --index runs/index

Stages (timed one after another on the same texts; ms per query = stage time / batch size, medians over batches):

- ``format``: the conversation as one text, newest turn first, cut to the model's 256 tokens
  (``ConversationFormatter``; it tokenises to cut);
- ``tokenise``: the tokenizer on the formatted texts (padding within the batch);
- ``transformer``: the masked LM up to the input of its output layer (``SpladeHead.capture``);
- ``head``: the sparse SPLADE activation (:mod:`pyterrier_disco._splade_head`): the terms whose largest logit
  over the tokens is positive, then exactly those logits;
- ``utterance``: the raw utterance's vector (the document model), added to the student's (``utterance_weight``,
  the ``disco train`` default; 0 ms for a student without it);
- ``sparse``: the vectors to ``{term: weight}`` dicts (``query_toks``);
- ``retrieval``: the exact retriever (top 1000) on the encoded frame.

``head_search`` compares, side by side on the same hidden states, the head's search for active terms with the
previous layout (one (tokens x vocabulary) product reduced across tokens): time, and the same terms and values
within 1e-4. ``pipeline`` times the composed transformer end to end for comparison with the sum of the stages.
The embedded SPLADE-tiny with the utterance's vector added (weight 1) stands in for a student (same architecture
and cost as a ``disco train`` default student) unless ``--student`` is given.
"""
import os

os.environ.setdefault("DISCO_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

import pyterrier_disco as disco  # noqa: E402
from _corpus import ikat_home  # noqa: E402
from _stats import add_pipeline_args, machine, print_report, summary, target  # noqa: E402
from pyterrier_disco.index import index_dataset  # noqa: E402


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def stage_times(encoder, retriever, frame) -> dict:
    """Seconds of each stage on one batch (``frame``)."""
    model, head = encoder.model, encoder.model.head
    times = {}
    t0 = time.perf_counter()
    texts = encoder.input_texts(frame)
    times["format"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = model.tokenize(texts)
    times["tokenise"] = time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        with head.capture():
            hidden = model.mlm(**enc).logits
        times["transformer"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reps = head.representations(hidden, enc["attention_mask"], [not t.strip() for t in texts])
        times["head"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    matrix = encoder.add_utterances(sp.csr_matrix(reps.numpy()), frame["query"])
    times["utterance"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = frame.copy()
    out["query_toks"] = model.to_dicts(matrix)
    out.attrs["vocab"] = model.vocab_fingerprint
    times["sparse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    retriever(out)
    times["retrieval"] = time.perf_counter() - t0
    return times


def previous_search(head, x, mask):
    """The head's fp32 search before this change: one text at a time, 2048 vocabulary rows per product, each
    reduced with ``max`` (values and indices)."""
    weight, bias = head.decoder.weight.detach().float(), head.decoder.bias.detach().float()
    out = []
    for i in range(x.shape[0]):
        xt = x[i, torch.nonzero(mask[i]).squeeze(1)].float().T.contiguous()
        parts = [torch.addmm(bias[lo:lo + 2048, None], weight[lo:lo + 2048], xt).max(1)
                 for lo in range(0, weight.shape[0], 2048)]
        peak = torch.cat([p.values for p in parts])
        out.append(torch.nonzero(peak > 0).squeeze(1))
    return out


def head_search(encoder, frame, batch: int) -> dict:
    """The head's search vs :func:`previous_search` on the same hidden states; same active terms, values."""
    model, head = encoder.model, encoder.model.head
    new_ms, old_ms, same_terms, max_diff = [], [], True, 0.0
    for lo in range(0, len(frame), batch):
        texts = encoder.input_texts(frame.iloc[lo:lo + batch])
        enc = model.tokenize(texts)
        with torch.no_grad(), head.capture():
            hidden = model.mlm(**enc).logits
        t0 = time.perf_counter()
        rows, terms, _ = head.active_terms(hidden, enc["attention_mask"])
        new_ms.append((time.perf_counter() - t0) * 1000 / len(texts))
        t0 = time.perf_counter()
        previous = previous_search(head, hidden, enc["attention_mask"])
        old_ms.append((time.perf_counter() - t0) * 1000 / len(texts))
        for i, old_terms in enumerate(previous):
            same_terms &= bool(torch.equal(torch.sort(terms[rows == i]).values, old_terms))
        with torch.no_grad():
            plain = model.plain_forward(enc, [False] * len(texts))
            reps = head.representations(hidden, enc["attention_mask"], [False] * len(texts))
        max_diff = max(max_diff, float((plain - reps).abs().max()))
    return {"ms_per_query": summary(new_ms, digits=3), "previous_ms_per_query": summary(old_ms, digits=3),
            "speedup": round(float(np.median(old_ms) / np.median(new_ms)), 2), "same_active_terms": same_terms,
            "max_abs_diff_vs_plain_formula": max_diff}


def run(args, tmp: Path) -> dict:
    torch.set_num_threads(args.threads)
    dataset = "ikat/2023/train" if ikat_home(tmp) else "disco-mini/train"
    frame = disco.conversations(dataset)
    n = min(16 if args.quick else args.queries, len(frame))
    frame = frame.iloc[np.unique(np.linspace(0, len(frame) - 1, n).round().astype(int))].reset_index(drop=True)
    student = disco.DiSCo.from_pretrained(args.student) if args.student else None
    splade = student or disco.Splade()
    encoder = student.query_encoder() if student else splade.conversation_encoder(utterance_weight=1.0)
    index = disco.open_index(args.index, verbose=False) if args.index else index_dataset(
        dataset, tmp / "index", splade=splade, verbose=False)
    retriever = index.retriever(num_results=1000)
    log(f"{len(frame)} turns of {dataset}; warming up ...")
    stage_times(encoder, retriever, frame.iloc[:2])
    report = {"benchmark": "query_path", "source": dataset, "queries": len(frame), "threads": args.threads,
              "machine": machine(),
              "encoder": args.student or "embedded SPLADE-tiny + utterance vector (same cost as a student)",
              "index_docs": len(index), "by_batch": {}}
    for batch in args.batches:
        per = {s: [] for s in ("format", "tokenise", "transformer", "head", "utterance", "sparse", "retrieval")}
        pipeline = []
        for lo in range(0, len(frame), batch):
            part = frame.iloc[lo:lo + batch]
            for stage, seconds in stage_times(encoder, retriever, part).items():
                per[stage].append(seconds * 1000 / len(part))
            t0 = time.perf_counter()
            (encoder >> retriever)(part)
            pipeline.append((time.perf_counter() - t0) * 1000 / len(part))
        row = {f"{s}_ms": summary(v, digits=3) for s, v in per.items()}
        row["stages_total_ms"] = round(sum(row[f"{s}_ms"]["median"] for s in per), 3)
        row["pipeline_ms"] = summary(pipeline, digits=3)
        row["head_search"] = head_search(encoder, frame, batch)
        report["by_batch"][str(batch)] = row
        log(f"batch {batch}: {row['stages_total_ms']} ms per query; head search {row['head_search']['speedup']}x")
    one = report["by_batch"][str(args.batches[0])]["head_search"]
    report["targets"] = [target("head search vs the previous fp32 layout (batch "
                                f"{args.batches[0]}), same terms and values within 1e-4", one["speedup"], 1.0,
                                json.dumps(one),
                                one["same_active_terms"] and one["max_abs_diff_vs_plain_formula"] <= 1e-4)]
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=48)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--quick", action="store_true", help="16 turns")
    add_pipeline_args(ap)
    print_report(run, ap.parse_args())


if __name__ == "__main__":
    main()
