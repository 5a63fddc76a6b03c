"""The agent client's reply encoding: chunks under the limit, bytes equal to protobuf's own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fodcproxy.agent.client import encode_reply
from fodcproxy.rpc.convert import pb

_metrics = st.builds(
    lambda name, labels, value: pb.Metric(name=name, labels=labels, value=value, type=1),
    st.text(max_size=20), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    st.floats(allow_nan=False))


@settings(max_examples=200)
@given(st.lists(_metrics, max_size=20), st.integers(min_value=0, max_value=2**64 - 1), st.booleans())
def test_encode_reply_matches_protobuf(metrics, request_id, more):
    blobs = [m.SerializeToString() for m in metrics]
    ours = encode_reply(blobs, request_id, more=more)
    expected = pb.StreamMetricsRequest(metrics=metrics, request_id=request_id, more=more)
    assert pb.StreamMetricsRequest.FromString(ours) == expected
