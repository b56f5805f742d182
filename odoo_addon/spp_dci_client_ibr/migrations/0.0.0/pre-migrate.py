# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Runs before every update of spp_dci_client_ibr (0.0.0: whatever the versions).

* Refuses an update of an OpenSPP database without the bridge (see ``hooks.py``).
* Recognises the switch from OpenSPP's own spp_dci_client_ibr (its check table has no
  ``transaction_id`` yet) and says how many of its checks are legacy: their ``no_match``
  came from a client that read a failed search as "no duplicate"; re-run them."""

import logging

from odoo import SUPERUSER_ID, api

from odoo.addons.spp_dci_client_ibr.hooks import refuse_openspp_without_bridge

_logger = logging.getLogger(__name__)


def migrate(cr, version):
    if not version:
        return
    refuse_openspp_without_bridge(api.Environment(cr, SUPERUSER_ID, {}))
    cr.execute(
        """SELECT 1 FROM information_schema.columns
            WHERE table_name = 'spp_dci_duplication_check' AND column_name = 'transaction_id'"""
    )
    if cr.fetchone():
        return
    cr.execute("SELECT to_regclass('spp_dci_duplication_check')")
    if not cr.fetchone()[0]:
        return
    cr.execute(
        "SELECT count(*), count(*) FILTER (WHERE result = 'no_match') FROM spp_dci_duplication_check"
    )
    total, no_match = cr.fetchone()
    _logger.warning(
        "spp_dci_client_ibr: switching from OpenSPP's own spp_dci_client_ibr (version %s). "
        "%s existing check(s) are kept as legacy checks (no transaction id); %s of them say "
        "no_match, which OpenSPP's client also reported when the registry could not be "
        "asked: re-run them.",
        version,
        total,
        no_match,
    )
