# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""What the Odoo-free callback router of ``spp_dci_ibr`` is given inside Odoo.

The router (``spp_dci_ibr.callbacks.build_callback_router``) does every envelope,
signature, replay and size check of PROTOCOL §8 (natively, before any of these is
called) and answers the ACK; these three callables connect it to the database of the
request being served:

* ``key_lookup``: the registry's keys from ``spp.dci.ibr.sender`` (called once per
  callback, only for one that passed every check needing no key; it fetches nothing);
* ``replay_store``: the unique (sender_id, message_id) of ``spp.dci.callback.replay``,
  shared by all workers;
* ``sink``: files the verified callback (``spp.dci.callback.log``).

They run with the environment of the endpoint's dedicated user, set by the OCA
``fastapi`` dispatcher, never with sudo.
"""

from odoo.api import Environment

from odoo.addons.fastapi.context import odoo_env_ctx


def callback_env() -> Environment:
    """The Odoo environment of the request being served (the endpoint's user)."""
    return odoo_env_ctx.get()


def odoo_key_lookup(sender_id, kid):
    """Keys of ``sender_id`` (None when it is unknown or inactive)."""
    return callback_env()["spp.dci.ibr.sender"]._spp_key_lookup(sender_id, kid)


class OdooReplayStore:
    """Replay guard backed by the database."""

    def remember(self, sender_id, message_id, expires):
        return callback_env()["spp.dci.callback.replay"].remember(sender_id, message_id, expires)


def odoo_sink(event):
    """File a verified callback; may raise ``CallbackRejected``."""
    callback_env()["spp.dci.callback.log"]._spp_sink(event)
