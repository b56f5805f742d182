# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Our checks on OpenSPP's models (issue 12): with OpenSPP's base installed, the bridge is
installed with our addon, our checks use OpenSPP's data sources and keys, and a check runs
end to end against the sandbox on a stand-in data source signed with a stand-in key."""

from odoo.exceptions import UserError
from odoo.tests import TransactionCase, tagged

from odoo.addons.spp_dci.schemas.constants import RegistryType
from odoo.addons.spp_dci_client_ibr import services
from odoo.addons.spp_dci_client_ibr.hooks import openspp_without_bridge
from odoo.addons.spp_dci_client_ibr.tests.common import (
    OUR_SENDER_ID,
    SandboxMixin,
    UsersMixin,
)


@tagged("post_install", "-at_install")
class TestIbrOnOpenSPP(SandboxMixin, UsersMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].sudo().set_param("dci.sender_id", "openspp.example.org")
        cls.setup_users()
        cls.setup_sandbox()  # key and data source through tests/common.py's helpers

    def test_bridge_installed_with_our_addon(self):
        bridge = self.env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr_openspp")])
        self.assertEqual(bridge.state, "installed")
        self.assertFalse(openspp_without_bridge(self.env.cr))

    def test_checks_use_openspps_models(self):
        check_field = self.env["spp.dci.duplication.check"]._fields["data_source_id"]
        self.assertEqual(check_field.comodel_name, "spp.dci.data.source")
        wizard_field = self.env["spp.dci.ibr.batch.check.wizard"]._fields["data_source_id"]
        self.assertEqual(wizard_field.comodel_name, "spp.dci.data.source")
        self.assertEqual(self.data_source._name, "spp.dci.data.source")
        self.assertEqual(self.signing_key._name, "spp.dci.signing.key")
        self.assertEqual(self.data_source.registry_type, RegistryType.IBR.value)
        Source = self.env["spp.dci.data.source"]
        self.assertEqual(Source._spp_ibr_registry_types(), [RegistryType.IBR.value])
        self.assertEqual(Source._spp_default_ibr_source(), self.data_source)
        # The stand-in key was made by its own lifecycle, not ours.
        self.assertTrue(self.signing_key.created_date)
        self.assertEqual(self.signing_key.kid, f"{OUR_SENDER_ID}|test-key|ed25519")

    def test_their_jwks_entry_keeps_their_kid(self):
        entry = self.signing_key.get_jwks_entry()
        self.assertEqual(entry["kid"], "openspp.example.org|test-key|ed25519")
        ours = self.env["spp.dci.signing.key"]._spp_public_jwks()["keys"]
        self.assertIn(f"{OUR_SENDER_ID}|test-key|ed25519", [jwk["kid"] for jwk in ours])
        self.assertEqual({jwk["x"] for jwk in ours}, {entry["x"]})

    def test_check_end_to_end_through_action_run_check(self):
        for status, result in (("active", "confirmed_match"), ("unknown", "no_match")):
            check = self.new_check(self.identifier(status))
            check.with_user(self.officer).action_run_check()
            self.assertEqual(
                (check.state, check.result), ("completed", result), check.error_message
            )
            self.assertTrue(check.transaction_id)

    def test_check_end_to_end_through_openspps_service(self):
        partner = self.new_partner(self.identifier("active"))
        outcome = services.IBRService(self.data_source, self.env).check_duplication(partner)
        self.assertTrue(outcome["is_duplicate"])
        clean = self.new_partner(self.identifier("unknown"))
        outcome = services.IBRService(self.data_source, self.env).check_duplication(clean)
        self.assertFalse(outcome["is_duplicate"])
        self.assertEqual(outcome["result"], "no_match")

    def test_their_basic_auth_is_refused_by_our_client(self):
        source = self.env["spp.dci.data.source"].create(
            self.data_source_vals(code="basic_auth", auth_type="basic")
        )
        check = self.new_check(self.identifier("unknown"), source=source)
        with self.assertRaisesRegex(UserError, "not supported"):
            source._spp_dci_client()
        with self.assertRaisesRegex(UserError, "not supported"):
            check.action_run_check()  # a configuration error, as without a signing key
        self.assertNotEqual(check.state, "completed")
        self.assertFalse(check.result)

    def test_client_secret_basic_is_an_added_credential_location(self):
        field = self.env["spp.dci.data.source"]._fields["oauth2_credential_location"]
        self.assertEqual(field.get_values(self.env), ["body", "query", "basic"])
        self.data_source.oauth2_credential_location = "basic"
        check = self.new_check(self.identifier("unknown"))
        check.action_run_check()
        self.assertEqual(check.state, "completed", check.error_message)

    def test_unverified_answers_need_the_explicit_option(self):
        source = self.env["spp.dci.data.source"].create(
            self.data_source_vals(code="unverified", registry_sender_id=False)
        )
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assertEqual(check.state, "failed")
        self.assertFalse(check.result)
        source.accept_unverified_answers = True
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assertEqual(
            (check.state, check.result), ("completed", "no_match"), check.error_message
        )
