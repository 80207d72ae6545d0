"""Text normalisation for comparing words: lowercase, no punctuation, numbers 0-20 as digits
(sans-I/O; what align.py compares and what eval/wer.py scores)."""

from __future__ import annotations

import re

# Numbers 0-20 spelled out in the five languages of the corpus, scored as their digits: "7",
# "seven", "siete", "sept", "sette" and "семь" are one word. Where a number word is also
# another word ("un", "une", "una": "a"; "once"; "due"), both texts are mapped alike.
_NUMBERS = {word: str(n) for words in (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty",
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
    "dieciséis diecisiete dieciocho diecinueve veinte",
    "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
    "seize",
    "zero uno due tre quattro cinque sei sette otto nove dieci undici dodici tredici "
    "quattordici quindici sedici diciassette diciotto diciannove venti",
    "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать "
    "тринадцать четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать "
    "двадцать",
) for n, word in enumerate(words.split())}
_NUMBERS |= {"une": "1", "una": "1", "vingt": "20", "одна": "1", "одно": "1", "две": "2"}
_PUNCT = re.compile(r"[^\w\s']")


def normalize(text: str) -> list[str]:
    """Lowercase, drop punctuation, write numbers 0-20 as digits, split into words."""
    text = _PUNCT.sub(" ", text.lower().replace("-", " "))
    words = []
    for word in text.split():
        word = word.strip("'")
        word = _NUMBERS.get(word, word)
        if word:
            words.append(word)
    return words
