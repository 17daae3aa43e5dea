"""What ``retrieval.py`` reports from its timings and results: exactness, overlaps, bandwidth, pruning, targets."""
from typing import Dict, List

import numpy as np

from _stats import target

TIE_TOLERANCE = 1e-5
BYTES_PER_POSTING = {"reference": 8, "scipy": 8, "numba_index": 6, "numba_pruned": 6, "quantized": 3}
FLATTERY = ("The independent collection draws every posting's weight independently (per document-frequency band): "
            "no topics, no correlation between a document's terms, so every long posting list and every block holds "
            "near-maximal weights. That flatters exhaustive scoring against pruning (block-max bounds are as loose "
            "as they can be) and it flatters quantisation (weights spread evenly over each term's range). The "
            "topical collection mixes the terms of two real passage vectors per document with background terms, "
            "in random document order (as real ids are): top documents share strong topical terms, as in a real "
            "collection; nothing clusters documents by id, so block bounds stay loose there too.")


def compare(ref, got) -> Dict[str, int]:
    """Mismatches of one top-k against the reference's: the same documents, where only documents whose score
    ties the k-th score within ``TIE_TOLERANCE`` (relative) may be swapped, and the same score at every rank."""
    (r_ids, r_sc), (g_ids, g_sc) = ref, got
    if len(r_ids) == 0:
        return {"set_mismatches": len(g_ids), "tie_swaps": 0, "score_mismatches": 0}
    kth = r_sc[-1]
    tol = TIE_TOLERANCE * max(abs(kth), 1e-30)
    only_ref, only_got = np.setdiff1d(r_ids, g_ids), np.setdiff1d(g_ids, r_ids)
    ref_score = dict(zip(r_ids.tolist(), r_sc.tolist()))
    got_score = dict(zip(g_ids.tolist(), g_sc.tolist()))
    tied_ref = sum(abs(ref_score[d] - kth) <= tol for d in only_ref.tolist())
    tied_got = sum(abs(got_score[d] - kth) <= tol for d in only_got.tolist())
    swaps = int(min(tied_ref, tied_got))  # a tied document of the reference replaced by another tied one
    n = min(len(r_sc), len(g_sc))
    bad_scores = np.abs(r_sc[:n] - g_sc[:n]) > TIE_TOLERANCE * np.maximum(np.abs(r_sc[:n]), 1e-30)
    return {"set_mismatches": len(only_ref) + len(only_got) - 2 * swaps,
            "tie_swaps": swaps, "score_mismatches": int(bad_scores.sum())}


def exactness(results, systems, ks) -> dict:
    out = {}
    for s in systems:
        out[s] = {}
        for k in ks:
            total = {"queries": 0, "set_mismatches": 0, "tie_swaps": 0, "score_mismatches": 0}
            for kind, per_k in results["reference_t1"].items():
                for ref, got in zip(per_k[k], results[s][kind][k]):
                    for key, v in compare(ref, got).items():
                        total[key] += int(v)
                    total["queries"] += 1
            total["identical"] = total["set_mismatches"] == 0 and total["score_mismatches"] == 0
            out[s][f"top{k}"] = total
    return out


def overlap(results, labels, ks) -> dict:
    """Mean fraction of the exact top k (reference) that each approximate system returns."""
    out = {}
    for s in labels:
        out[s] = {}
        for k in ks:
            for kind, per_k in results["reference_t1"].items():
                fr = [len(np.intersect1d(ref[0], got[0])) / max(len(ref[0]), 1)
                      for ref, got in zip(per_k[k], results[s][kind][k])]
                out[s][f"{kind}_top{k}"] = round(float(np.mean(fr)), 4)
    return out


def bandwidth(times, postings, labels, ks, bandwidth_gbs) -> dict:
    """Per system: postings scored per second and the fraction of the bandwidth bound it reaches (bytes its
    exhaustive scan streams per query, from ``BYTES_PER_POSTING``, / latency / measured bandwidth; medians over
    calls). For the pruned system the bytes are the exhaustive ones: above 1 would mean it read less."""
    out = {"memory_bandwidth_gbs": bandwidth_gbs,
           "note": "fraction = postings x bytes per posting / latency / measured copy bandwidth (read + write); "
                   "bytes per posting: " + ", ".join(f"{k} {v}" for k, v in BYTES_PER_POSTING.items())}
    for s in labels:
        per_posting = BYTES_PER_POSTING[s.rsplit("_t", 1)[0]]
        out[s] = {}
        for kind, per_q in postings.items():
            for k in ks:
                seconds = np.asarray(times[s][kind][k]).reshape(-1, len(per_q))
                rate = np.asarray(per_q)[None, :] / seconds
                out[s][f"{kind}_top{k}"] = {
                    "postings_per_s": round(float(np.median(rate))),
                    "bandwidth_fraction": round(float(np.median(rate * per_posting / (bandwidth_gbs * 1e9))), 3)}
    return out


def pruning_summary(prune_stats: dict, postings: dict, repeat: int) -> dict:
    """Per query kind and k: the share of blocks the pruned scorer pruned and of postings it skipped."""
    out = {}
    for key, st in prune_stats.items():
        kind = key.split("_top")[0]
        blocks = st.get("blocks_pruned", 0) + st.get("blocks_exhaustive", 0)
        # runs = warm-up (2 queries) + repeat x queries, all counted; postings of the same share of queries
        total = sum(postings[kind]) * repeat + sum(postings[kind][:2])
        out[key] = {"blocks_pruned_fraction": round(st.get("blocks_pruned", 0) / max(blocks, 1), 3),
                    "postings_skipped_fraction": round(st.get("postings_skipped", 0) / max(total, 1), 3),
                    "candidates_per_pruned_block": round(st.get("candidates", 0) / max(st.get("blocks_pruned", 0), 1))}
    return out


def median_ms(report, system, kind, k):
    return report["latency_ms"][system][kind][f"top{k}"]["median"]


def targets(reports: Dict[str, Dict[int, dict]], ks) -> List[dict]:
    """The issue's targets on the independent collection at its largest size (topical figures in the details)."""
    main = reports["independent"][max(reports["independent"])]
    k_long = 1000 if 1000 in ks else max(ks)

    def ratio(rep, system, kind, k):
        return median_ms(rep, "reference_t1", kind, k) / median_ms(rep, system, kind, k)

    def identical(rep, system, k):
        return rep["exactness_vs_reference"][system][f"top{k}"]["identical"]

    def detail(system, kind, k):
        parts = []
        for name, sizes in reports.items():
            rep = sizes[max(sizes)]
            cpu = rep["thread_cpu_ms_one_thread_systems"]
            cpu_ratio = (f" (thread CPU time {cpu['reference_t1'][kind][f'top{k}']} vs {cpu[system][kind][f'top{k}']}"
                         f" ms = {cpu['reference_t1'][kind][f'top{k}'] / cpu[system][kind][f'top{k}']:.2f}x)"
                         if system in cpu else "")
            parts.append(f"{name} {max(sizes)} docs: reference {median_ms(rep, 'reference_t1', kind, k)} ms vs "
                         f"{system} {median_ms(rep, system, kind, k)} ms = {ratio(rep, system, kind, k):.2f}x"
                         f"{cpu_ratio}, identical {identical(rep, system, k)}, load average "
                         f"{rep['load_average_before_after']}")
        return f"{kind} queries, top {k}; " + "; ".join(parts)

    out = [target(f"long queries top {k_long}: numba index 1 thread vs reference 1 thread",
                  ratio(main, "numba_index_t1", "long", k_long), 2.0, detail("numba_index_t1", "long", k_long),
                  identical(main, "numba_index_t1", k_long)),
           target(f"long queries top {k_long}: numba index 2 threads vs reference 1 thread",
                  ratio(main, "numba_index_t2", "long", k_long), 3.5, detail("numba_index_t2", "long", k_long),
                  identical(main, "numba_index_t2", k_long))]
    for k in sorted(ks):
        out.append(target(f"short queries top {k}: exact pruned index 1 thread vs reference 1 thread",
                          ratio(main, "numba_pruned_t1", "short", k), 3.0, detail("numba_pruned_t1", "short", k),
                          identical(main, "numba_pruned_t1", k)))
    if "quantized_t1" in main["latency_ms"]:
        k_q = 100 if 100 in ks else min(ks)
        worst = min(sizes[max(sizes)]["overlap_with_exact"]["quantized_t1"][f"{kind}_top{k_q}"]
                    for sizes in reports.values() for kind in ("short", "long"))
        out.append(target(f"quantised index: top-{k_q} overlap with the exact top {k_q} (worst collection and "
                          "query kind)", worst, 0.99,
                          "; ".join(f"{name}: {sizes[max(sizes)]['overlap_with_exact']['quantized_t1']}"
                                    for name, sizes in reports.items())))
    return out


def pisa_vs_exact(sizes: Dict[int, dict], ks, algorithms) -> dict:
    """Exact numba index vs PISA by query length, where PISA ran; rule: PISA only if its fastest algorithm is
    at least twice as fast as the best exact setting and keeps >= 95% of the exact top 100."""
    with_pisa = [n for n, rep in sizes.items() if any(s.startswith("pisa_") for s in rep["latency_ms"])]
    out = {"rule": "PISA only where its fastest algorithm is >= 2x faster than the exact numba index (best of "
                   "1/2 threads) and returns >= 95% of the exact top 100 (top k when 100 is not run); else exact",
           "by_query_length": {}}
    if not with_pisa:
        out["note"] = "PISA did not run (--pisa-max-docs below every size)"
        return out
    n = max(with_pisa)
    rep = sizes[n]
    k_overlap = 100 if 100 in ks else min(ks)
    choice_k = 1000 if 1000 in ks else max(ks)
    for kind in ("short", "long"):
        row = {"docs": n}
        for k in ks:
            pisa = {a: median_ms(rep, f"pisa_{a}", kind, k) for a in algorithms}
            row[f"top{k}"] = {"exact_numba_ms": min(median_ms(rep, f"numba_index_t{t}", kind, k) for t in (1, 2)),
                              "pisa_ms": pisa, "pisa_fastest": min(pisa, key=pisa.get),
                              "reference_t1_ms": median_ms(rep, "reference_t1", kind, k)}
        fastest = row[f"top{choice_k}"]["pisa_fastest"]
        kept = rep["overlap_with_exact"][f"pisa_{fastest}"][f"{kind}_top{k_overlap}"]
        faster = row[f"top{choice_k}"]["exact_numba_ms"] / row[f"top{choice_k}"]["pisa_ms"][fastest]
        row["choice"] = f"pisa ({fastest})" if faster >= 2 and kept >= 0.95 else "exact numba index"
        row["why"] = (f"top {choice_k}: PISA {fastest} is {faster:.2f}x the speed of the exact index, keeping "
                      f"{kept:.1%} of the exact top {k_overlap}")
        out["by_query_length"][kind] = row
    return out
