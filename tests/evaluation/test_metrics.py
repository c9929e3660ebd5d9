import pytest

from ragmodels.evaluation import answer_in_passage, exact_match, f1, max_over_answers, normalize_answer, recall_at_k


def test_normalization_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The Kenyan   Shilling! ") == "kenyan shilling"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theater") == "theater"  # "the" only as a word


@pytest.mark.parametrize(
    ("prediction", "answers", "em", "f1_score"),
    [
        ("the Euro", ["Euro"], 1.0, 1.0),
        ("Kenyan shilling", ["shilling"], 0.0, 2 / 3),
        ("Paris", ["Lyon", "paris."], 1.0, 1.0),
        ("New York City", ["York"], 0.0, 0.5),
        ("Oslo", ["Bergen"], 0.0, 0.0),
        ("the", ["a"], 1.0, 1.0),  # both normalize to empty
    ],
)
def test_em_and_f1_take_the_best_gold_answer(prediction, answers, em, f1_score):
    assert max_over_answers(exact_match, prediction, answers) == em
    assert max_over_answers(f1, prediction, answers) == pytest.approx(f1_score)


def test_recall_at_k_and_answer_in_passage():
    hits = [[False, True, False], [True, False, False], [False, False, False]]
    assert recall_at_k(hits, [1, 2, 3]) == {1: 1 / 3, 2: 2 / 3, 3: 2 / 3}
    assert answer_in_passage(["Euro"], "The currency is the Euro (EUR).")
    assert not answer_in_passage(["Euro"], "The Europeans")
    assert answer_in_passage(["77,006"], "a population of 77,006 people")
