"""Product search: BM25 over the catalogue, as WebShop's Lucene (pyserini) index does it.

WebShop indexes one document per product, "title description first-bullet-point option-text", lowercased,
and returns the top 50 hits of a BM25 query (pyserini defaults k1 = 0.9, b = 0.4). We rebuild that with
`bm25s` (Lucene's BM25 variant) and a Lucene-like English analyzer: lowercase, word tokens that keep
inner dots and apostrophes ("6.7", "l'eau"), possessive "'s" dropped, Lucene's English stop words removed,
and the original Porter stemmer (PyStemmer's "porter", as Lucene's PorterStemFilter). Only products that
share at least one term with the query are returned, as Lucene does.

The index takes well under a second for 1000 products; it is built once per catalogue and process, and
query results are cached (rollouts repeat the same searches many times).
"""

from __future__ import annotations

import functools
import re

import bm25s
import numpy as np
import Stemmer

from hpl.webshop.catalogue import Catalogue, Product

TOP_K = 50
CACHE_SIZE = 50_000
K1 = 0.9
B = 0.4

#: Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET
LUCENE_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+(?:[.'’]\w+)*")
_STEMMER = Stemmer.Stemmer("porter")


def analyze(text: str) -> list[str]:
    """Lucene-like English analysis: tokens, lowercase, possessives, stop words, Porter stems."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token.endswith(("'s", "’s")):
            token = token[:-2]
        if token and token not in LUCENE_STOP_WORDS:
            tokens.append(token)
    return _STEMMER.stemWords(tokens)


def document_text(product: Product) -> str:
    """What WebShop indexes for a product."""
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, product.option_text()]).lower()


class SearchEngine:
    """BM25 search over one catalogue; `search` returns asins, best first."""

    def __init__(self, catalogue: Catalogue, top_k: int = TOP_K) -> None:
        self.top_k = top_k
        self._asins = [p.asin for p in catalogue.products]
        self._bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        self._bm25.index([analyze(document_text(p)) for p in catalogue.products], show_progress=False)
        self._cache: dict[str, tuple[str, ...]] = {}

    def search(self, query: str) -> tuple[str, ...]:
        """The top-k asins for a query (ties keep catalogue order); empty when no term matches."""
        if query not in self._cache:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[query] = self.rank(query)
        return self._cache[query]

    def rank(self, query: str) -> tuple[str, ...]:
        """`search` without the cache (what a benchmark of search latency should time)."""
        terms = analyze(query)
        if not terms:
            return ()
        scores = self._bm25.get_scores(terms)
        order = np.argsort(-scores, kind="stable")[: self.top_k]
        return tuple(self._asins[i] for i in order if scores[i] > 0)


@functools.lru_cache(maxsize=4)
def _engine(folder: str, top_k: int) -> SearchEngine:
    from hpl.webshop.catalogue import load_catalogue

    return SearchEngine(load_catalogue(folder), top_k)


def search_engine(catalogue: Catalogue, top_k: int = TOP_K) -> SearchEngine:
    """The (shared, cached) search engine of a catalogue."""
    return _engine(str(catalogue.folder), top_k)
