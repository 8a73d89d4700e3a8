"""secsipid: STIR/SHAKEN secure SIP identity for Python.

Sign and verify SHAKEN PASSporTs (RFC 8225, RFC 8588) and SIP Identity headers (RFC 8224),
diverted calls (div PASSporT chains, RFC 8946) and Rich Call Data (RFC 9795).

>>> import secsipid
>>> value = secsipid.add_identity("12155550121", "12155550131", "A", "",
...                               "https://cert.example.org/sti.pem", "key.pem")  # doctest: +SKIP
>>> verdict = secsipid.check_identity(value, "cert.pem")                        # doctest: +SKIP
>>> verdict.ok, verdict.reason, verdict.sip_status, verdict.verstat              # doctest: +SKIP
(True, 'valid', 0, 'TN-Validation-Passed')
"""

from ._api import add_identity, check_identity, set_default_source
from ._codec import b64url_decode, b64url_encode, canonical_json
from ._div import ChainHop
from ._errors import KeyLoadError, SecSIPIDError, SigningError, VerificationError
from ._fetch import Fetcher, FetchPolicy, FetchResult
from ._identity import IdentityHeader, build_identity, parse_identity, split_identity_values
from ._keys import (
    Credential,
    credential_from_file,
    load_credential,
    load_private_key,
    private_key_from_file,
)
from ._passport import DecodedPassport, decode_token
from ._rcd import RichCallData, rcd_digest
from ._reasons import Reason
from ._shared import RedisCache
from ._signer import Signer, new_origid
from ._source import CacheConfig, CertificateSource, MemoryCache, shared_memory_cache
from ._tn import canonical_tn, canonical_uri
from ._tnauthlist import TNAuthList, TNRange
from ._trust import TrustPolicy, TrustValidator
from ._verifier import (
    CredentialFile,
    CredentialSource,
    Failure,
    StaticCredential,
    Verdict,
    VerifiedPassport,
    Verifier,
    VerifyPolicy,
)

__version__ = "0.1.0"

__all__ = [
    "CacheConfig",
    "CertificateSource",
    "ChainHop",
    "Credential",
    "CredentialFile",
    "CredentialSource",
    "DecodedPassport",
    "Failure",
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "IdentityHeader",
    "KeyLoadError",
    "MemoryCache",
    "Reason",
    "RedisCache",
    "RichCallData",
    "SecSIPIDError",
    "Signer",
    "SigningError",
    "StaticCredential",
    "TNAuthList",
    "TNRange",
    "TrustPolicy",
    "TrustValidator",
    "Verdict",
    "VerificationError",
    "VerifiedPassport",
    "Verifier",
    "VerifyPolicy",
    "__version__",
    "add_identity",
    "b64url_decode",
    "b64url_encode",
    "build_identity",
    "canonical_json",
    "canonical_tn",
    "canonical_uri",
    "check_identity",
    "credential_from_file",
    "decode_token",
    "load_credential",
    "load_private_key",
    "new_origid",
    "parse_identity",
    "private_key_from_file",
    "rcd_digest",
    "set_default_source",
    "shared_memory_cache",
    "split_identity_values",
]
