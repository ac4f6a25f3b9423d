"""The chunked sorted key set behind listings (dkvs.core.sortedkeys), against a plain model."""

from __future__ import annotations

import bisect
import random

from dkvs.core.sortedkeys import CHUNK_KEYS, SortedKeys


def test_empty():
    keys = SortedKeys()
    assert len(keys) == 0
    assert list(keys.iter_from("")) == []
    assert list(keys.iter_from("a", inclusive=False)) == []


def test_iter_from_inclusive_and_exclusive():
    keys = SortedKeys()
    for key in ["b", "d", "a", "c"]:
        keys.add(key)
    assert list(keys.iter_from("")) == ["a", "b", "c", "d"]
    assert list(keys.iter_from("b")) == ["b", "c", "d"]
    assert list(keys.iter_from("b", inclusive=False)) == ["c", "d"]
    assert list(keys.iter_from("bb")) == ["c", "d"]
    assert list(keys.iter_from("d", inclusive=False)) == []
    assert list(keys.iter_from("z")) == []


def test_chunks_split_and_iterate_across_boundaries():
    # More than two chunks' worth, inserted in an order that splits chunks in the middle.
    keys = SortedKeys()
    count = 5 * CHUNK_KEYS + 17
    order = list(range(count))
    random.Random(1).shuffle(order)
    for i in order:
        keys.add(f"k{i:06d}")
    expected = [f"k{i:06d}" for i in range(count)]
    assert len(keys) == count
    assert list(keys.iter_from("")) == expected
    start = 2 * CHUNK_KEYS + 3
    assert list(keys.iter_from(expected[start]))[:5] == expected[start:start + 5]
    assert list(keys.iter_from(expected[start], inclusive=False))[:1] == [expected[start + 1]]


def test_remove_until_empty_then_reuse():
    keys = SortedKeys()
    names = [f"k{i:04d}" for i in range(3 * CHUNK_KEYS)]
    for name in names:
        keys.add(name)
    for name in names[::2] + names[1::2]:
        keys.remove(name)
    assert len(keys) == 0 and list(keys.iter_from("")) == []
    keys.add("again")
    assert list(keys.iter_from("")) == ["again"]


def test_update_sorted_and_clear():
    keys = SortedKeys()
    keys.add("old")
    keys.update_sorted([f"k{i:05d}" for i in range(2 * CHUNK_KEYS + 1)])
    assert len(keys) == 2 * CHUNK_KEYS + 1
    assert next(keys.iter_from("")) == "k00000"
    keys.add("k00000x")  # inserts still work after a bulk load
    assert list(keys.iter_from("k00000"))[:2] == ["k00000", "k00000x"]
    keys.clear()
    assert len(keys) == 0 and list(keys.iter_from("")) == []


def test_random_operations_match_a_sorted_list():
    # Seeded: adds and removes at random (small chunks are forced by the key count), and
    # every scan from a random start agrees with bisect on a plain sorted list.
    for seed in range(10):
        rng = random.Random(seed)
        keys, model = SortedKeys(), []
        for _ in range(4000):
            key = f"{rng.randint(0, 3000):05d}"
            i = bisect.bisect_left(model, key)
            present = i < len(model) and model[i] == key
            if present and rng.random() < 0.4:
                keys.remove(key)
                del model[i]
            elif not present:
                keys.add(key)
                model.insert(i, key)
            if rng.random() < 0.02:
                start = f"{rng.randint(0, 3000):05d}"
                inclusive = rng.random() < 0.5
                find = bisect.bisect_left if inclusive else bisect.bisect_right
                assert list(keys.iter_from(start, inclusive)) == model[find(model, start):], f"seed {seed}"
        assert len(keys) == len(model) and list(keys.iter_from("")) == model, f"seed {seed}"
