"""pytest plugin: an embedded, protocol-faithful IBR registry for integration tests.

Installed with the package (entry point ``pytest11``), so a project's test suite can check its
IBR integration with no network and no fake of its own. Loading the plugin imports nothing of
the sandbox and starts nothing: a registry starts only for a test that asks for a fixture.

Fixtures (function-scoped: each test gets a fresh registry, so tests cannot leak state):

``ibr_sandbox``
    A running :class:`spp_dci_ibr.sandbox.IBRSandbox` on 127.0.0.1 (synthetic beneficiaries,
    OAuth2, JWKS, signed answers; bearer tokens and signatures required).
``dci_signing_key``
    A fresh Ed25519 :class:`~spp_dci_ibr.SigningKey` for the client.
``dci_client``
    A :class:`~spp_dci_ibr.DCIClient` for the sandbox: OAuth2 with the sandbox's credentials,
    requests signed with ``dci_signing_key`` (registered with the sandbox as
    ``DCI_CLIENT_SENDER_ID``/``DCI_CLIENT_KEY_ID``), answers verified against its JWKS.
``ibr_service``
    An :class:`~spp_dci_ibr.IBRService` over ``dci_client``.

Configuration, the innermost winning:

- the marker ``@pytest.mark.ibr_sandbox(**options)`` on a test, class or module: keyword arguments
  of ``IBRSandbox`` (``synthetic``, ``seed``, ``records``, ``records_file``, ``faults``,
  ``require_signatures``, ``require_auth``, ``prefix``, …);
- ``--ibr-sandbox-seed N`` and ``--ibr-sandbox-synthetic N`` on the command line;
- ``ibr_sandbox_seed`` and ``ibr_sandbox_synthetic`` in the ini file.

Example::

    @pytest.mark.ibr_sandbox(synthetic=50, seed=7)
    def test_enrolled_person_is_a_duplicate(ibr_sandbox, ibr_service):
        [uin] = ibr_sandbox.sample_identifiers("active", 1)
        assert ibr_service.check_duplication([uin]).result == "confirmed_match"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._native import DCIClient, IBRService, SigningKey
    from .sandbox import IBRSandbox

__all__ = [
    "DCI_CLIENT_KEY_ID",
    "DCI_CLIENT_SENDER_ID",
    "dci_client",
    "dci_signing_key",
    "ibr_sandbox",
    "ibr_service",
]

#: The sender id and key id of ``dci_client``.
DCI_CLIENT_SENDER_ID = "pytest.client"
DCI_CLIENT_KEY_ID = "pytest-key"

_MARKER = "ibr_sandbox"
_INT_OPTIONS = ("seed", "synthetic")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Registers ``--ibr-sandbox-seed``/``--ibr-sandbox-synthetic`` and their ini keys."""
    group = parser.getgroup("spp-dci-ibr", "spp-dci-ibr embedded IBR sandbox")
    group.addoption(
        "--ibr-sandbox-seed",
        dest="ibr_sandbox_seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the ibr_sandbox fixture's synthetic data and faults (default 0)",
    )
    group.addoption(
        "--ibr-sandbox-synthetic",
        dest="ibr_sandbox_synthetic",
        type=int,
        default=None,
        metavar="N",
        help="synthetic beneficiaries of the ibr_sandbox fixture (default 100)",
    )
    parser.addini("ibr_sandbox_seed", "seed of the ibr_sandbox fixture", default=None)
    parser.addini(
        "ibr_sandbox_synthetic", "synthetic beneficiaries of the ibr_sandbox fixture", default=None
    )


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``ibr_sandbox`` marker."""
    config.addinivalue_line(
        "markers",
        "ibr_sandbox(**options): keyword arguments of the IBRSandbox behind the ibr_sandbox "
        "fixture (synthetic, seed, records, records_file, faults, require_signatures, …)",
    )


def _sandbox_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """IBRSandbox keyword arguments: ini < command line < markers (outer < inner)."""
    config = request.config
    options: dict[str, Any] = {}
    for name in _INT_OPTIONS:
        raw = config.getini(f"ibr_sandbox_{name}")
        if raw not in (None, ""):
            try:
                options[name] = int(str(raw))
            except ValueError:
                raise pytest.UsageError(
                    f"ini option ibr_sandbox_{name} must be a whole number, not {raw!r}"
                ) from None
        value = config.getoption(f"ibr_sandbox_{name}", default=None)
        if value is not None:
            options[name] = value
    # iter_markers yields the closest first: apply outer ones first so inner ones win.
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise pytest.UsageError(
                "@pytest.mark.ibr_sandbox takes keyword arguments only "
                "(e.g. synthetic=50, seed=1, faults={...})"
            )
        options.update(marker.kwargs)
    return options


@pytest.fixture
def ibr_sandbox(request: pytest.FixtureRequest) -> Iterator[IBRSandbox]:
    """A running ``spp_dci_ibr.sandbox.IBRSandbox``, stopped after the test."""
    from .sandbox import IBRSandbox

    with IBRSandbox(**_sandbox_options(request)) as sandbox:
        yield sandbox


@pytest.fixture
def dci_signing_key() -> SigningKey:
    """A fresh Ed25519 signing key for ``dci_client``."""
    from ._native import SigningKey

    return SigningKey.generate("ed25519")


@pytest.fixture
def dci_client(ibr_sandbox: IBRSandbox, dci_signing_key: SigningKey) -> DCIClient:
    """A ``DCIClient`` for ``ibr_sandbox``: OAuth2, signed with ``dci_signing_key``, answers
    verified against the sandbox's JWKS."""
    # IBRSandbox.client registers the key's public JWK under this sender id and key id.
    client: DCIClient = ibr_sandbox.client(
        sender_id=DCI_CLIENT_SENDER_ID,
        signing_key=dci_signing_key,
        key_id=DCI_CLIENT_KEY_ID,
    )
    return client


@pytest.fixture
def ibr_service(dci_client: DCIClient) -> IBRService:
    """An ``IBRService`` over ``dci_client``."""
    from ._native import IBRService

    return IBRService(dci_client)
