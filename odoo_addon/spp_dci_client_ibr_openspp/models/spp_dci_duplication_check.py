# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Checks and the batch wizard point to OpenSPP's data sources. Odoo keeps one foreign key
per column and the last definition wins, so the column's foreign key moves to OpenSPP's
table; the domain (IBR sources, by the installed selection's IBR key) stays ours."""

from odoo import fields, models


class SppDciDuplicationCheck(models.Model):
    _inherit = "spp.dci.duplication.check"

    data_source_id = fields.Many2one("spp.dci.data.source")
