# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Setting a registry up as an administrator does, against the embedded sandbox: signing
keys, the registry's keys, "Test Connection", and the client each data source reuses."""

from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tests.common import TransactionCase

from .common import OUR_SENDER_ID, SandboxMixin, UsersMixin, data_sources, signing_keys
from .test_duplication_check import closed_port


@tagged("post_install", "-at_install")
class TestConfiguration(SandboxMixin, UsersMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        cls.setup_sandbox()

    # ------------------------------------------------------------ signing keys

    def test_generate_key_pair_then_activate(self):
        key = (
            signing_keys(self.env)
            .with_user(self.dci_admin)
            .create({"name": "New key", "key_id": "new-key", "sender_id": OUR_SENDER_ID})
        )
        action = key.action_generate_key()
        if key._name == "spp.dci.ibr.signing.key":  # OpenSPP's lifecycle returns True
            self.assertEqual(action["params"]["next"]["tag"], "soft_reload")
        self.assertTrue(key.has_private_key)
        self.assertIn("PUBLIC KEY", key.public_key)
        self.assertIn(f"{OUR_SENDER_ID}|new-key|ed25519", key.public_jwk)
        key.action_activate()
        self.assertEqual(key.state, "active")
        kids = [jwk["kid"] for jwk in key._spp_public_jwks()["keys"]]
        self.assertIn(f"{OUR_SENDER_ID}|new-key|ed25519", kids)

    # ----------------------------------------------------------- registry keys

    def test_registry_with_a_jwks_url_and_fetched_keys_verifies_answers(self):
        """The documented setup: the registry's JWKS URL, and its keys fetched."""
        self.assertTrue(self.registry_sender.jwks_url)
        self.assertTrue(self.registry_sender.key_ids)
        self.data_source.action_spp_test_ibr_connection()
        self.assertEqual(self.data_source.state, "active", self.data_source.last_error)
        check = self.new_check(self.identifier("active"))
        check.action_run_check()
        self.assertEqual((check.state, check.result), ("completed", "confirmed_match"))

    def test_with_a_jwks_url_the_url_is_the_key_source(self):
        """Stored keys that no longer verify the registry (as after its key rotation) do not
        stop checks while the registry publishes its keys at its URL."""
        self.registry_sender.key_ids.write({"active": False})
        self.registry_sender.public_key = self.signing_key.public_key  # not the registry's
        check = self.new_check(self.identifier("active"))
        check.action_run_check()
        self.assertEqual((check.state, check.result), ("completed", "confirmed_match"))
        # Without the URL the stored key is what verifies: it does not, so nothing passes.
        self.registry_sender.jwks_url = False
        check = self.new_check(self.identifier("unknown"))
        check.action_run_check()
        self.assertEqual(check.state, "failed")
        self.assertFalse(check.result)

    def test_unverified_answers_only_with_the_system_administrators_opt_in(self):
        """Without the registry's keys answers are refused, unless a system administrator
        ticked "Accept Unverified Answers" (off by default)."""
        source = data_sources(self.env).create(
            self.data_source_vals(code="unverified", registry_sender_id=False)
        )
        self.assertFalse(source.accept_unverified_answers)
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assertEqual(check.state, "failed")
        self.assertFalse(check.result)
        with self.assertRaises(AccessError):
            source.with_user(self.dci_admin).write({"accept_unverified_answers": True})
        source.with_user(self.system_admin).write({"accept_unverified_answers": True})
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assertEqual(
            (check.state, check.result), ("completed", "no_match"), check.error_message
        )

    # --------------------------------------------------------- Test Connection

    def test_failed_connection_test_is_stored_and_shown(self):
        source = data_sources(self.env).create(self.data_source_vals(code="flip"))
        source.action_spp_test_ibr_connection()
        self.assertEqual(source.state, "active", source.last_error)
        port = closed_port()
        source.write(
            {
                "base_url": f"http://127.0.0.1:{port}",
                "oauth2_token_url": f"http://127.0.0.1:{port}/oauth2/client/token",
            }
        )
        action = source.with_user(self.dci_admin).action_spp_test_ibr_connection()
        self.assertEqual(source.state, "error")
        self.assertTrue(source.last_error)
        self.assertTrue(source.last_test_date)
        self.assertEqual(action["params"]["type"], "danger")
        # The form reloads after the toast, so it no longer says "Connected".
        self.assertEqual(action["params"]["next"]["tag"], "soft_reload")

    def test_connection_test_with_a_wrong_secret_fails(self):
        """A token obtained with the right secret must not make a wrong one look right."""
        source = data_sources(self.env).create(self.data_source_vals(code="secret"))
        source.action_spp_test_ibr_connection()
        self.assertEqual(source.state, "active", source.last_error)
        source.sudo().oauth2_client_secret = "wrong-secret"
        source.action_spp_test_ibr_connection()
        self.assertEqual(source.state, "error")
        self.assertNotIn("wrong-secret", source.last_error)

    # ------------------------------------------------------------ client reuse

    def test_client_is_reused_until_the_configuration_changes(self):
        source = data_sources(self.env).create(self.data_source_vals(code="reuse"))
        client = source._spp_dci_client()
        for pair in self.identifiers("unknown", 2):
            self.new_check(pair, source=source).action_run_check()
        self.assertIs(source._spp_dci_client(), client)
        self.assertIs(source.with_user(self.officer)._spp_dci_client(), client)
        changes = [
            lambda: source.write({"timeout": 11}),
            lambda: source.sudo().write({"oauth2_client_secret": "another-secret"}),
            lambda: self.registry_sender.write({"jwks_url": False}),
            lambda: self.registry_sender.key_ids[:1].write({"active": False}),
        ]
        for change in changes:
            previous = source._spp_dci_client()
            change()
            self.assertIsNot(source._spp_dci_client(), previous)
