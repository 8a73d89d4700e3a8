"""Hostile requests against every endpoint of the service's app (in-process, through both
server interfaces): whatever the method, the headers and the body, the answer is a 2xx or
4xx in the endpoint's own shape (text for secsipidx's endpoints, JSON for the ATIS-1000082
and our JSON API, with an X-RequestID), never a 500, an exception or a malformed access-log
line, and the metrics' labels stay within the routes and statuses whatever the requests
carried.  The contract of each answer is in test_service_app.py; this is about input nobody
wrote a test for."""

from __future__ import annotations

import io
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import fuzz
import servicekit
from helpers import DEST, ORIG, X5U, KeyFiles
from secsipid import Signer
from secsipid.service import ServiceApp, create_app, load_config
from servicekit import Reply, call

TOKEN = "fuzz-token-0123456789abcdef"

JSON_PATHS = ("/v1/verify", "/v1/sign", "/stir/v1/signing", "/stir/v1/verification")
TEXT_PATHS = ("/v1/check", "/v1/sign-csv", "/v1/pub/cert.pem", "/healthz", "/metrics")
OTHER_PATHS = ("/openapi.json", "/stir/v1/nope", "/v1/pub/../secret.pem", "/", "/nope")
METHODS = ("POST", "PUT", "GET", "HEAD", "DELETE", "OPTIONS", "PATCH", "post", "X" * 20)

# Header values: the ones the app looks for, and anything printable (Granian never hands the
# app a value that is not ASCII; the ASGI path gets latin-1).
_VALUES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "text/plain",
            "*/*",
            "application/*",
            "application/json;q=0",
            f"Bearer {TOKEN}",
            "Bearer ",
            "Basic Zm9vOmJhcg==",
            "0",
            "-1",
            "99999999999999999999",
            "12",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
)
_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            ["content-type", "accept", "authorization", "x-requestid", "x-spc", "content-length"]
        ),
        _VALUES,
    ),
    max_size=5,
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _templates(identity: str) -> dict[str, list[dict[str, Any]]]:
    """Valid bodies of each JSON endpoint (made now: the verifier checks the clock)."""
    now = int(time.time())
    rcd = {"nam": "Example Bank", "apn": "Card services"}
    return {
        "/stir/v1/signing": [
            {
                "signingRequest": {
                    "attest": "A",
                    "dest": {"tn": [DEST]},
                    "iat": now,
                    "orig": {"tn": ORIG},
                    "origid": "123e4567-e89b-12d3-a456-426655440000",
                }
            }
        ],
        "/stir/v1/verification": [
            {
                "verificationRequest": {
                    "from": {"tn": ORIG},
                    "to": {"tn": [DEST]},
                    "time": now,
                    "identity": identity,
                }
            }
        ],
        "/v1/sign": [
            {"orig_tn": ORIG, "dest_tn": [DEST], "attest": "B", "rcd": rcd, "crn": "Fraud alert"},
            {"ppt": "div", "orig_tn": ORIG, "div_tn": "12155550199", "dest_tn": DEST, "iat": now},
            {"original": identity, "dest_tn": ["12155550177"]},
            {"ppt": "rcd", "orig_tn": ORIG, "dest_tn": DEST, "rcd": rcd, "x5u": X5U},
        ],
        "/v1/verify": [{"identity": [identity], "orig_tn": ORIG, "dest_tn": [DEST]}],
    }


_JSON_HEADERS = [
    ("content-type", "application/json"),
    ("accept", "application/json"),
    ("authorization", f"Bearer {TOKEN}"),
]


@st.composite
def _request(draw: st.DrawFn, identity: str) -> tuple[str, str, bytes, list[tuple[str, str]]]:
    """Mostly the endpoints that parse a body, with bodies near valid ones (where the parsers'
    branches are), and some of anything."""
    group = draw(st.integers(0, 99))
    if group < 50:
        path = draw(st.sampled_from(JSON_PATHS))
    elif group < 85:
        path = draw(st.sampled_from(TEXT_PATHS))
    else:
        path = draw(st.sampled_from(OTHER_PATHS))
    method = "POST" if draw(st.integers(0, 4)) else draw(st.sampled_from(METHODS))
    templates = _templates(identity)
    csv = f"{ORIG},{DEST},A,,{X5U}"
    kind = draw(st.integers(0, 19))
    # The edits are tools/fuzz.py's (AFL-style byte edits with hostile tokens; JSON documents
    # parsed, one node changed, raw hostile numbers and nesting spliced in), seeded by hypothesis.
    rng = draw(st.randoms(use_true_random=False))
    if kind < 2:
        body = draw(st.binary(max_size=300))
    elif kind < 4:
        body = json.dumps(draw(_JSON)).encode()
    elif path in templates and kind < 16:
        body = json.dumps(draw(st.sampled_from(templates[path]))).encode()
        for _ in range(draw(st.integers(1, 2))):
            body = fuzz.mutate_json(rng, body)
    elif path in templates:
        body = json.dumps(draw(st.sampled_from(templates[path]))).encode()
        body = fuzz.mutate_bytes(rng, body, fuzz.JSON_TOKENS, (), 8192)
    elif path == "/v1/sign-csv" and kind < 12:
        fields = draw(st.lists(st.text(max_size=25), max_size=7))
        body = ",".join(fields).encode("utf-8", "surrogatepass")
    elif path == "/v1/sign-csv":
        body = fuzz.mutate_bytes(rng, csv.encode(), (b",", b" ", b"\r\n"), (), 8192)
    elif kind < 10:
        lines = draw(st.lists(st.sampled_from([identity, "", " ", "x"]), max_size=4))
        body = "\n".join(lines).encode()
    else:
        body = fuzz.mutate_bytes(rng, identity.encode(), fuzz.IDENTITY_TOKENS, (), 8192)
    headers = draw(_HEADERS)
    if path in JSON_PATHS and draw(st.integers(0, 3)):
        headers += _JSON_HEADERS
    return method, path, body, headers


@pytest.fixture(scope="module")
def fuzz_app(
    key_files: KeyFiles, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ServiceApp, io.StringIO]:
    pub = tmp_path_factory.mktemp("pub")
    (pub / "cert.pem").write_bytes(key_files.cert_pem.read_bytes())
    (pub.parent / "secret.pem").write_bytes(key_files.key_pem.read_bytes())
    tokens = pub.parent / "tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)
    log = io.StringIO()
    settings_ = {
        "key": str(key_files.key_pem),
        "x5u": X5U,
        "cert": str(key_files.cert_pem),
        "expire": 300,
        "pub_dir": str(pub),
        "token_file": str(tokens),
    }
    config = load_config(None, settings_)
    return create_app(config, access_log=log), log


def _check_reply(path: str, method: str, reply: Reply) -> None:
    assert reply.status < 500, (method, path, reply.status, reply.body[:300])
    assert "content-type" in reply.headers, (method, path, reply.headers)
    if path in JSON_PATHS or path.startswith("/stir/"):
        assert reply.headers.get("x-requestid"), (method, path, reply.headers)
        if method != "HEAD":
            assert isinstance(reply.json(), dict), (method, path, reply.body[:300])
    else:
        reply.body.decode("utf-8")


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
def test_hostile_requests(
    interface: str,
    fuzz_app: tuple[ServiceApp, io.StringIO],
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servicekit, "INTERFACE", interface)
    app, log = fuzz_app
    identity = signer.identity(ORIG, DEST, "A", iat=int(time.time()))
    seen: set[int] = set()

    @settings(
        max_examples=700,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=_request(identity))
    def run(request: tuple[str, str, bytes, list[tuple[str, str]]]) -> None:
        method, path, body, headers = request
        reply = call(app, method, path, body, headers)
        _check_reply(path, method, reply)
        seen.add(reply.status)

    run()
    # Not vacuous: the requests reached successes and several kinds of refusal.
    assert 200 in seen and len(seen) >= 5, seen
    # Every access-log line is one JSON object, whatever the request carried.
    lines = log.getvalue().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict) and isinstance(entry["status"], int)
    # The metrics' labels are the routes' names and three-digit statuses, never request data.
    metrics = call(app, "GET", "/metrics")
    assert metrics.status == 200
    routes = {route.name for route in _route_objects()}
    for endpoint, status in re.findall(
        r'secsipid_http_requests_total\{endpoint="([^"]*)",status="([^"]*)"\}', metrics.text
    ):
        assert endpoint in routes and re.fullmatch(r"[1-5][0-9][0-9]", status), (endpoint, status)


# One of each JSON type, and the edge values of each.
_EXEMPLARS: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**70, 1.5, -1e308, "", " ", "x", "\u0000", "1" * 5000,
    [], [None], ["x", "y"], [[]], {}, {"tn": None}, {"a": 1},
)  # fmt: skip


@pytest.mark.parametrize("interface", ["asgi", "rsgi"])
@pytest.mark.parametrize("path", JSON_PATHS)
def test_every_member_of_every_type(
    interface: str,
    path: str,
    fuzz_app: tuple[ServiceApp, io.StringIO],
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each member and item of a valid JSON request, in turn, removed or replaced by a value of
    each JSON type: a clean answer every time (type confusion is where parsers answer 500)."""
    monkeypatch.setattr(servicekit, "INTERFACE", interface)
    app, _ = fuzz_app
    templates = _templates(signer.identity(ORIG, DEST, "A", iat=int(time.time())))[path]
    statuses = set()
    for template in templates:
        body = json.dumps(template).encode()
        assert call(app, "POST", path, body, _JSON_HEADERS).status == 200, template
        for where in fuzz.json_paths(template)[1:]:  # every node but the root
            for value in (_DELETE, *_EXEMPLARS):
                doc = json.loads(json.dumps(template))
                parent = fuzz.json_get(doc, where[:-1])
                if value is _DELETE:
                    del parent[where[-1]]
                else:
                    parent[where[-1]] = value
                reply = call(app, "POST", path, json.dumps(doc).encode(), _JSON_HEADERS)
                _check_reply(path, "POST", reply)
                statuses.add(reply.status)
    assert statuses - {200}, statuses  # refusals were reached


_DELETE = object()


def _route_objects() -> list[Any]:
    from secsipid.service import app as app_module

    return [
        *app_module._ROUTES.values(),
        app_module._PUB,
        app_module._STIR_OTHER,
        app_module._OTHER,
    ]
