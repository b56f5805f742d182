# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Registrants' own identifiers in plain Odoo: entered on the form or imported with their
contacts, then checked from the contacts list."""

import csv
import io

from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged
from odoo.tests.common import TransactionCase, new_test_user
from odoo.tools import mute_logger

from .common import GROUP_ADMIN, SandboxMixin, UsersMixin

CHUNK_PARAM = "spp_dci_client_ibr.batch_chunk_size"


@tagged("post_install", "-at_install")
class TestIdentifiers(SandboxMixin, UsersMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        cls.setup_sandbox()

    def check_from_the_contacts_list(self, partners):
        action = partners.with_user(self.officer).action_spp_dci_check_ibr_duplicates()
        wizard = (
            self.env["spp.dci.ibr.batch.check.wizard"]
            .with_user(self.officer)
            .with_context(**action["context"])
            .create({"data_source_id": self.data_source.id})
        )
        result = wizard.action_run()
        self.run_batch_workers()
        return result

    def test_imported_contacts_are_checked_from_the_contacts_list(self):
        """Odoo's import of a CSV of contacts with their UINs (a second identifier of a
        contact on the next line, as Odoo exports it), then one click for all of them."""
        self.env["ir.config_parameter"].sudo().set_param(CHUNK_PARAM, "2")
        (ana_uin,), (ben_uin,) = self.identifiers("active", 1), self.identifiers("unknown", 1)
        text = (
            "name,spp_dci_identifier_ids/id_type,spp_dci_identifier_ids/value\n"
            f"Ana,{ana_uin[0]},{ana_uin[1]}\n"
            ",NID,NID-ANA-1\n"
            f"Ben,,{ben_uin[1]}\n"
        )
        rows = list(csv.reader(io.StringIO(text)))
        importer = new_test_user(
            self.env,
            login="dci_importer",
            groups=f"base.group_user,base.group_partner_manager,{GROUP_ADMIN}",
        )
        result = self.env["res.partner"].with_user(importer).load(rows[0], rows[1:])
        self.assertFalse(result["messages"], result["messages"])
        ana, ben = self.env["res.partner"].browse(result["ids"])
        self.assertEqual(
            [(i.id_type, i.value) for i in ana.spp_dci_identifier_ids],
            [ana_uin, ("NID", "NID-ANA-1")],
        )
        # The type defaults to UIN.
        self.assertEqual([(i.id_type, i.value) for i in ben.spp_dci_identifier_ids], [ben_uin])

        result = self.check_from_the_contacts_list(ana | ben)
        self.assertNotIn("without identifier", result["params"]["message"])
        checks = self.env["spp.dci.duplication.check"].search(
            [("partner_id", "in", (ana | ben).ids)]
        )
        self.assertEqual(len(checks), 2)
        by_partner = {check.partner_id: check for check in checks}
        self.assertEqual(by_partner[ana].state, "completed", by_partner[ana].error_message)
        self.assertEqual(by_partner[ana].result, "confirmed_match")
        self.assertEqual(by_partner[ana].detail_ids.mapped("id_value"), [ana_uin[1], "NID-ANA-1"])
        self.assertEqual((by_partner[ben].state, by_partner[ben].result), ("completed", "no_match"))

    def test_a_single_check_uses_the_contacts_identifiers(self):
        active = self.identifier("active")
        partner = self.new_partner(active)
        check = self.env["spp.dci.duplication.check"].create(
            {"partner_id": partner.id, "data_source_id": self.data_source.id}
        )
        check.with_user(self.officer).action_run_check()
        self.assertEqual((check.state, check.result), ("completed", "confirmed_match"))
        self.assertEqual(check.identifier_type, active[0])
        self.assertEqual(check.sudo().identifier_value, active[1])

    def test_values_are_trimmed_and_not_repeated(self):
        partner = self.new_partner((" UIN ", " U-1 "))
        self.assertEqual(
            [(i.id_type, i.value) for i in partner.spp_dci_identifier_ids], [("UIN", "U-1")]
        )
        with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError), self.env.cr.savepoint():
            partner.write({"spp_dci_identifier_ids": [(0, 0, {"id_type": "UIN", "value": "U-1"})]})
        with self.assertRaises(ValidationError):
            partner.write({"spp_dci_identifier_ids": [(0, 0, {"id_type": "UIN", "value": "  "})]})

    def test_identifier_values_are_for_dci_administrators_only(self):
        partner = self.new_partner(("UIN", "U-PII"))
        for user in (self.viewer, self.officer, self.manager):
            with self.subTest(user=user.login):
                fields = self.env["res.partner"].with_user(user).fields_get()
                self.assertNotIn("spp_dci_identifier_ids", fields)
                with self.assertRaises(AccessError):
                    partner.spp_dci_identifier_ids.with_user(user).read(["value"])
                arch = (
                    self.env["res.partner"]
                    .with_user(user)
                    .get_views([(False, "form")])["views"]["form"]["arch"]
                )
                self.assertNotIn("spp_dci_identifier_ids", arch)
        admin = partner.with_user(self.dci_admin)
        self.assertEqual(admin.spp_dci_identifier_ids.value, "U-PII")
        arch = admin.get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn("spp_dci_identifier_ids", arch)
