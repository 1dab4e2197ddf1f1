"""Pairwise accuracy of a reward model by the gold margin of the pair.

Rows 2i and 2i+1 of two `ivg label` outputs over the same texts (one scored by
the gold classifier, one by the reward model) form pair i, as
`ivg label --pairs --pair-by adjacent` pairs them. Prints the share of pairs
the reward model orders as the gold classifier does, overall and by |gold margin|.
Usage: python3 scripts/pair_accuracy_by_margin.py GOLD.jsonl RM.jsonl
"""
import json
import sys


def rewards(path):
    with open(path) as f:
        return [json.loads(line)["reward"] for line in f if line.strip()]


def main(gold_path, rm_path):
    gold, rm = rewards(gold_path), rewards(rm_path)
    assert len(gold) == len(rm) and len(gold) % 2 == 0, "row counts differ or are odd"
    edges = [0.0, 0.5, 1.0, 2.0, 4.0, float("inf")]
    buckets = {i: [0, 0] for i in range(len(edges) - 1)}
    right = total = 0
    for i in range(0, len(gold), 2):
        margin = gold[i] - gold[i + 1]
        if margin == 0:
            continue
        ok = (rm[i] - rm[i + 1]) * margin > 0
        right += ok
        total += 1
        b = next(k for k in range(len(edges) - 1) if edges[k] <= abs(margin) < edges[k + 1])
        buckets[b][0] += ok
        buckets[b][1] += 1
    print(f"all pairs: {right / total:.4f} ({total})")
    for k, (r, n) in buckets.items():
        if n:
            print(f"|gold margin| in [{edges[k]}, {edges[k + 1]}): {r / n:.4f} ({n})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
