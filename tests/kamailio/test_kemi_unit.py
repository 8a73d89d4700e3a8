"""secsipid.kamailio outside Kamailio, with a small fake ``KSR``.

The real behaviour is proven by test_kamailio_e2e.py; these tests pin the return codes, the
variables, the headers and the settings validation quickly and without any process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Pki
from secsipid import Signer, Verifier, b64url_decode, b64url_encode, private_key_from_file
from secsipid import kamailio as sk

X5U = "https://cert.example.org/sti.pem"
_TOKEN = re.compile(r"\$\([^()]*(?:\([^()]*\))?[^()]*\)|\$[A-Za-z_]\w*(?:\([^()]*\))?")


class FakeKSR:
    """Just enough of Kamailio's KSR: PVs from a dict, headers and replies recorded."""

    def __init__(self, pvs: dict[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(pvs or {})
        self.appended: list[str] = []
        self.removed: list[str] = []
        self.reply_headers: list[str] = []
        self.replies: list[tuple[int, str]] = []
        self.logs: list[tuple[str, str]] = []
        self.assigned: list[tuple[str, Any]] = []
        ksr = self

        class PV:
            def get(self, name: str) -> Any:
                return ksr.values.get(name)

            def sets(self, name: str, value: str) -> None:
                assert isinstance(value, str)
                ksr.values[name] = value
                ksr.assigned.append((name, value))

            def seti(self, name: str, value: int) -> None:
                assert isinstance(value, int)
                ksr.values[name] = value
                ksr.assigned.append((name, value))

        class PVX:
            def evalx(self, dst: str, fmt: str) -> int:
                ksr.values[dst] = _TOKEN.sub(lambda m: str(ksr.values.get(m.group(0), "")), fmt)
                return 1

        class Hdr:
            def append(self, text: str) -> int:
                ksr.appended.append(text)
                return 1

            def append_to_reply(self, text: str) -> int:
                ksr.reply_headers.append(text)
                return 1

            def remove(self, name: str) -> int:
                ksr.removed.append(name)
                return 1

            def is_present(self, name: str) -> int:
                return 1 if ksr.values.get(f"$hdr({name})") is not None else -1

        class SL:
            def send_reply(self, code: int, text: str) -> int:
                ksr.replies.append((code, text))
                return 1

        self.pv, self.pvx, self.hdr, self.sl = PV(), PVX(), Hdr(), SL()

    def err(self, msg: str) -> None:
        self.logs.append(("err", msg))

    def dbg(self, msg: str) -> None:
        self.logs.append(("dbg", msg))

    def info(self, msg: str) -> None:
        self.logs.append(("info", msg))

    def request(self, identities: list[str], **pvs: Any) -> None:
        """Set the current request's Identity headers (as Kamailio's $(hdr(Identity)[*]))."""
        self.values["$(hdr(Identity)[*])"] = ",".join(identities) if identities else None
        self.values["$hdr(Identity)"] = identities[0] if identities else None
        self.values.update(pvs)


@pytest.fixture
def ksr() -> Iterator[FakeKSR]:
    fake = FakeKSR(
        {
            "$fU": "+1-215-555-0121",
            "$rU": "+12155550131",
            "$rd": "example.org",
            "$fu": "sip:+12155550121@example.net",
        }
    )
    sk._set_ksr(fake)
    sk.mod_init()
    yield fake
    sk._set_ksr(None)
    sk.mod_init()


def _identity(key: Path, *, iat: int | None = None) -> str:
    return Signer(private_key_from_file(key)).identity(
        "+12155550121", "+12155550131", "A", iat=iat, x5u=X5U
    )


def _tampered(value: str) -> str:
    token, _, params = value.partition(";")
    header, claims, sig = token.split(".")
    changed = b64url_decode(claims).replace(b"12155550131", b"12155550199")
    return f"{header}.{b64url_encode(changed)}.{sig};{params}"


# -- pseudo-variables and defines ------------------------------------------------------------


def test_expand_literal_single_pv_and_mixed(ksr: FakeKSR) -> None:
    assert sk.expand("/etc/key.pem") == "/etc/key.pem"
    assert sk.expand("$fU") == "+1-215-555-0121"
    assert sk.expand("sip:$rU@$rd") == "sip:+12155550131@example.org"
    assert sk.expand("$var(unset)") == ""


def test_define_strips_quotes(ksr: FakeKSR) -> None:
    ksr.values["$def(STIR_KEY)"] = '"/etc/kamailio/stir/key.pem"'
    ksr.values["$def(STIR_EXPIRE)"] = "60"
    assert sk.define("STIR_KEY") == "/etc/kamailio/stir/key.pem"
    assert sk.define("NOPE", "dflt") == "dflt"
    assert sk.define_int("STIR_EXPIRE", 300) == 60
    assert sk.define_int("NOPE", 300) == 300
    ksr.values["$def(BAD)"] = "abc"
    with pytest.raises(sk.ConfigError, match="BAD must be an integer"):
        sk.define_int("BAD", 1)


# -- checking ------------------------------------------------------------------------------


def test_check_identity_valid_and_failures(ksr: FakeKSR, pki: Pki) -> None:
    cert = str(pki.cert)
    ksr.request([_identity(pki.key)])
    assert sk.secsipid_check_identity(cert) == 1
    verdict = sk.last_verdict()
    assert verdict is not None and verdict.ok and verdict.claims["attest"] == "A"

    ksr.request([])
    assert sk.secsipid_check_identity(cert) == -1  # no Identity: the native module's -1
    assert sk.last_verdict().reason == "no-identity"  # type: ignore[union-attr]

    ksr.request([_tampered(_identity(pki.key))])
    assert sk.secsipid_check_identity(cert) == -251
    ksr.request([_identity(pki.key, iat=int(time.time()) - 3600)])
    assert sk.secsipid_check_identity(cert) == -232
    ksr.request([_identity(pki.other_key)])
    assert sk.secsipid_check_identity(cert) == -251
    ksr.request([_identity(pki.key)])
    assert sk.secsipid_check_identity("/nonexistent/cert.pem") == -451


def test_check_identity_any_valid_header_wins(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_tampered(_identity(pki.key)), _identity(pki.key)])
    assert sk.secsipid_check_identity(str(pki.cert)) == 1
    assert sk.last_verdict().index == 1  # type: ignore[union-attr]


def test_check_identity_key_path_from_pv(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_identity(pki.key)], **{"$var(cert)": str(pki.cert)})
    assert sk.secsipid_check_identity("$var(cert)") == 1


def test_expire_setting_applies(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_identity(pki.key, iat=int(time.time()) - 100)])
    assert sk.secsipid_check_identity(str(pki.cert)) == 1
    sk.mod_init(expire=60)
    assert sk.secsipid_check_identity(str(pki.cert)) == -232


def test_check_pubkey_check_and_verify(ksr: FakeKSR, pki: Pki) -> None:
    value = _identity(pki.key)
    ksr.request([value])
    pub = pki.pub.read_text()
    assert sk.secsipid_check_identity_pubkey(pub) == 1
    assert sk.secsipid_check_identity_pubkey("not a key") == -102
    assert sk.secsipid_check(value, str(pki.cert)) == 1
    assert sk.secsipid_check(_tampered(value), str(pki.cert)) == -251
    assert sk.secsipid_verify(value, pki.cert_pem.decode(), "") == 1
    assert sk.secsipid_verify(_tampered(value), pub, "") == -251


def test_empty_key_path_without_certificate_source(ksr: FakeKSR, pki: Pki) -> None:
    """An empty key path means "download from info"; without a source the call fails cleanly."""
    ksr.request([_identity(pki.key)])
    code = sk.secsipid_check_identity("")
    assert code < 0
    assert sk.last_verdict() is not None and not sk.last_verdict().ok  # type: ignore[union-attr]


def test_verdict_in_xavp(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_identity(pki.key)])
    assert sk.secsipid_verdict(str(pki.cert)) == 1
    names = [name for name, _ in ksr.assigned]
    assert names[0] == "$xavp(secsipid=>ok)"  # a new item on top ...
    assert all(n.startswith("$xavp(secsipid[0]=>") for n in names[1:])  # ... then its fields
    fields = {re.sub(r".*=>(\w+)\)", r"\1", n): v for n, v in ksr.assigned}
    assert fields["ok"] == 1 and fields["ret"] == 1 and fields["reason"] == "valid"
    assert fields["verstat"] == "TN-Validation-Passed" and fields["code"] == 0
    assert fields["attest"] == "A" and fields["orig"] == "12155550121"
    assert fields["dest"] == "12155550131" and fields["x5u"] == X5U

    ksr.assigned.clear()
    ksr.request([_identity(pki.key, iat=int(time.time()) - 3600)])
    assert sk.secsipid_verdict(str(pki.cert), "stir") == -232
    fields = {re.sub(r".*=>(\w+)\)", r"\1", n): v for n, v in ksr.assigned}
    assert ksr.assigned[0][0] == "$xavp(stir=>ok)"
    assert fields["reason"] == "stale" and fields["code"] == 403 and fields["text"] == "Stale Date"
    assert fields["verstat"] == "No-TN-Validation" and fields["ok"] == 0


def test_check_request_returns_verdict_and_matches_numbers(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_identity(pki.key)])
    assert sk.check_request(str(pki.cert)).ok
    verdict = sk.check_request(str(pki.cert), orig_tn="+12155550121", dest_tn="+12155550999")
    assert not verdict.ok and verdict.reason == "dest-mismatch"


# -- signing -------------------------------------------------------------------------------


def test_add_identity_appends_a_verifiable_header(ksr: FakeKSR, pki: Pki) -> None:
    assert sk.secsipid_add_identity("$fU", "$rU", "A", "", X5U, str(pki.key)) == 1
    (line,) = ksr.appended
    assert line.startswith("Identity: ") and line.endswith(";ppt=shaken\r\n")
    passport = Verifier(str(pki.cert)).verify(line[len("Identity: ") : -2])
    assert passport.orig == "12155550121" and passport.dest == ["12155550131"]


def test_add_identity_failures_return_minus_one(ksr: FakeKSR, pki: Pki) -> None:
    assert sk.secsipid_add_identity("$fU", "$rU", "Z", "", X5U, str(pki.key)) == -1
    assert sk.secsipid_add_identity("$fU", "$rU", "A", "", X5U, "/nonexistent.pem") == -1
    assert sk.secsipid_add_identity("alice", "$rU", "A", "", X5U, str(pki.key)) == -1
    assert ksr.appended == []
    assert sum(1 for level, _ in ksr.logs if level == "err") == 3


def test_add_identity_prvkey_and_libopt_x5u(ksr: FakeKSR, pki: Pki) -> None:
    sk.mod_init(libopt=[f"X5u={X5U}"])
    key = pki.key.read_text()
    assert sk.secsipid_add_identity_prvkey("$fU", "$rU", "B", "", "", key) == 1
    value = ksr.appended[0][len("Identity: ") : -2]
    assert f"info=<{X5U}>" in value
    assert Verifier(str(pki.cert)).verify(value).attest == "B"


def test_build_identity_sets_variables(ksr: FakeKSR, pki: Pki) -> None:
    assert sk.secsipid_build_identity("$fU", "$rU", "A", "", X5U, str(pki.key)) == 1
    value = ksr.values[sk.VAL_VAR]
    assert ksr.values[sk.RET_VAR] == len(value) and sk.secsipid_get_val() == value
    assert ksr.appended == []
    assert Verifier(str(pki.cert)).verify(value).attest == "A"
    assert sk.secsipid_build_identity_prvkey("$fU", "$rU", "A", "", X5U, "junk") == -1
    assert ksr.values[sk.VAL_VAR] == "" and ksr.values[sk.RET_VAR] == -1


def test_sign_arbitrary_json(ksr: FakeKSR, pki: Pki) -> None:
    header = '{"alg":"ES256","ppt":"div","typ":"passport","x5u":"https://c.example/x.pem"}'
    payload = '{"attest":"A","iat":1}'
    assert sk.secsipid_sign(header, payload, str(pki.key)) == 1
    token = sk.secsipid_get_val()
    h, p, _ = token.split(".")
    assert b64url_decode(h) == header.encode() and b64url_decode(p) == payload.encode()
    assert sk.secsipid_sign_prvkey("{not json", payload, pki.key.read_text()) == -1


def test_signatures_are_deterministic(ksr: FakeKSR, pki: Pki) -> None:
    """RFC 8225 §4.2: ES256 signers SHOULD use deterministic ECDSA (RFC 6979)."""
    header = '{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://c.example/x.pem"}'
    payload = '{"attest":"A","iat":1}'
    assert sk.secsipid_sign(header, payload, str(pki.key)) == 1
    first = sk.secsipid_get_val()
    assert sk.secsipid_sign(header, payload, str(pki.key)) == 1
    assert sk.secsipid_get_val() == first
    assert sk.secsipid_sign_prvkey(header, payload, pki.key.read_text()) == 1
    assert sk.secsipid_get_val() == first


def test_replaced_key_and_certificate_files_are_used_after_the_check_interval(
    ksr: FakeKSR, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    monkeypatch.setattr(sk, "FILE_CHECK_INTERVAL", 0.2)
    key, cert = tmp_path / "key.pem", tmp_path / "pub.pem"
    key.write_bytes(pki.key.read_bytes())
    cert.write_bytes(pki.cert.read_bytes())
    assert sk.secsipid_add_identity("$fU", "$rU", "A", "", X5U, str(key)) == 1
    first = ksr.appended[-1][len("Identity: ") : -2]
    ksr.request([first])
    assert sk.secsipid_check_identity(str(cert)) == 1
    other = ec.generate_private_key(ec.SECP256R1())
    key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert.write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # within the interval: the files are not looked at
    assert sk.secsipid_check_identity(str(cert)) == 1
    time.sleep(0.25)
    assert sk.secsipid_add_identity("$fU", "$rU", "A", "", X5U, str(key)) == 1
    second = ksr.appended[-1][len("Identity: ") : -2]
    assert Verifier(other.public_key()).verify(second)
    assert sk.secsipid_check_identity(str(cert)) == -251  # the old key's PASSporT: bad signature
    ksr.request([second])
    assert sk.secsipid_check_identity(str(cert)) == 1
    key.unlink()  # noticed at the next check; failures are not cached
    time.sleep(0.25)
    assert sk.secsipid_add_identity("$fU", "$rU", "A", "", X5U, str(key)) == -1
    key.write_bytes(pki.key.read_bytes())
    assert sk.secsipid_add_identity("$fU", "$rU", "A", "", X5U, str(key)) == 1


# -- replies and verstat -------------------------------------------------------------------


def test_reply_with_reason_header(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_tampered(_identity(pki.key))])
    assert sk.secsipid_check_identity(str(pki.cert)) < 0
    assert sk.reply() == 1
    assert ksr.replies == [(438, "Invalid Identity Header")]
    assert ksr.reply_headers == ['Reason: SIP;cause=438;text="Invalid Identity Header"\r\n']
    ksr.request([])
    sk.secsipid_check_identity(str(pki.cert))
    assert sk.reply(sk.last_verdict(), stir=True) == 1
    assert ksr.replies[-1] == (428, "Use Identity Header")
    assert ksr.reply_headers[-1] == 'Reason: STIR;cause=428;text="Use Identity Header"\r\n'


def test_reply_refuses_valid_verdict_and_native_form(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([_identity(pki.key)])
    assert sk.secsipid_check_identity(str(pki.cert)) == 1
    assert sk.reply() == -1 and ksr.replies == []
    assert sk.secsipid_reply(403) == 1
    assert ksr.replies == [(403, "Stale Date")]
    assert ksr.reply_headers == ['Reason: SIP;cause=403;text="Stale Date"\r\n']
    assert sk.secsipid_reply(200) == -1


@pytest.mark.parametrize(
    ("uri", "marked"),
    [
        ("tel:+12155550121", "tel:+12155550121;verstat=TN-Validation-Passed"),
        (
            "tel:+12155550121;verstat=TN-Validation-Failed",
            "tel:+12155550121;verstat=TN-Validation-Passed",
        ),
        (
            "sip:+12155550121@example.org;user=phone",
            "sip:+12155550121;verstat=TN-Validation-Passed@example.org;user=phone",
        ),
        (
            "sip:+12155550121;verstat=No-TN-Validation@example.org;user=phone",
            "sip:+12155550121;verstat=TN-Validation-Passed@example.org;user=phone",
        ),
        ("sip:alice@example.org", "sip:alice@example.org"),
        ("sip:alice2@example.org", "sip:alice2@example.org"),
        # A number without user=phone (issue 8 item 14): user=phone is added, so that the
        # user part is a telephone number and verstat one of its parameters.
        (
            "sip:15551230001@example.org",
            "sip:15551230001;verstat=TN-Validation-Passed@example.org;user=phone",
        ),
        (
            "sips:+1-555-123-0001@example.org;transport=tls?X-A=1",
            "sips:+1-555-123-0001;verstat=TN-Validation-Passed@example.org;transport=tls"
            ";user=phone?X-A=1",
        ),
        (
            "sip:+15551230001@example.org;USER=phone",
            "sip:+15551230001;verstat=TN-Validation-Passed@example.org;USER=phone",
        ),
    ],
)
def test_verstat_uri(uri: str, marked: str) -> None:
    assert sk.verstat_uri(uri, "TN-Validation-Passed") == marked


def test_add_verstat_rewrites_pai_and_drops_upstream_value(ksr: FakeKSR, pki: Pki) -> None:
    ksr.values["$hdr(P-Asserted-Identity)"] = "x"
    ksr.values["$(hdr(P-Asserted-Identity)[*])"] = (
        '"Alice" <sip:+12155550121;verstat=TN-Validation-Passed@example.net;user=phone>,'
        "<tel:+12155550121>"
    )
    ksr.request([_tampered(_identity(pki.key))])
    assert sk.secsipid_check_identity(str(pki.cert)) == -251
    assert sk.add_verstat() == 1
    assert ksr.removed == ["P-Asserted-Identity"]
    assert ksr.appended == [
        'P-Asserted-Identity: "Alice" <sip:+12155550121;verstat=TN-Validation-Failed'
        "@example.net;user=phone>\r\n",
        "P-Asserted-Identity: <tel:+12155550121;verstat=TN-Validation-Failed>\r\n",
    ]


def test_add_verstat_falls_back_to_from(ksr: FakeKSR) -> None:
    assert sk.secsipid_add_verstat("No-TN-Validation") == 1
    assert ksr.values["$fu"] == "sip:+12155550121;verstat=No-TN-Validation@example.net;user=phone"
    assert sk.add_verstat("bad value!") == -1
    assert sk.add_verstat("No-TN-Validation", where="elsewhere") == -1


# -- settings and robustness ---------------------------------------------------------------


def test_mod_init_maps_libopt(tmp_path: Path, pki: Pki) -> None:
    settings = sk.mod_init(
        expire=60,
        timeout=2,
        cache_dir=str(tmp_path),
        libopt=["CertVerify=6", f"CertCAFile={pki.cert}", "CacheExpires=0"],
    )
    assert settings.expire == 60 and settings.timeout == 2.0
    assert settings.cert_verify == 6 and settings.ca_file == str(pki.cert)
    assert settings.cache_expire == 0 and settings.cache_dir == str(tmp_path)
    sk.mod_init()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"libopt": "CertVerify"}, "expected name=value"),
        ({"libopt": ["Bogus=1"]}, "unknown option 'Bogus'"),
        ({"libopt": ["CertVerify=x"]}, "must be an integer"),
        ({"libopt": ["CertVerify=64"]}, "bitmask"),
        ({"libopt": ["CertVerify=-1"]}, "at least 0"),
        ({"libopt": ["CertCAFile=/nonexistent/ca.pem"]}, "not a readable file"),
        ({"cache_dir": "/nonexistent/dir"}, "not a writable directory"),
        ({"expire": -1}, "expire must be at least 0"),
        ({"timeout": 0}, "timeout must be between"),
        ({"timeout": "soon"}, "timeout must be a number"),
        ({"cache_naming": "native"}, "cache_naming must be 'secsipid' or 'libsecsipid'"),
        ({"redis": "http://127.0.0.1:6379/"}, "redis 'http://127.0.0.1:6379/'"),
        ({"redis": 6379}, "redis must be a URL"),
    ],
)
def test_mod_init_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(sk.ConfigError, match=message):
        sk.mod_init(**kwargs)
    sk.mod_init()


def test_mod_init_redis_gives_the_certificate_source_a_shared_cache() -> None:
    """mod_init(redis=URL) is checked (not connected: Redis may be down at start) and the
    workers' certificate source uses the process's RedisCache for that URL."""
    url = "redis://127.0.0.1:1/0"
    assert sk.mod_init(redis=url).redis == url
    source = sk._st().info_source()
    assert source.shared is not None and source.shared.url == url
    sk.mod_init()
    assert sk._st().info_source().shared is None


def test_preload_refuses_bad_keys(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(sk.ConfigError, match="no such file"):
        sk.preload_signing_key(str(tmp_path / "missing.pem"))
    with pytest.raises(sk.ConfigError, match="certificate"):
        sk.preload_certificate(str(pki.key))  # a private key is not a certificate
    sk.preload_signing_key(str(pki.key))
    sk.preload_certificate(str(pki.cert))


def test_exceptions_never_escape(ksr: FakeKSR, pki: Pki) -> None:
    def boom(*args: object) -> int:
        raise RuntimeError("KSR failure")

    ksr.hdr.append = boom  # type: ignore[method-assign]
    ksr.pv.get = boom  # type: ignore[method-assign]
    assert sk.secsipid_add_identity("1", "2", "A", "", X5U, str(pki.key)) == -1
    assert sk.secsipid_check_identity(str(pki.cert)) == -1
    assert sk.add_verstat("No-TN-Validation") == -1
    assert not sk.check_request(str(pki.cert)).ok
    assert any("KSR failure" in msg for level, msg in ksr.logs if level == "err")
