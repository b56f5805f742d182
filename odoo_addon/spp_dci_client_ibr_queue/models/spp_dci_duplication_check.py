# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Every chunk of a batch becomes a queue job, run by any worker."""

from odoo import api, models

JOB_CHANNEL = "root.spp_dci_ibr"


def delayed(records, index, total, count):
    """``records`` whose next method call becomes the queue job of chunk ``index``."""
    return records.with_delay(
        channel=JOB_CHANNEL,
        description=records.env._(
            "IBR duplication checks, chunk %(index)s of %(total)s (%(count)s checks)",
            index=index,
            total=total,
            count=count,
        ),
    )


class SppDciDuplicationCheck(models.Model):
    _inherit = "spp.dci.duplication.check"

    def _spp_dispatch_chunks(self, chunks, total=None):
        for index, chunk in enumerate(chunks, start=1):
            delayed(self.browse(chunk), index, total or len(chunks), len(chunk))._spp_run_chunk()

    @api.model
    def _spp_submit_batch(self, checks, source, partners):
        """Existing checks go in chunks of their own; the new ones are created by the job of
        their chunk of registrants, in parallel in the workers, not in the user's request."""
        check_chunks = self._spp_chunks(checks.ids)
        partner_chunks = self._spp_chunks(partners.ids)
        total = len(check_chunks) + len(partner_chunks)
        checks.write({"queued": True, "mode": "batch"})
        checks._spp_dispatch_chunks(check_chunks, total)
        for index, chunk in enumerate(partner_chunks, start=len(check_chunks) + 1):
            delayed(self, index, total, len(chunk))._spp_check_partners(
                source, partners.browse(chunk)
            )
        return self._spp_batch_submitted(len(checks) + len(partners), total)

    @api.model
    def _cron_run_queued_checks(self, limit=None):
        """Every queued check belongs to the queue job of its chunk: the base addon's
        batch cron must not run it a second time."""
        return True
