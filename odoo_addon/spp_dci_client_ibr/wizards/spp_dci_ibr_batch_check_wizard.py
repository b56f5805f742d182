# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Contacts list action "Check IBR duplicates": one check per contact, run in chunks."""

from odoo import api, fields, models

from ..models.spp_dci_data_source import ibr_source_domain


class SppDciIbrBatchCheckWizard(models.TransientModel):
    _name = "spp.dci.ibr.batch.check.wizard"
    _description = "Check IBR Duplicates"

    # OpenSPP's bridge redefines the comodel as spp.dci.data.source, like the checks'.
    data_source_id = fields.Many2one(
        "spp.dci.ibr.data.source",
        required=True,
        domain=ibr_source_domain,
        default=lambda self: self._default_data_source(),
    )
    partner_ids = fields.Many2many("res.partner", string="Registrants")
    partner_count = fields.Integer(compute="_compute_partner_count")

    @api.model
    def _default_data_source(self):
        return self.env[self._fields["data_source_id"].comodel_name]._spp_default_ibr_source()

    @api.depends("partner_ids")
    def _compute_partner_count(self):
        for wizard in self:
            wizard.partner_count = len(wizard.partner_ids)

    def action_run(self):
        """Check every registrant that has an identifier: its check that never ran (on this
        data source, or on none yet) when it has one, else a new one; submit the batch."""
        self.ensure_one()
        checks_model = self.env["spp.dci.duplication.check"]
        checks_model.check_access("create")
        waiting = checks_model.search(
            [
                ("partner_id", "in", self.partner_ids.ids),
                ("state", "=", "ready"),
                ("queued", "=", False),
                ("data_source_id", "in", (False, self.data_source_id.id)),
            ],
            order="id",
        )
        waiting_by_partner = {}
        for check in waiting:
            waiting_by_partner.setdefault(check.partner_id.id, check.id)
        identified = self.partner_ids._spp_dci_ibr_pairs_by_partner(fallback=True)
        reused_ids, new_ids, skipped = [], [], 0
        for partner_id, pairs in identified.items():
            if not pairs:
                skipped += 1
            elif partner_id in waiting_by_partner:
                reused_ids.append(waiting_by_partner[partner_id])
            else:
                new_ids.append(partner_id)
        reused = checks_model.browse(reused_ids)
        reused.filtered(lambda check: not check.data_source_id).data_source_id = self.data_source_id
        action = checks_model._spp_submit_batch(
            reused, self.data_source_id, self.env["res.partner"].browse(new_ids)
        )
        if skipped:
            action["params"]["message"] += " " + self.env._(
                "%(count)s registrant(s) without identifier skipped.", count=skipped
            )
        action["params"]["next"] = {"type": "ir.actions.act_window_close"}
        return action
