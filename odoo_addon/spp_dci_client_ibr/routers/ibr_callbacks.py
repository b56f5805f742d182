# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The DCI callback routes (PROTOCOL §8), built by the Python package."""

from spp_dci_ibr.callbacks import build_callback_router

from ..dependencies import OdooReplayStore, odoo_key_lookup, odoo_sink

CALLBACK_PREFIX = "/registry"
MAX_BODY_BYTES = 1 << 20
MAX_SKEW_SECONDS = 60
MAX_LIFETIME_SECONDS = 3600


def make_callback_router():
    """``{root}/registry/on-search``, ``/on-subscribe``, ``/on-unsubscribe``, ``/notify``,
    ``/txn/on-status``, and ``{root}/registry/callback``, which takes every callback action
    (for a registry that posts all callbacks to the one ``sender_uri`` it was given), backed
    by this database. Other methods and paths under ``{root}/registry`` get the contract's
    error body (404/405), never a redirect."""
    return build_callback_router(
        key_lookup=odoo_key_lookup,
        replay_store=OdooReplayStore(),
        sink=odoo_sink,
        prefix=CALLBACK_PREFIX,
        max_body_bytes=MAX_BODY_BYTES,
        max_skew=MAX_SKEW_SECONDS,
        max_lifetime=MAX_LIFETIME_SECONDS,
    )
