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
                }
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
                                            "required": ["attest", "dest", "iat", "orig"],
                                            "properties": {
                                                "attest": {"enum": ["A", "B", "C"]},
                                                "dest": _TN_LIST_OBJ,
                                                "iat": {"type": "integer"},
                                                "orig": _TN_OBJ,
                                                "origid": {"type": "string", "format": "uuid"},
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
                                                "to": _TN_LIST_OBJ,
                                                "time": {"type": "integer"},
                                                "identity": {"type": "string"},
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
