# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Registrants: where identifiers come from, the smart button and the batch action."""

from odoo import api, fields, models

from .spp_dci_duplication_check import RESULTS

VIEWER_GROUP = "spp_dci_client_ibr.group_dci_viewer"
# Identifier values are personal data: the same group reads them on checks.
IDENTIFIER_GROUP = "spp_dci_client_ibr.group_dci_admin"


class ResPartner(models.Model):
    _inherit = "res.partner"

    spp_dci_identifier_ids = fields.One2many(
        "spp.dci.partner.identifier",
        "partner_id",
        string="IBR Identifiers",
        groups=IDENTIFIER_GROUP,
        help="Identifiers sent to the registry when this registrant is checked",
    )
    spp_dci_check_ids = fields.One2many(
        "spp.dci.duplication.check",
        "partner_id",
        string="IBR Duplication Checks",
        groups=VIEWER_GROUP,
    )
    spp_dci_check_count = fields.Integer(
        string="IBR Checks", compute="_compute_spp_dci_checks", groups=VIEWER_GROUP
    )
    spp_dci_last_result = fields.Selection(
        RESULTS,
        string="Last IBR Result",
        compute="_compute_spp_dci_checks",
        groups=VIEWER_GROUP,
    )

    @api.depends("spp_dci_check_ids.state", "spp_dci_check_ids.result")
    def _compute_spp_dci_checks(self):
        """Two grouped queries for all these partners, whichever their number: the count,
        and per (partner, result) the latest completion (the newest one wins)."""
        checks = self.env["spp.dci.duplication.check"]
        partner_ids = self.ids
        counts = dict(
            checks._read_group([("partner_id", "in", partner_ids)], ["partner_id"], ["__count"])
        )
        latest = {}
        for partner, result, completed_at, last_id in checks._read_group(
            [("partner_id", "in", partner_ids), ("state", "=", "completed")],
            ["partner_id", "result"],
            ["completed_at:max", "id:max"],
        ):
            rank = (completed_at or fields.Datetime.from_string("1970-01-01"), last_id)
            if partner not in latest or rank > latest[partner][0]:
                latest[partner] = (rank, result)
        for partner in self:
            partner.spp_dci_check_count = counts.get(partner, 0)
            partner.spp_dci_last_result = latest[partner][1] if partner in latest else False

    def _spp_dci_ibr_reg_id_pairs(self):
        """(type, value) pairs from OpenSPP's ``reg_ids`` when that field exists."""
        self.ensure_one()
        pairs = []
        for reg_id in self.reg_ids:
            id_type = False
            for name in ("id_type_id", "id_type"):
                if name in reg_id._fields:
                    id_type = reg_id[name]
                    break
            code = getattr(id_type, "code", False) or getattr(id_type, "name", False)
            if isinstance(id_type, str):
                code = id_type
            value = reg_id.value if "value" in reg_id._fields else False
            if code and value:
                pairs.append((str(code).strip(), str(value).strip()))
        return pairs

    def _spp_dci_ibr_pairs_by_partner(self, fallback=False):
        """``{partner id: [(type, value), ...]}`` for these registrants, in a few queries
        whatever their number: OpenSPP's ``reg_ids`` when present, then this addon's
        identifiers, without repeats; with ``fallback``, a registrant without any gets the
        identifier of its latest check. Read with sudo: identifier values are personal data
        the user may run a check on without reading them."""
        partners = self.sudo()
        with_reg_ids = "reg_ids" in partners._fields
        pairs = {
            partner.id: partner._spp_dci_ibr_reg_id_pairs() if with_reg_ids else []
            for partner in partners
        }
        for line in (
            self.env["spp.dci.partner.identifier"]
            .sudo()
            .search_fetch([("partner_id", "in", self.ids)], ["partner_id", "id_type", "value"])
        ):
            pairs[line.partner_id.id].append((line.id_type, line.value))
        pairs = {partner_id: list(dict.fromkeys(found)) for partner_id, found in pairs.items()}
        missing = [partner_id for partner_id, found in pairs.items() if not found]
        if fallback and missing:
            for check in (
                self.env["spp.dci.duplication.check"]
                .sudo()
                .search_fetch(
                    [
                        ("partner_id", "in", missing),
                        ("identifier_type", "!=", False),
                        ("identifier_value", "!=", False),
                    ],
                    ["partner_id", "identifier_type", "identifier_value"],
                    order="check_date desc, id desc",
                )
            ):
                if not pairs[check.partner_id.id]:
                    pairs[check.partner_id.id] = [(check.identifier_type, check.identifier_value)]
        return pairs

    def _spp_dci_ibr_partner_pairs(self):
        """The registrant's own (type, value) pairs (see ``_spp_dci_ibr_pairs_by_partner``)."""
        self.ensure_one()
        return self._spp_dci_ibr_pairs_by_partner()[self.id]

    def _spp_dci_ibr_identifiers(self):
        """Identifiers of this registrant: its own, else those of its latest check."""
        self.ensure_one()
        return self._spp_dci_ibr_pairs_by_partner(fallback=True)[self.id]

    @api.model
    def _spp_dci_archive_user_partners(self, user_ids):
        """Archive the contacts of technical users (the callback endpoint's): they are not
        people and must not be picked as registrants. Odoo refuses to archive the contact of
        an active user through ``write``; the user stays active (it runs the endpoint)."""
        partners = self.env["res.users"].browse(user_ids).partner_id
        if partners:
            self.env.cr.execute(
                "UPDATE res_partner SET active = FALSE WHERE id = ANY(%s)", [partners.ids]
            )
            partners.invalidate_recordset(["active"])
        return True

    def action_spp_dci_view_checks(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "spp_dci_client_ibr.action_spp_dci_duplication_check"
        )
        action["domain"] = [("partner_id", "=", self.id)]
        action["context"] = {"default_partner_id": self.id}
        return action

    def action_spp_dci_check_ibr_duplicates(self):
        """List action "Check IBR duplicates": opens the batch wizard on these contacts."""
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "spp_dci_client_ibr.action_spp_dci_ibr_batch_check_wizard"
        )
        action["context"] = {"default_partner_ids": [(6, 0, self.ids)]}
        return action
