# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The loud failures of an install next to OpenSPP (issue 12): OpenSPP's base without the
bridge, our code on another module's check table, and a shadowed spp_dci_client_ibr.
The full install paths run in tests/odoo_standin/lifecycle.sh."""

import os
import tempfile

from odoo.exceptions import UserError
from odoo.tests import TransactionCase, tagged

from ..hooks import (
    SWITCH_COMMAND,
    openspp_without_bridge,
    outdated_schema_message,
    refuse_openspp_without_bridge,
    rename_own_models,
    shadowed_copies,
)


@tagged("post_install", "-at_install")
class TestInstallGuards(TransactionCase):
    def set_state(self, module, state):
        modules = self.env["ir.module.module"]
        record = modules.search([("name", "=", module)]) or modules.create({"name": module})
        record.state = state
        self.env.flush_all()

    def test_openspp_base_without_the_bridge_is_refused(self):
        cr = self.env.cr
        if self.env["ir.module.module"].search([("name", "=", "spp_dci_client")]).state != (
            "installed"
        ):
            self.assertFalse(openspp_without_bridge(cr))  # plain Odoo: nothing to refuse
            refuse_openspp_without_bridge(self.env)
        self.set_state("spp_dci_client", "installed")
        for state in ("installed", "to install", "to upgrade"):
            self.set_state("spp_dci_client_ibr_openspp", state)
            self.assertFalse(openspp_without_bridge(cr), state)
        for state in ("uninstalled", "uninstallable", "to remove"):
            self.set_state("spp_dci_client_ibr_openspp", state)
            self.assertTrue(openspp_without_bridge(cr), state)
            with self.assertRaisesRegex(UserError, "neither installed nor being installed"):
                refuse_openspp_without_bridge(self.env)
        self.env.flush_all()
        # Its directory gone, a module keeps its row and Odoo still marks it "to install".
        self.set_state("spp_dci_client_ibr_openspp", "to install")
        self.assertFalse(openspp_without_bridge(cr, bridge_found=True))
        self.assertTrue(openspp_without_bridge(cr, bridge_found=False))
        cr.execute("DELETE FROM ir_module_module WHERE name = 'spp_dci_client_ibr_openspp'")
        with self.assertRaises(UserError) as caught:
            refuse_openspp_without_bridge(self.env)
        self.assertIn(SWITCH_COMMAND, str(caught.exception))

    def test_a_check_table_of_another_module_is_reported(self):
        self.assertIsNone(outdated_schema_message(self.env.cr))
        self.env.flush_all()
        self.env.cr.execute(
            "ALTER TABLE spp_dci_duplication_check RENAME COLUMN transaction_id TO legacy_txn"
        )
        message = outdated_schema_message(self.env.cr)
        self.assertIn(SWITCH_COMMAND, message)
        with self.assertLogs("odoo.addons.spp_dci_client_ibr", "CRITICAL"):
            self.env["spp.dci.duplication.check"]._register_hook()

    def test_a_shadowed_module_is_found(self):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            self.assertEqual(shadowed_copies([first, second]), [])
            for path in (first, second):
                os.makedirs(os.path.join(path, "spp_dci_client_ibr"))
                with open(os.path.join(path, "spp_dci_client_ibr", "__manifest__.py"), "w") as f:
                    f.write("{}")
            self.assertEqual(
                shadowed_copies([first, second]), [os.path.join(second, "spp_dci_client_ibr")]
            )

    def test_the_model_rename_leaves_a_current_database_alone(self):
        """The 19.0.2.1.0 rename only touches models spp_dci_client_ibr alone declared under
        OpenSPP's names (0.1.0); here (ours renamed, or OpenSPP's) it changes nothing."""
        models = self.env["ir.model"].search([("model", "like", "spp.dci.%")])
        before = sorted(models.mapped("model"))
        rename_own_models(self.env.cr)
        self.env.invalidate_all()
        self.assertEqual(sorted(models.mapped("model")), before)
