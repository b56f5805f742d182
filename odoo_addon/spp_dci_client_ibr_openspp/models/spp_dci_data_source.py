# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Our IBR fields and methods on OpenSPP's ``spp.dci.data.source``.

OpenSPP's definition wins for every field it defines: nothing of theirs is redefined except
one additive selection value and the help text of ``our_callback_uri`` (where our endpoint
takes callbacks). Their ``test_connection``/``action_test_connection`` (a GET of
``/health``), ``get_oauth2_token``, ``get_headers`` and token cache stay theirs; our IBR test
is ``action_spp_test_ibr_connection`` and our native client keeps its tokens in memory."""

from odoo import fields, models

from odoo.addons.spp_dci_client_ibr.models.spp_dci_data_source import CALLBACK_URI_HELP


class SppDciDataSource(models.Model):
    _name = "spp.dci.data.source"
    _inherit = ("spp.dci.data.source", "spp.dci.ibr.data.source.mixin")

    # Additive: RFC 6749 §2.3.1 client_secret_basic, which our client speaks.
    oauth2_credential_location = fields.Selection(
        selection_add=[("basic", "HTTP Basic (RFC 6749 §2.3.1)")],
        ondelete={"basic": "set default"},
    )
    our_callback_uri = fields.Char(help=CALLBACK_URI_HELP)
