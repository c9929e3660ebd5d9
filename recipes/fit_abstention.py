"""Fit a model's abstention rule ("no answer in the knowledge base") and measure it.

    python recipes/fit_abstention.py                  # fit the embedded default's rule, write it, report on test
    python recipes/fit_abstention.py --report-only    # measure the rule stored with the model, fit nothing
    python recipes/fit_abstention.py --model my_rag/ --out my_rag/   # another checkpoint (same GeoQA data)

Fit (``ragmodels.abstention.fit``): GeoQA dev questions (answerable, every relation) against the
out-of-domain questions of ``data/ood/dev.txt``; the vocabulary of common question words from GeoQA's
training questions plus English function words (``fit_vocabulary``). Report: on GeoQA test (per relation) and ``data/ood/test.txt`` (questions the fit
never saw), the share of questions the model abstains on, and the exact match on those it answers.
Answers are decoded as ``ragmodels ask`` does (4 beams, the model's own copy setting). Progress goes to
stderr; the table (Markdown) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ragmodels import abstention
from ragmodels.default import DEFAULT_DIR
from ragmodels.evaluation.metrics import exact_match, max_over_answers
from ragmodels.pipeline import RagPipeline

REPO = Path(__file__).resolve().parent.parent
OOD_DIR = REPO / "data" / "ood"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="RAG checkpoint folder (default: the embedded default model)")
    parser.add_argument("--out", type=Path,
                        help="folder to write abstention.json to (default: the model's folder, for the embedded "
                             "default src/ragmodels/default/)")
    parser.add_argument("--geoqa", type=Path, default=Path("/tmp/geoqa"),
                        help="GeoQA files (written there by `ragmodels data` when missing)")
    parser.add_argument("--ood-dev", type=Path, default=OOD_DIR / "dev.txt", help="out-of-domain questions to fit on")
    parser.add_argument("--ood-test", type=Path, default=OOD_DIR / "test.txt", help="out-of-domain questions to report on")
    parser.add_argument("--margin", type=float, default=None,
                        help="threshold this many logit units below the least confident dev question (default: half "
                             "the gap to the most confident out-of-domain dev question)")
    parser.add_argument("--features", default=",".join(abstention.FIT_FEATURES),
                        help=f"comma-separated, of {', '.join(abstention.FEATURES)} (default: %(default)s)")
    parser.add_argument("--num-beams", type=int, default=4, help="beams, as `ragmodels ask` (default 4)")
    parser.add_argument("--report-only", action="store_true", help="measure the stored rule; fit and write nothing")
    args = parser.parse_args(argv)

    data = geoqa(args.geoqa)
    pipeline = RagPipeline.from_default(device="cpu") if args.model is None else \
        RagPipeline.from_pretrained(args.model, device="cpu")
    if args.report_only:
        if pipeline.abstention is None:
            raise SystemExit(f"{args.model or 'the embedded default'} has no {abstention.FILE_NAME}; fit one first.")
        rule = pipeline.abstention
    else:
        vocabulary = abstention.fit_vocabulary(r["question"] for r in read_jsonl(data / "train.jsonl"))
        dev = read_jsonl(data / "dev.jsonl")
        dev_features = [f for f, _ in answer_all(pipeline, dev, vocabulary, args.num_beams, "dev")]
        ood_features = [f for f, _ in answer_all(pipeline, read_lines(args.ood_dev), vocabulary, args.num_beams, "ood dev")]
        rule = abstention.fit(dev_features, [r["relation"] for r in dev], ood_features, vocabulary, margin=args.margin,
                               feature_names=args.features.split(","))
        rule.report["fitted_on"] = {"answerable": "GeoQA dev", "unanswerable": str(args.ood_dev.relative_to(REPO))
                                    if args.ood_dev.is_relative_to(REPO) else str(args.ood_dev),
                                    "num_beams": args.num_beams}
        out = args.out or (Path(args.model) if args.model else DEFAULT_DIR)
        print(f"wrote {rule.save(out)}; dev abstention: {json.dumps(rule.report['abstention'])}", file=sys.stderr)
    pipeline.abstention = rule
    test = read_jsonl(data / "test.jsonl")
    rows = report_rows(rule, test, answer_all(pipeline, test, rule.vocabulary, args.num_beams, "test"),
                       answer_all(pipeline, read_lines(args.ood_test), rule.vocabulary, args.num_beams, "ood test"))
    reworded = reworded_questions(test)
    answered = [(rule.confidence(f) >= rule.threshold, max_over_answers(exact_match, a, r["answers"]))
                for r, (f, a) in zip(reworded, answer_all(pipeline, reworded, rule.vocabulary, args.num_beams, "reworded"))]
    kept = [em for ok, em in answered if ok]
    rows.insert(-1, ("GeoQA test, reworded (phrasings no split uses)", len(answered), 1 - len(kept) / len(answered),
                     sum(kept) / len(kept) if kept else None))
    print("| questions | n | abstained | EM on the answered |\n|---|---|---|---|")
    for name, n, rate, em in rows:
        print(f"| {name} | {n} | {rate:.3f} | {'-' if em is None else f'{em:.3f}'} |")
    return 0


def geoqa(folder: Path) -> Path:
    """``folder`` holding GeoQA's files, written by ``ragmodels.data`` first when they are missing."""
    if not (folder / "test.jsonl").is_file():
        from ragmodels.data.geo_qa import write_geo_qa

        print(f"writing GeoQA to {folder}", file=sys.stderr)
        write_geo_qa(folder)
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_lines(path: Path) -> list[dict]:
    """Out-of-domain questions, one a line ('#' lines are comments), as records without answers."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [{"question": q, "answers": [], "relation": "out_of_domain"} for q in lines if q and not q.startswith("#")]


def answer_all(pipeline: RagPipeline, records: list[dict], vocabulary: list[str], num_beams: int, name: str,
               batch_size: int = 32) -> list[tuple[dict, str]]:
    """(abstention features, the model's answer without abstention) per record, with progress on stderr."""
    out = []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        answers = pipeline.answer([r["question"] for r in batch], num_beams=num_beams, abstain=False)
        for record, a in zip(batch, answers):
            feats = abstention.features(record["question"], [f"{p.title} {p.text}" for p in a.passages],
                                        [p.inner_product for p in a.passages], a.score, vocabulary)
            out.append((feats, a.answer))
        print(f"{name}: {len(out)}/{len(records)} questions", file=sys.stderr, flush=True)
    return out


# other wordings of GeoQA questions than its templates (none of them is in any split): the rule must not
# take an in-domain question for an out-of-domain one because of how it is put
REWORDINGS = {
    "capital": ["Tell me the capital of {}.", "What's the capital city of {}?", "Which city is the capital of {}?",
                "Name the capital of {}."],
    "currency": ["What currency does {} use?", "Which currency is used in {}?"],
    "continent": ["On which continent is {}?", "What continent is {} located in?"],
    "country": ["Which country is {} located in?", "{} lies in which country?"],
}


def reworded_questions(test: list[dict]) -> list[dict]:
    """One record per (test fact, rewording) of the relations in REWORDINGS."""
    facts = {(r["relation"], r["entity"]): r["answers"] for r in test if r["relation"] in REWORDINGS}
    return [{"question": t.format(entity), "answers": answers, "relation": relation}
            for (relation, entity), answers in sorted(facts.items()) for t in REWORDINGS[relation]]


def report_rows(rule: abstention.AbstentionRule, test: list[dict], test_answers: list[tuple[dict, str]],
                ood_answers: list[tuple[dict, str]]) -> list[tuple[str, int, float, float | None]]:
    """(group, n, abstention rate, EM on the answered questions) per test relation, all of test, and OOD."""
    groups: dict[str, list[tuple[bool, float]]] = {}
    for record, (feats, answer) in zip(test, test_answers):
        row = (rule.confidence(feats) < rule.threshold, max_over_answers(exact_match, answer, record["answers"]))
        groups.setdefault(record["relation"], []).append(row)
        groups.setdefault("GeoQA test, all", []).append(row)
    rows = []
    for name in [*sorted(g for g in groups if g != "GeoQA test, all"), "GeoQA test, all"]:
        decided = groups[name]
        answered = [em for abstained, em in decided if not abstained]
        rows.append((name, len(decided), 1 - len(answered) / len(decided),
                     sum(answered) / len(answered) if answered else None))
    ood = [rule.confidence(feats) < rule.threshold for feats, _ in ood_answers]
    rows.append(("out-of-domain (data/ood/test.txt)", len(ood), sum(ood) / len(ood), None))
    return rows


if __name__ == "__main__":
    sys.exit(main())
