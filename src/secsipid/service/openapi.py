"""The OpenAPI 3.1 description served at ``GET /openapi.json``.

Written as data next to the handlers it describes; ``tests/test_service_app.py`` checks that
every route of the app is described and that the documented examples are what the app sends.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .._reasons import Reason

__all__ = ["openapi_document"]

_TEXT = "text/plain"
_JSON = "application/json"


def _text_body(description: str, example: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_TEXT: {"schema": {"type": "string"}, "example": example}},
    }


def _json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


_REF_ERROR = {"$ref": "#/components/schemas/RequestError"}
_REF_API_ERROR = {"$ref": "#/components/schemas/ApiError"}
_REF_HOP = {"$ref": "#/components/schemas/ChainHop"}
_REF_RCD = {"$ref": "#/components/schemas/Rcd"}
_STR = {"type": "string"}
_STR_OR_LIST = {"oneOf": [_STR, {"type": "array", "items": _STR, "minItems": 1}]}
_TN_OBJ = {
    "type": "object",
    "required": ["tn"],
    "properties": {"tn": {"type": "string", "example": "12155550121"}},
}
_TN_LIST_OBJ = {
    "type": "object",
    "required": ["tn"],
    "properties": {
        "tn": {"type": "array", "items": {"type": "string"}, "example": ["12155550131"]}
    },
}
_FAILURE_HEADERS = {
    "X-SecSIPID-Reason": {"schema": {"type": "string", "enum": [r.value for r in Reason]}},
    "X-SecSIPID-SIP-Status": {"schema": {"type": "integer"}},
    "X-SecSIPID-SIP-Reason": {"schema": {"type": "string"}},
    "X-SecSIPID-Verstat": {"schema": {"type": "string"}},
}
_ATIS_ERRORS = {
    "400": _json_body("SVC4000/SVC4001/SVC4005/SVC4006: bad request", _REF_ERROR),
    "401": _json_body("POL4001: a bearer token is required (signing only)", _REF_ERROR),
    "404": _json_body("SVC4003: no such resource", _REF_ERROR),
    "405": _json_body("POL4050: method not allowed", _REF_ERROR),
    "406": _json_body("SVC4002: Accept does not allow application/json", _REF_ERROR),
    "411": _json_body("SVC4007: Content-Length is required", _REF_ERROR),
    "413": _json_body("SVC4006: the body exceeds server.max_body", _REF_ERROR),
    "415": _json_body("SVC4004: Content-Type must be application/json", _REF_ERROR),
    "500": _json_body("POL5000: internal error", _REF_ERROR),
    "503": _json_body("POL5003: not configured (signing key, x5u)", _REF_ERROR),
}
_API_ERRORS = {
    "400": _json_body(
        "invalid-json, missing-parameter, invalid-parameter, or a signing refusal (invalid-tn, "
        "invalid-attest, invalid-origid, invalid-iat, invalid-x5u, invalid-rcd, "
        "invalid-original, unknown-spc)",
        _REF_API_ERROR,
    ),
    "405": _json_body("method-not-allowed", _REF_API_ERROR),
    "408": _json_body("body-timeout", _REF_API_ERROR),
    "413": _json_body("too-large", _REF_API_ERROR),
    "415": _json_body(
        "unsupported-media-type: Content-Type must be application/json", _REF_API_ERROR
    ),
    "500": _json_body("internal-error", _REF_API_ERROR),
}
# The members of signingRequest (ATIS) and of /v1/sign (ours) for div and RCD.
_RCD_MEMBERS: dict[str, Any] = {
    "rcd": {**_REF_RCD, "description": "Rich Call Data claim (RFC 9795)"},
    "crn": {"type": "string", "description": "call reason (RFC 9795), with rcd"},
    "rcdi": {
        "type": "object",
        "additionalProperties": _STR,
        "description": "integrity digests (JSON pointer -> sha256-<base64>) of URL content you "
        "digested; the inline jCard's (/jcd) is computed",
    },
}
_PPT = {
    "enum": ["shaken", "div", "rcd"],
    "description": "the PASSporT to sign; default shaken, or div when div/original is given",
}
_ORIGINAL = {
    "type": "string",
    "description": "div: the original Identity value; its orig and iat are copied, its dest "
    "is the number diverted from (div picks one when it has several)",
}
_REQUEST_ID = {
    "name": "X-RequestID",
    "in": "header",
    "required": False,
    "description": "Echoed on the response; generated (a UUID) when absent.",
    "schema": {"type": "string"},
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "secsipid STI-AS / STI-VS service",
            "version": __version__,
            "description": "STIR/SHAKEN signing and verification: the ATIS-1000082 JSON API "
            "and secsipidx-compatible endpoints. See docs/service.md.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ApiError": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "example": "invalid-tn"},
                        "message": _STR,
                    },
                },
                "ChainHop": {
                    "type": "object",
                    "description": "One PASSporT of a diversion chain (RFC 8946), innermost "
                    "(the SHAKEN PASSporT) first, with its own outcome",
                    "properties": {
                        "index": {"type": "integer", "description": "its Identity value"},
                        "ppt": {"enum": ["shaken", "div"]},
                        "orig": _STR,
                        "dest": {"type": "array", "items": _STR},
                        "div": {"type": ["string", "null"]},
                        "iat": {"type": ["integer", "null"]},
                        "valid": {"type": "boolean"},
                        "reason": {"enum": [r.value for r in Reason]},
                        "message": _STR,
                    },
                },
                "Rcd": {
                    "type": "object",
                    "required": ["nam"],
                    "description": "The rcd claim (RFC 9795): nam required; jcd and jcl "
                    "exclusive; other members kept as extensions",
                    "properties": {
                        "nam": {"type": "string", "example": "Example Bank"},
                        "apn": _STR,
                        "icn": {"type": "string", "format": "uri"},
                        "jcd": {"type": "array", "description": "jCard (RFC 7095)"},
                        "jcl": {"type": "string", "format": "uri"},
                    },
                },
                "RequestError": {
                    "type": "object",
                    "properties": {
                        "requestError": {
                            "type": "object",
                            "properties": {
                                kind: {
                                    "type": "object",
                                    "required": ["messageId", "text"],
                                    "properties": {
                                        "messageId": {"type": "string", "example": "SVC4001"},
                                        "text": {"type": "string"},
                                        "variables": {"type": "array", "items": {"type": "string"}},
                                    },
                                }
                                for kind in ("serviceException", "policyException")
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            "/v1/check": {
                "post": {
                    "summary": "Verify an Identity header value (secsipidx-compatible)",
                    "requestBody": {
                        "required": True,
                        "content": {_TEXT: {"schema": {"type": "string"}}},
                    },
                    "responses": {
                        "200": _text_body("valid", "OK\n"),
                        "400": {
                            **_text_body(
                                "not valid (the reason is in the body and headers)",
                                "FAILED\nreason: bad-signature\nsip: 438 Invalid Identity Header"
                                "\nverstat: TN-Validation-Failed\nlib_code: -251\n"
                                "message: the ES256 signature does not verify\n",
                            ),
                            "headers": _FAILURE_HEADERS,
                        },
                        "408": _text_body("the body did not arrive in time", "FAILED\n"),
                        "413": _text_body("the body exceeds server.max_body", "FAILED\n"),
                        "500": _text_body("our configuration (no trust anchors, ...)", "FAILED\n"),
                        "502": _text_body("the certificate server failed", "FAILED\n"),
                        "504": _text_body("the certificate download timed out", "FAILED\n"),
                    },
                }
            },
            "/v1/sign-csv": {
                "post": {
                    "summary": "Sign (secsipidx-compatible): OrigTN,DestTN,ATTEST,OrigID,X5U",
                    "security": _BEARER,
                    "requestBody": {
                        "required": True,
                        "content": {
                            _TEXT: {
                                "schema": {"type": "string"},
                                "example": "12155550121,12155550131,A,,",
                            }
                        },
                    },
                    "responses": {
                        "200": _text_body("the Identity header value", "eyJ...;info=<...>\n"),
                        "400": _text_body("refused input", "FAILED\ninvalid-attest: ...\n"),
                        "401": _text_body("a bearer token is required", "FAILED\n"),
                        "503": _text_body("no signing key configured", "FAILED\n"),
                    },
                }
            },
            "/v1/pub/{file}": {
                "get": {
                    "summary": "A public certificate from the configured pub_dir",
                    "parameters": [
                        {
                            "name": "file",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "the file"},
                        "404": {"description": "no such file (no listings, no sub-paths)"},
                    },
                }
            },
            "/v1/verify": {
                "post": {
                    "summary": "Verify every Identity value of a request; the full verdict "
                    "(diversion chain, Rich Call Data, Call-Info)",
                    "parameters": [_REQUEST_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["identity"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "identity": _STR_OR_LIST,
                                        "orig_tn": {**_STR, "description": "the caller"},
                                        "dest_tn": {
                                            **_STR_OR_LIST,
                                            "description": "the call target (Request-URI)",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json_body(
                            "the verdict, valid or not (secsipid check --json)",
                            {
                                "type": "object",
                                "required": ["valid", "reason", "verstat"],
                                "properties": {
                                    "valid": {"type": "boolean"},
                                    "reason": {"enum": [r.value for r in Reason]},
                                    "message": _STR,
                                    "sip_status": {"type": "integer"},
                                    "sip_reason": _STR,
                                    "verstat": _STR,
                                    "lib_code": {"type": "integer"},
                                    "spc": {"type": ["string", "null"]},
                                    "header": {"type": "object"},
                                    "claims": {"type": "object"},
                                    "index": {"type": "integer"},
                                    "failures": {"type": "array", "items": {"type": "object"}},
                                    "diverted": {"type": "boolean"},
                                    "chain": {"type": "array", "items": _REF_HOP},
                                    "chain_failure": {"type": ["object", "null"]},
                                    "rcd": {
                                        "type": ["object", "null"],
                                        "properties": {
                                            "rcd": _REF_RCD,
                                            "crn": {"type": ["string", "null"]},
                                            "rcdi": {"type": ["object", "null"]},
                                        },
                                    },
                                    "rcd_failure": {"type": ["object", "null"]},
                                    "rcd_checked": {"type": "array", "items": _STR},
                                    "call_info": {"type": "array", "items": _STR},
                                },
                            },
                        ),
                        **_API_ERRORS,
                    },
                }
            },
            "/v1/sign": {
                "post": {
                    "summary": "Sign a SHAKEN (with optional RCD), div or rcd PASSporT",
                    "security": _BEARER,
                    "parameters": [
                        _REQUEST_ID,
                        {
                            "name": "X-SPC",
                            "in": "header",
                            "required": False,
                            "description": "Choose the signing key by Service Provider Code",
                            "schema": _STR,
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["dest_tn"],
                                    "additionalProperties": False,
                                    "description": "shaken: orig_tn, dest_tn, attest; div: "
                                    "dest_tn and either original or orig_tn and div_tn; rcd: "
                                    "orig_tn, dest_tn, rcd",
                                    "properties": {
                                        "orig_tn": _STR,
                                        "dest_tn": _STR_OR_LIST,
                                        "attest": {"enum": ["A", "B", "C"]},
                                        "origid": {"type": "string", "format": "uuid"},
                                        "iat": {"type": "integer"},
                                        "x5u": {"type": "string", "format": "uri"},
                                        "ppt": _PPT,
                                        "div_tn": {
                                            **_STR,
                                            "description": "div: the number diverted from",
                                        },
                                        "original": _ORIGINAL,
                                        **_RCD_MEMBERS,
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json_body(
                            "signed",
                            {"type": "object", "properties": {"identity": _STR}},
                        ),
                        **_API_ERRORS,
                        "401": _json_body(
                            "unauthorized: a bearer token is required", _REF_API_ERROR
                        ),
                        "503": _json_body("signing-not-configured", _REF_API_ERROR),
                    },
                }
            },
            "/stir/v1/signing": {
                "post": {
                    "summary": "ATIS-1000082 signing",
                    "security": _BEARER,
                    "parameters": [
                        _REQUEST_ID,
                        {
                            "name": "X-SPC",
                            "in": "header",
                            "required": False,
                            "description": "Choose the signing key by Service Provider Code",
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["signingRequest"],
                                    "properties": {
                                        "signingRequest": {
                                            "type": "object",
                                            "description": "shaken: attest, dest, iat, orig "
                                            "(origid, rcd optional); div: dest and either "
                                            "original or orig, div, iat; rcd: dest, iat, orig, "
                                            "rcd",
                                            "required": ["dest"],
                                            "properties": {
                                                "attest": {"enum": ["A", "B", "C"]},
                                                "dest": _TN_LIST_OBJ,
                                                "iat": {"type": "integer"},
                                                "orig": _TN_OBJ,
                                                "origid": {"type": "string", "format": "uuid"},
                                                "ppt": _PPT,
                                                "div": {
                                                    **_TN_OBJ,
                                                    "description": "div: the number the call "
                                                    "is diverted from (RFC 8946)",
                                                },
                                                "original": _ORIGINAL,
                                                **_RCD_MEMBERS,
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json_body(
                            "signed",
                            {
                                "type": "object",
                                "properties": {
                                    "signingResponse": {
                                        "type": "object",
                                        "properties": {"identity": {"type": "string"}},
                                    }
                                },
                            },
                        ),
                        **_ATIS_ERRORS,
                    },
                }
            },
            "/stir/v1/verification": {
                "post": {
                    "summary": "ATIS-1000082 verification (200 for every request that parses)",
                    "parameters": [_REQUEST_ID],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "required": ["verificationRequest"],
                                    "properties": {
                                        "verificationRequest": {
                                            "type": "object",
                                            "required": ["from", "to", "time", "identity"],
                                            "properties": {
                                                "from": _TN_OBJ,
                                                "to": {
                                                    **_TN_LIST_OBJ,
                                                    "description": "the call target; a "
                                                    "diversion chain must reach it",
                                                },
                                                "time": {"type": "integer"},
                                                "identity": {
                                                    **_STR_OR_LIST,
                                                    "description": "the Identity header "
                                                    "value, or every one of the request "
                                                    "(SHAKEN, div, rcd) in any order",
                                                },
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json_body(
                            "the verification result",
                            {
                                "type": "object",
                                "properties": {
                                    "verificationResponse": {
                                        "type": "object",
                                        "required": ["verstat"],
                                        "properties": {
                                            "verstat": {
                                                "enum": [
                                                    "TN-Validation-Passed",
                                                    "TN-Validation-Failed",
                                                    "No-TN-Validation",
                                                ]
                                            },
                                            "reasoncode": {"type": "integer"},
                                            "reasontext": {"type": "string"},
                                            "reasondesc": {"type": "string"},
                                            "diverted": {
                                                "type": "boolean",
                                                "description": "valid through a chain of div "
                                                "PASSporTs (only when true)",
                                            },
                                            "chain": {
                                                "type": "array",
                                                "items": _REF_HOP,
                                                "description": "when the request carried div "
                                                "PASSporTs: the chain judged",
                                            },
                                            "rcd": {
                                                **_REF_RCD,
                                                "description": "the verified Rich Call Data",
                                            },
                                            "crn": {"type": "string"},
                                            "callinfo": {
                                                "type": "array",
                                                "items": _STR,
                                                "description": "SIP Call-Info values for the "
                                                "verified RCD (RFC 9796)",
                                            },
                                        },
                                    }
                                },
                            },
                        ),
                        **{k: v for k, v in _ATIS_ERRORS.items() if k not in ("401", "503")},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness, and whether signing and verification are configured",
                    "responses": {"200": {"description": "the service runs"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "responses": {"200": {"description": "the metrics"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
