"""RecordMixin: results round-trip through the store by their dataclass fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from landscape.engine.records import RecordMixin
from landscape.store.file import Store


@dataclass(frozen=True, eq=False)
class Thing(RecordMixin):
    _probe = "test.thing"
    value: float
    count: int
    name: str
    flag: bool
    maybe: float | None
    samples: np.ndarray
    extra: np.ndarray | None = None


def test_round_trip_through_the_store_with_types_and_optional_arrays(tmp_path):
    a = Thing(1.5, 3, "x", True, None, np.arange(4.0))
    b = Thing(2.0, 0, "y", False, 0.25, np.zeros((2, 2)), extra=np.ones(3))
    arrays, attrs = a.to_record()
    assert set(arrays) == {"samples"} and attrs["probe"] == "test.thing"
    path = tmp_path / "r.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
        for name, t in (("a", a), ("b", b)):
            arr, att = t.to_record()
            s.write_record("r", "probes", name, arrays=arr, attrs=att)
    with Store(path) as s:
        ra, rb = (Thing.from_record(s.record("r", "probes", n)) for n in ("a", "b"))
    assert (ra.value, ra.count, ra.name, ra.flag, ra.maybe, ra.extra) == (
        1.5,
        3,
        "x",
        True,
        None,
        None,
    )
    assert isinstance(ra.count, int) and isinstance(ra.flag, bool)
    np.testing.assert_array_equal(ra.samples, a.samples)
    assert rb.maybe == 0.25 and rb.samples.shape == (2, 2)
    np.testing.assert_array_equal(rb.extra, np.ones(3))


def test_a_record_of_another_probe_or_lacking_a_field_is_refused():
    arrays, attrs = Thing(1.0, 1, "z", False, None, np.zeros(1)).to_record()
    with pytest.raises(ValueError, match="test.thing"):
        Thing.from_record((arrays, {**attrs, "probe": "other"}))
    with pytest.raises(ValueError, match="lacks 'count'"):
        Thing.from_record((arrays, {k: v for k, v in attrs.items() if k != "count"}))
    with pytest.raises(ValueError, match="lacks the array 'samples'"):
        Thing.from_record(({}, attrs))
    with pytest.raises(ValueError, match="'value' is None"):
        Thing.from_record((arrays, {**attrs, "value": None}))
