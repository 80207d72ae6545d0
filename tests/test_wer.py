"""The scorer's normalisation: what counts as the same word."""

from __future__ import annotations

from rtasr.eval.wer import joined_wer, wer


def test_small_numbers_are_one_word_in_digits_or_spelled_out_in_every_language() -> None:
    assert wer("press 4 to record", "Press four to record.") == 0.0
    assert wer("appuyez sur 3", "appuyez sur trois") == 0.0
    assert wer("marque 7 o 9, u 8 para salir", "Marque siete o nueve, u ocho para salir.") == 0.0
    assert wer("нажмите 5", "нажмите пять") == 0.0
    assert wer("premere 2", "premere due") == 0.0
    assert wer("press 4", "press five") == 0.5  # a wrong number is still wrong


def test_a_number_word_that_is_also_another_word_is_mapped_alike_on_both_sides() -> None:
    assert joined_wer(["une option invalide"], ["une option invalide"]) == 0.0
    assert wer("un message", "une message") == 0.0  # both "1": gender is not scored
