# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The batch wizard picks among OpenSPP's data sources, like the checks."""

from odoo import fields, models


class SppDciIbrBatchCheckWizard(models.TransientModel):
    _inherit = "spp.dci.ibr.batch.check.wizard"

    data_source_id = fields.Many2one("spp.dci.data.source")
