"""The corpus of recorded exchanges (tests/corpus): the expectations stored with every exchange are what the
independent reader (tests/corpus/reader.py) says today, and the reader's usage agrees with the providers' own
totals wherever an answer reports one, so its reading of each API's counters is checked against the
providers themselves, not only against their documentation."""

import glob
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "corpus"))

import import_cassettes  # noqa: E402
import reader  # noqa: E402

SOURCES = sorted(glob.glob(os.path.join(HERE, "corpus", "*", "exchanges.jsonl.gz")))


def exchanges():
    for path in SOURCES:
        yield from import_cassettes.load(path)


def test_the_corpus_is_there():
    assert len(SOURCES) == 4
    assert sum(1 for _ in exchanges()) >= 3000


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_stored_expectations_are_the_readers(path):
    wrong = [x["id"] for x in import_cassettes.load(path) if x["expect"] != reader.expect(x)]
    assert not wrong, f"{len(wrong)} stale (run tests/corpus/import_cassettes.py --expect): {wrong[:5]}"


def reported_total(x):
    """The total token count a whole JSON answer reports beside its counters, or None."""
    e = x["expect"]
    if e["framing"] != "whole" or e["status"] >= 400:
        return None
    resp = x["response"]
    body = reader.decompress(reader.body_bytes(resp), resp["headers"].get("content-encoding"))
    doc = reader.json_or_none(body.decode("utf-8", "replace"))
    if not isinstance(doc, dict):
        return None
    usage = reader.obj(doc.get("usage"))
    return {
        "openai.chat": usage.get("total_tokens"),
        "openai.completions": usage.get("total_tokens"),
        "openai.embeddings": usage.get("total_tokens"),
        "openai.responses": usage.get("total_tokens"),
        "gemini": reader.obj(doc.get("usageMetadata")).get("totalTokenCount"),
        "bedrock.converse": usage.get("totalTokens"),
    }.get(e["api"])


def test_usage_adds_up_to_the_providers_totals():
    checked, wrong = 0, []
    for x in exchanges():
        total = reported_total(x)
        u = x["expect"]["usage"]
        if not isinstance(total, int) or u["input"] is None:
            continue
        checked += 1
        if u["input"] + (u["output"] or 0) != total:
            wrong.append((x["id"], u, total))
    assert checked >= 2000, checked
    assert not wrong, wrong[:5]
