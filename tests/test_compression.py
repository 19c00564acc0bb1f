"""The events' compressor and eventsourcing's ZlibCompressor read each other's output: a store
written before reads as before, and a replica not yet upgraded reads what an upgraded one wrote."""

from __future__ import annotations

import json

from eventsourcing.compressor import ZlibCompressor
from hypothesis import given
from hypothesis import strategies as st

from service.compression import EventCompressor

json_objects = st.dictionaries(
    st.text(max_size=20),
    st.one_of(st.text(max_size=3000), st.integers(), st.lists(st.text(max_size=50))),
    max_size=20,
)


@given(json_objects)
def test_either_compressor_reads_what_the_other_wrote(state: dict):
    data = json.dumps(state, ensure_ascii=False).encode()
    ours, theirs = EventCompressor(), ZlibCompressor()

    assert ours.decompress(ours.compress(data)) == data
    assert ours.decompress(theirs.compress(data)) == data
    assert theirs.decompress(ours.compress(data)) == data
