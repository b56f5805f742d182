# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Identifiers of a registrant (type and value) in plain Odoo, where a contact has none.

OpenSPP keeps its own on ``res.partner.reg_ids``; both are read when both are present
(``res.partner._spp_dci_ibr_identifiers``). This model has a name of its own, so that it
never replaces one of OpenSPP's.
"""

from odoo import api, fields, models
from odoo.exceptions import ValidationError

DEFAULT_ID_TYPE = "UIN"


class SppDciPartnerIdentifier(models.Model):
    _name = "spp.dci.partner.identifier"
    _description = "Registrant Identifier (DCI)"
    _order = "partner_id, sequence, id"
    _rec_name = "id_type"

    partner_id = fields.Many2one(
        "res.partner", string="Registrant", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    id_type = fields.Char(
        string="Identifier Type",
        required=True,
        default=DEFAULT_ID_TYPE,
        help="As the registry names it, e.g. UIN, BRN, MRN, DRN, NID",
    )
    value = fields.Char(string="Identifier Value", required=True)

    _partner_type_value_uniq = models.Constraint(
        "UNIQUE(partner_id, id_type, value)", "This registrant already has this identifier."
    )

    @api.constrains("id_type", "value")
    def _check_not_blank(self):
        for identifier in self:
            if not (identifier.id_type or "").strip() or not (identifier.value or "").strip():
                raise ValidationError(
                    self.env._("An identifier needs a type and a value that are not blank.")
                )

    @api.model_create_multi
    def create(self, vals_list):
        vals_list = [self._strip(vals) for vals in vals_list]
        for vals in vals_list:
            # An import column of types left empty means the default type, as no column does.
            if not vals.get("id_type", DEFAULT_ID_TYPE):
                vals["id_type"] = DEFAULT_ID_TYPE
        return super().create(vals_list)

    def write(self, vals):
        return super().write(self._strip(vals))

    @api.model
    def _strip(self, vals):
        """Values as imported from a spreadsheet often carry spaces around them."""
        return {
            key: value.strip() if key in ("id_type", "value") and isinstance(value, str) else value
            for key, value in vals.items()
        }
