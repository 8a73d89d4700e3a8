"""The SIP Identity header field (RFC 8224 §4, §9, §13.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import X5U
from secsipid import (
    IdentityHeader,
    Reason,
    VerificationError,
    build_identity,
    parse_identity,
    split_identity_values,
)
from secsipid._identity import DEFAULT_MAX_IDENTITY_SIZE

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJpYXQiOjF9.c2lnbmF0dXJl"
INFO = "https://cert.example.org/sti.pem"


def _malformed(value: str) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        parse_identity(value)
    assert info.value.reason is Reason.MALFORMED_IDENTITY
    return info.value


def test_parse_full_form() -> None:
    """token;info=<uri>;alg=ES256;ppt=shaken splits into the token and the three params."""
    hdr = parse_identity(f"{TOKEN};info=<{INFO}>;alg=ES256;ppt=shaken")
    assert isinstance(hdr, IdentityHeader)
    assert hdr.token == TOKEN
    assert dict(hdr.params) == {"info": INFO, "alg": "ES256", "ppt": "shaken"}
    assert (hdr.info, hdr.alg, hdr.ppt) == (INFO, "ES256", "shaken")
    assert hdr.compact is False
    assert hdr.raw == f"{TOKEN};info=<{INFO}>;alg=ES256;ppt=shaken"


def test_built_by_hand_has_no_raw_text() -> None:
    """An IdentityHeader made in code (not parsed) was received as no text: raw is empty,
    and it equals the parsed one (raw is not compared)."""
    hdr = IdentityHeader(TOKEN, {"info": INFO})
    assert hdr.raw == ""
    assert hdr == parse_identity(f"{TOKEN};info=<{INFO}>")


def test_parse_params_keep_received_order() -> None:
    """params is in the order received."""
    hdr = parse_identity(f"{TOKEN};ppt=shaken;alg=ES256;info=<{INFO}>")
    assert list(hdr.params) == ["ppt", "alg", "info"]


@pytest.mark.parametrize(
    "value",
    [
        f"{TOKEN} ;info=<{INFO}>;alg=ES256;ppt=shaken",
        f"{TOKEN}; info=<{INFO}> ; alg=ES256 ;ppt=shaken",
        f"{TOKEN};info = <{INFO}>;alg= ES256;ppt =shaken",
        f"{TOKEN}\t;\tinfo=<{INFO}>\t;alg=ES256;ppt=shaken",
        f"{TOKEN}\r\n ;info=<{INFO}>\r\n\t;alg=ES256;ppt=shaken",  # line folding
        f"{TOKEN};\r\n info=\r\n <{INFO}>;alg=ES256;ppt=shaken",
        f"  {TOKEN};info=<{INFO}>;alg=ES256;ppt=shaken  ",
        f"{TOKEN};info=<{INFO}>;alg=ES256;ppt=shaken\r\n",
    ],
)
def test_parse_tolerates_whitespace_and_folding(value: str) -> None:
    """LWS and line folding around ';' and '=' (RFC 3261 §7.3.1) do not change the result."""
    hdr = parse_identity(value)
    assert hdr.token == TOKEN
    assert dict(hdr.params) == {"info": INFO, "alg": "ES256", "ppt": "shaken"}


def test_info_with_and_without_angle_brackets() -> None:
    """info=<uri> is the grammar; bare info=uri (seen from carriers) gives the same URI."""
    assert parse_identity(f"{TOKEN};info=<{INFO}>").info == INFO
    assert parse_identity(f"{TOKEN};info={INFO}").info == INFO
    assert parse_identity(f"{TOKEN};info=< {INFO} >").info == INFO


def test_info_may_hold_semicolon_equals_and_comma_inside_brackets() -> None:
    """Inside <> the URI may contain ';', '=', '?' and ',' without ending the parameter."""
    uri = "https://cert.example.org/c.pem;v=1?a=b&c=d,e"
    hdr = parse_identity(f"{TOKEN};info=<{uri}>;alg=ES256;ppt=shaken")
    assert hdr.info == uri
    assert hdr.alg == "ES256"
    assert hdr.ppt == "shaken"


def test_quoted_ppt_is_unquoted() -> None:
    """ppt="shaken" (RFC 8946 examples, T-Mobile) compares as shaken."""
    assert parse_identity(f'{TOKEN};info=<{INFO}>;ppt="shaken"').ppt == "shaken"
    assert parse_identity(f'{TOKEN};info=<{INFO}>;ppt="div"').ppt == "div"


def test_quoted_value_with_escapes() -> None:
    """A quoted-string generic-param value may hold quoted-pairs and ';'."""
    hdr = parse_identity(f'{TOKEN};info=<{INFO}>;x="a\\"b;c"')
    assert hdr.params["x"] == 'a"b;c'


def test_unknown_params_kept() -> None:
    """generic-param extensions are legal (RFC 8224 §4) and kept, with or without a value."""
    hdr = parse_identity(f"{TOKEN};info=<{INFO}>;alg=ES256;foo=bar;flag;ppt=shaken")
    assert hdr.params["foo"] == "bar"
    assert hdr.params["flag"] == ""
    assert hdr.ppt == "shaken"


def test_param_names_case_insensitive() -> None:
    """Parameter names are case-insensitive (RFC 3261 §7.3.1); keys are lower-cased."""
    hdr = parse_identity(f"{TOKEN};INFO=<{INFO}>;Alg=ES256;pPt=shaken;X-Foo=1")
    assert (hdr.info, hdr.alg, hdr.ppt) == (INFO, "ES256", "shaken")
    assert hdr.params["x-foo"] == "1"


@pytest.mark.parametrize(
    "params",
    [
        f";info=<{INFO}>;info=<{INFO}>",
        f";info=<{INFO}>;INFO=<https://other.example/c.pem>",
        f";info=<{INFO}>;alg=ES256;alg=ES256",
        f";info=<{INFO}>;ppt=shaken;PPT=div",
        f";info=<{INFO}>;foo;foo",
    ],
)
def test_duplicate_param_is_malformed(params: str) -> None:
    """A parameter given twice (in any case) is ambiguous: malformed-identity."""
    err = _malformed(TOKEN + params)
    assert err.sip_status == 438


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        f";info=<{INFO}>",
        f"  ;info=<{INFO}>",
        f"{TOKEN};",
        f"{TOKEN};info=<{INFO}>;",
        f"{TOKEN};;info=<{INFO}>",
        f"{TOKEN};info=<{INFO}",  # unterminated <
        f'{TOKEN};info=<{INFO}>;ppt="shaken',  # unterminated quote
        f"{TOKEN};=x",
        f"{TOKEN};info=<{INFO}> junk",
        f"{TOKEN};info=<{INFO}>, other;info=<{INFO}>",  # two values: split them first
    ],
)
def test_malformed_values(value: str) -> None:
    """Values that do not fit the grammar raise malformed-identity."""
    _malformed(value)


def test_token_without_params_parses() -> None:
    """A bare token parses (the verifier then reports missing-info)."""
    hdr = parse_identity(TOKEN)
    assert hdr.token == TOKEN
    assert dict(hdr.params) == {}
    assert hdr.info is None


@pytest.mark.parametrize(
    ("token", "compact"),
    [
        ("..c2ln", True),
        ("aGRy..c2ln", True),
        (TOKEN, False),
        ("a.b.", False),
        ("..", False),
        ("a.b", False),
    ],
)
def test_compact_form_detection(token: str, compact: bool) -> None:
    """Compact form is '..sig' or 'hdr..sig' (RFC 8225 §7): an empty claims segment."""
    assert parse_identity(f"{token};info=<{INFO}>").compact is compact


def test_too_large() -> None:
    """A value over 8 KiB is refused before parsing: too-large (R45)."""
    ok = f"{TOKEN};info=<{INFO}>;x="
    ok += "a" * (DEFAULT_MAX_IDENTITY_SIZE - len(ok))
    assert len(ok) == DEFAULT_MAX_IDENTITY_SIZE
    assert parse_identity(ok).token == TOKEN
    with pytest.raises(VerificationError) as info:
        parse_identity(ok + "a")
    assert info.value.reason is Reason.TOO_LARGE
    assert info.value.sip_status == 438


def test_max_size_is_configurable() -> None:
    """max_size lowers (or raises) the cap."""
    value = f"{TOKEN};info=<{INFO}>"
    with pytest.raises(VerificationError) as info:
        parse_identity(value, max_size=len(value) - 1)
    assert info.value.reason is Reason.TOO_LARGE
    assert parse_identity(value, max_size=len(value)).info == INFO


def test_identity_header_equality() -> None:
    """IdentityHeader compares by token and params; it is unhashable (mutable-looking)."""
    a = parse_identity(f"{TOKEN};info=<{INFO}>;ppt=shaken")
    b = parse_identity(f'{TOKEN} ; info={INFO} ; ppt="shaken"')
    c = parse_identity(f"{TOKEN};info=<{INFO}>;ppt=div")
    assert a == b
    assert a != c
    with pytest.raises(TypeError):
        hash(a)


# -- several values ----------------------------------------------------------------------------


def test_split_single_value() -> None:
    """One value comes back as a one-element list (stripped)."""
    assert split_identity_values(f" {TOKEN};info=<{INFO}> ") == [f"{TOKEN};info=<{INFO}>"]


def test_split_comma_joined_values() -> None:
    """RFC 3261 §7.3.1: several values on one line are separated by commas."""
    line = f"{TOKEN};info=<{INFO}>;ppt=shaken, a.b.c;info=<https://x/y>,d.e.f;info=<h:z>"
    assert split_identity_values(line) == [
        f"{TOKEN};info=<{INFO}>;ppt=shaken",
        "a.b.c;info=<https://x/y>",
        "d.e.f;info=<h:z>",
    ]


def test_split_comma_inside_angle_brackets_and_quotes() -> None:
    """Commas inside <...> or a quoted string do not separate values."""
    line = 'a.b.c;info=<https://x/a,b>;x="1,2", d.e.f;info=<https://y/c,d>'
    assert split_identity_values(line) == [
        'a.b.c;info=<https://x/a,b>;x="1,2"',
        "d.e.f;info=<https://y/c,d>",
    ]


def test_split_several_lines_and_header_names() -> None:
    """Several header lines, with 'Identity:' or compact 'y:' names in any case (RFC 8224 §13.1)."""
    lines = [
        f"Identity: {TOKEN};info=<{INFO}>",
        "y: a.b.c;info=<https://x/y>",
        "IDENTITY :d.e.f;info=<h:z>, g.h.i;info=<h:w>",
        "Y:j.k.l;info=<h:v>",
        "",
        "   ",
    ]
    assert split_identity_values(lines) == [
        f"{TOKEN};info=<{INFO}>",
        "a.b.c;info=<https://x/y>",
        "d.e.f;info=<h:z>",
        "g.h.i;info=<h:w>",
        "j.k.l;info=<h:v>",
    ]


@pytest.mark.parametrize("name", ["Identity     :", "y            :", "\tIdentity\t\t\t\t:"])
def test_split_header_name_with_blanks_before_the_colon(name: str) -> None:
    """RFC 3261 §25.1 HCOLON allows any blanks between a header's name and its colon: the
    name is removed however far the colon is."""
    assert split_identity_values([f"{name} {TOKEN};info=<{INFO}>"]) == [f"{TOKEN};info=<{INFO}>"]


def test_split_skips_the_name_pattern_only_where_it_cannot_match() -> None:
    """The splitter tries the header-name pattern only on lines whose first character can
    start a match (a blank, or a character the case-insensitive "i"/"y" take): over all of
    Unicode that set is exactly the pattern's, so skipping it changes no result."""
    import sys

    from secsipid._identity import _HEADER_NAME_RE, _NAME_FIRST

    can_start = {
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if any(_HEADER_NAME_RE.match(c + rest) for rest in ("identity:", "dentity:", ":"))
    }
    assert can_start == {c for c in can_start if c in _NAME_FIRST or c.isspace()}
    assert set(_NAME_FIRST) <= can_start
    # the Turkish I's count as "i" for the pattern, so they keep being read as a name
    for name in ("\u0131dentity:", "\u0130DENTITY:"):
        assert split_identity_values(f"{name} {TOKEN};info=<{INFO}>") == [f"{TOKEN};info=<{INFO}>"]


def test_split_drops_empty_values() -> None:
    """Empty elements (',,', trailing ',') and empty input give nothing."""
    assert split_identity_values("a.b.c;info=<h:x>,, ,") == ["a.b.c;info=<h:x>"]
    assert split_identity_values("") == []
    assert split_identity_values([]) == []


def test_split_does_not_strip_identity_like_info() -> None:
    """Only a leading header name is removed, not a colon later in the value."""
    assert split_identity_values(f"{TOKEN};info=<{INFO}>") == [f"{TOKEN};info=<{INFO}>"]


def test_split_rejects_non_str_items() -> None:
    """bytes items are a programming error: TypeError, naming the type given."""
    with pytest.raises(TypeError, match=r"^Identity values must be str, not bytes$"):
        split_identity_values([b"a.b.c;info=<h:x>"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^Identity values must be str, not int$"):
        split_identity_values([f"{TOKEN};info=<{INFO}>", 5])  # type: ignore[list-item]


# -- build -------------------------------------------------------------------------------------


def test_build_identity() -> None:
    """The full value is token;info=<x5u>;alg=ES256;ppt=shaken (ppt unquoted)."""
    assert build_identity(TOKEN, X5U) == f"{TOKEN};info=<{X5U}>;alg=ES256;ppt=shaken"
    assert build_identity(TOKEN, X5U, alg=None, ppt=None) == f"{TOKEN};info=<{X5U}>"
    assert build_identity(TOKEN, X5U, ppt="div") == f"{TOKEN};info=<{X5U}>;alg=ES256;ppt=div"


b64url_text = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=1,
    max_size=30,
)
uri_text = st.from_regex(
    r"https://[a-z0-9.\-]{1,20}(/[A-Za-z0-9._~;=?&,%-]{0,20}){0,3}", fullmatch=True
)
ppt_token = st.from_regex(r"[A-Za-z0-9!%'*+\-._`~]{1,10}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(b64url_text, b64url_text, b64url_text, uri_text, st.none() | ppt_token)
def test_build_parse_round_trip(h: str, p: str, s: str, info: str, ppt: str | None) -> None:
    """parse_identity(build_identity(...)) gives back the token and parameters."""
    token = f"{h}.{p}.{s}"
    hdr = parse_identity(build_identity(token, info, ppt=ppt))
    assert hdr.token == token
    assert hdr.info == info
    assert hdr.alg == "ES256"
    assert hdr.ppt == ppt
    assert split_identity_values(build_identity(token, info, ppt=ppt)) == [
        build_identity(token, info, ppt=ppt)
    ]


_ALLOWED = {Reason.TOO_LARGE, Reason.MALFORMED_IDENTITY}


def _parse_or_known_error(value: str, max_size: int = DEFAULT_MAX_IDENTITY_SIZE) -> None:
    try:
        hdr = parse_identity(value, max_size=max_size)
    except VerificationError as exc:
        assert exc.reason in _ALLOWED
        return
    assert hdr.token
    assert hdr.token == hdr.token.strip()
    assert all(name == name.lower() for name in hdr.params)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_any_text_parses_or_raises_known_error(value: str) -> None:
    """Any text parses or raises VerificationError(too-large|malformed-identity), nothing else."""
    _parse_or_known_error(value)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                ";",
                "=",
                "<",
                ">",
                '"',
                "\\",
                ",",
                " ",
                "\r\n ",
                "\t",
                "info",
                "ppt",
                "alg",
                "shaken",
                "https://x/y",
                "a.b.c",
                "..",
                "é",
                "\x00",
            ]
        ),
        max_size=25,
    ).map("".join),
    st.integers(min_value=0, max_value=64),
)
def test_grammar_soup_parses_or_raises_known_error(value: str, max_size: int) -> None:
    """Strings built from the grammar's delimiters behave the same way, even with tiny caps."""
    _parse_or_known_error(value, max_size=max_size)


def test_repr_shows_the_start_of_the_token_and_the_parameters() -> None:
    """repr (logs, debuggers): the first 24 characters of the token and the parameters."""
    hdr = parse_identity("abcdefghijklmnopqrstuvwxyz0123.b.c;info=<https://x.example/c>;alg=ES256")
    assert repr(hdr) == (
        "IdentityHeader(token='abcdefghijklmnopqrstuvwx'..., "
        "params={'info': 'https://x.example/c', 'alg': 'ES256'})"
    )


def test_parameter_values_are_unquoted() -> None:
    """Quoted-string values lose their quotes and quoted-pair backslashes (RFC 3261 §25.1),
    angle-bracketed ones their brackets and the blanks inside; other values stay as sent."""
    hdr = parse_identity(
        'a.b.c;info=< https://x.example/c >;e="";one="x";two="ab";esc="a\\"b\\\\c";lt=<>;t=tok'
    )
    assert dict(hdr.params) == {
        "info": "https://x.example/c",
        "e": "",
        "one": "x",
        "two": "ab",
        "esc": 'a"b\\c',
        "lt": "",
        "t": "tok",
    }


def test_parameter_cache_is_bounded() -> None:
    """The parsed-parameter cache keeps at most 512 parameter strings, then starts afresh."""
    from secsipid import _identity

    texts = [f";info=<https://x.example/{n}>" for n in range(513)]
    for text in texts[:512]:
        parse_identity("a.b.c" + text)
    assert len(_identity._PARAMS_CACHE) == 512
    parse_identity("a.b.c" + texts[512])
    assert list(_identity._PARAMS_CACHE) == [texts[512]]


def test_parameter_refusal_messages_and_cache() -> None:
    """Parameter refusals show the first 40 characters where parsing stopped, or the repeated
    name; a value without a token says so; the same parameter text is parsed once."""
    for value, message in (
        ("a.b.c;info=<https://x/y>;alg=ES256;alg=ES256", "Identity parameter 'alg' appears twice"),
        ("a.b.c;info=<https://x/y> garbage" + "x" * 60,
         "cannot parse Identity parameters at ' garbage" + "x" * 32 + "'"),
        (";info=<https://x/y>", "Identity value has no PASSporT"),
    ):  # fmt: skip
        with pytest.raises(VerificationError) as exc:
            parse_identity(value)
        assert exc.value.message == message
    first = parse_identity("a.b.c;info=<https://x.example/once>")
    assert parse_identity("d.e.f;info=<https://x.example/once>").params is first.params


def test_split_respects_quoted_pairs_and_brackets() -> None:
    """Commas split Identity values except inside a quoted string (where a backslash escapes
    the next character, a quote or a backslash) or angle brackets."""
    assert split_identity_values('a.b.c;x="q\\",z",d.e.f;info=<u,v>') == [
        'a.b.c;x="q\\",z"',
        "d.e.f;info=<u,v>",
    ]
    assert split_identity_values('a.b.c;x="q\\\\",d.e.f') == ['a.b.c;x="q\\\\"', "d.e.f"]
    assert split_identity_values('a.b.c;x="\\\\\\"",d') == ['a.b.c;x="\\\\\\""', "d"]
