# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Every chunk of a batch becomes a queue job, run by any worker."""

from odoo import api, models

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

    @api.model
    def _cron_run_queued_checks(self, limit=None):
        """Every queued check belongs to the queue job of its chunk: the batch cron of the
        base addon must not run it a second time."""
        return True
