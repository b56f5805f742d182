# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Every chunk of a batch becomes a queue job, run by any worker."""

from odoo import models

JOB_CHANNEL = "root.spp_dci_ibr"


class SppDciDuplicationCheck(models.Model):
    _inherit = "spp.dci.duplication.check"

    def _spp_dispatch_chunks(self, chunks):
        for index, chunk in enumerate(chunks, start=1):
            self.browse(chunk).with_delay(
                channel=JOB_CHANNEL,
                description=self.env._(
                    "IBR duplication checks, chunk %(index)s of %(total)s (%(count)s checks)",
                    index=index,
                    total=len(chunks),
                    count=len(chunk),
                ),
            )._spp_run_chunk()
