from ragmodels.data import build_geo_qa, read_jsonl, write_geo_qa
from ragmodels.evaluation import answer_in_passage


def test_split_is_by_entity_and_answers_are_in_the_knowledge_base():
    qa = build_geo_qa(seed=0, n_cities=50)
    entities = {split: {r["entity"] for r in records} for split, records in qa.splits.items()}
    assert entities["test"] and entities["dev"] and entities["train"]
    assert not entities["test"] & entities["train"]
    assert not entities["dev"] & entities["train"]
    assert not set(qa.meta["test_groups"]) & set(qa.meta["train_groups"])
    documents = {d["id"]: d for d in qa.documents}
    for record in qa.splits["test"]:
        assert answer_in_passage(record["answers"], documents[record["gold_passage_id"]]["text"]), record
    relations = {r["relation"] for r in qa.splits["train"]}
    assert {"capital", "currency", "continent", "population", "country"} <= relations
    capital_questions = {r["question"].replace(r["entity"], "X") for r in qa.splits["train"] if r["relation"] == "capital"}
    assert len(capital_questions) >= 3  # several phrasings


def test_generation_is_deterministic_and_seeded(tmp_path):
    write_geo_qa(tmp_path / "a", seed=3, n_cities=20)
    write_geo_qa(tmp_path / "b", seed=3, n_cities=20)
    for name in ("documents.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = build_geo_qa(seed=4, n_cities=20)
    assert other.meta["test_groups"] != read_meta_groups(tmp_path / "a")
    docs = read_jsonl(tmp_path / "a" / "documents.jsonl").records
    assert all(set(d) == {"id", "title", "text"} for d in docs)


def read_meta_groups(folder):
    import json

    return json.loads((folder / "meta.json").read_text())["test_groups"]
