# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Our sender id, kid and JWKS on OpenSPP's ``spp.dci.signing.key``. OpenSPP's key
lifecycle (generate, activate, revoke), its ``get_jwks_entry`` (kid from the
``dci.sender_id`` parameter) and ``get_signer`` stay theirs: nothing is overridden."""

import json

from odoo import api, fields, models


class SppDciSigningKey(models.Model):
    _name = "spp.dci.signing.key"
    _inherit = ("spp.dci.signing.key", "spp.dci.ibr.signing.key.mixin")

    public_jwk = fields.Text(
        string="Public JWK",
        compute="_compute_spp_public_jwk",
        help="The public key as a JWK, as served on /dci_ibr/.well-known/jwks.json",
    )

    @api.depends("public_key", "sender_id", "key_id", "algorithm")
    def _compute_spp_public_jwk(self):
        for key in self:
            jwk = key._public_jwk_for(key.sender_id)
            key.public_jwk = json.dumps(jwk, sort_keys=True) if jwk else False
