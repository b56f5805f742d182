# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""What each group may read and write; personal data and secrets gating (also in the UI)."""

from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tests.common import TransactionCase

from .common import UsersMixin, data_sources, signing_keys

SECRET = "s3cr3t-client-value-do-not-show"
BEARER = "bearer-token-value-do-not-show"
PII_CHECK_FIELDS = ("identifier_value", "matched_programs", "raw_response")
SECRET_SOURCE_FIELDS = ("oauth2_client_secret", "bearer_token", "ca_bundle")


@tagged("post_install", "-at_install")
class TestSecurity(UsersMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        env = cls.env
        cls.key = signing_keys(env).create(
            {"name": "Key", "key_id": "sec-key", "sender_id": "openspp.test"}
        )
        cls.key.action_generate_key()
        cls.key.action_activate()
        cls.source = data_sources(env).create(
            {
                "name": "Secured IBR",
                "code": "secured_ibr",
                "base_url": "https://ibr.invalid",
                "auth_type": "oauth2",
                "oauth2_token_url": "https://ibr.invalid/oauth2/client/token",
                "oauth2_client_id": "client",
                "oauth2_client_secret": SECRET,
                "bearer_token": BEARER,
                "our_sender_id": "openspp.test",
                "signing_key_id": cls.key.id,
            }
        )
        cls.partner = env["res.partner"].create({"name": "Registrant"})
        cls.check = env["spp.dci.duplication.check"].create(
            {
                "partner_id": cls.partner.id,
                "identifier_type": "UIN",
                "identifier_value": "UIN-PII-1",
                "data_source_id": cls.source.id,
            }
        )
        cls.check.write(
            {
                "state": "completed",
                "result": "confirmed_match",
                "matched_programs": "Cash Transfer",
                "raw_response": '{"pii": true}',
            }
        )
        cls.async_check = cls.check.copy({"identifier_value": "UIN-PII-2"})
        cls.async_check.write({"state": "checking", "transaction_id": "txn-async-1"})
        cls.log = env["spp.dci.callback.log"].create(
            {
                "action": "notify",
                "sender_id": "ibr",
                "message_id": "m1",
                "state": "received",
                "raw_body": '{"secret": "pii"}',
            }
        )

    # -------------------------------------------------------------- read/write

    def test_viewer_reads_checks_but_cannot_change_them(self):
        check = self.check.with_user(self.viewer)
        self.assertEqual(check.result, "confirmed_match")
        self.assertEqual(check.state, "completed")
        with self.assertRaises(AccessError):
            check.write({"notes": "x"})
        with self.assertRaises(AccessError):
            self.env["spp.dci.duplication.check"].with_user(self.viewer).create(
                {"partner_id": self.partner.id, "identifier_type": "UIN"}
            )
        with self.assertRaises(AccessError):
            check.action_run_check()
        with self.assertRaises(AccessError):
            self.env["spp.dci.callback.log"].with_user(self.viewer).search([])

    def test_plain_user_sees_nothing(self):
        with self.assertRaises(AccessError):
            self.check.with_user(self.plain_user).read(["result"])
        fields = self.env["res.partner"].with_user(self.plain_user).fields_get()
        self.assertNotIn("spp_dci_check_count", fields)

    def test_officer_creates_and_runs_checks(self):
        checks = self.env["spp.dci.duplication.check"].with_user(self.officer)
        check = checks.create({"partner_id": self.partner.id, "identifier_type": "UIN"})
        check.write({"notes": "allowed"})
        self.assertEqual(check.notes, "allowed")
        # Officers delete only their own checks that never ran.
        self.check.with_user(self.officer).check_access("read")
        with self.assertRaises(AccessError):
            self.check.with_user(self.officer).unlink()
        check.unlink()
        with self.assertRaises(AccessError):
            self.source.with_user(self.officer).write({"name": "renamed"})
        with self.assertRaises(AccessError):
            self.env["spp.dci.callback.log"].with_user(self.officer).search([])

    def test_manager_reads_logs_and_deletes_any_check(self):
        logs = self.env["spp.dci.callback.log"].with_user(self.manager).search([])
        self.assertIn(self.log.id, logs.ids)
        with self.assertRaises(AccessError):
            self.log.with_user(self.manager).read(["raw_body"])
        with self.assertRaises(AccessError):
            self.source.with_user(self.manager).write({"name": "renamed"})
        self.async_check.with_user(self.manager).unlink()
        self.assertFalse(self.async_check.exists())

    def test_dci_admin_configures_but_secrets_stay_with_system(self):
        source = self.source.with_user(self.dci_admin)
        source.write({"timeout": 12})
        self.assertEqual(source.timeout, 12)
        for name in SECRET_SOURCE_FIELDS:
            with self.subTest(field=name), self.assertRaises(AccessError):
                source.read([name])
        with self.assertRaises(AccessError):
            self.key.with_user(self.dci_admin).read(["private_key"])
        sys_source = self.source.with_user(self.system_admin)
        self.assertEqual(sys_source.oauth2_client_secret, SECRET)

    # --------------------------------------------------------------------- PII

    def test_pii_only_for_dci_admin(self):
        for user in (self.viewer, self.officer, self.manager):
            check = self.check.with_user(user)
            for name in PII_CHECK_FIELDS:
                with self.subTest(user=user.login, field=name), self.assertRaises(AccessError):
                    check.read([name])
            fields = check.fields_get()
            for name in PII_CHECK_FIELDS:
                self.assertNotIn(name, fields)
            detail_fields = (
                self.env["spp.dci.duplication.check.detail"].with_user(user).fields_get()
            )
            self.assertNotIn("id_value", detail_fields)
            self.assertNotIn("response_json", detail_fields)
        admin_check = self.check.with_user(self.dci_admin)
        self.assertEqual(admin_check.identifier_value, "UIN-PII-1")
        self.assertEqual(admin_check.matched_programs, "Cash Transfer")
        self.assertEqual(self.log.with_user(self.dci_admin).raw_body, '{"secret": "pii"}')

    def test_pii_absent_from_views_of_non_admins(self):
        for user in (self.viewer, self.officer, self.manager):
            views = (
                self.env["spp.dci.duplication.check"]
                .with_user(user)
                .get_views([(False, "list"), (False, "form")])
            )
            for view_type in ("list", "form"):
                arch = views["views"][view_type]["arch"]
                for name in PII_CHECK_FIELDS:
                    self.assertNotIn(f'name="{name}"', arch, (user.login, view_type, name))
        admin_arch = (
            self.env["spp.dci.duplication.check"]
            .with_user(self.dci_admin)
            .get_views([(False, "form")])["views"]["form"]["arch"]
        )
        self.assertIn('name="identifier_value"', admin_arch)

    # ----------------------------------------------------------------- secrets

    def test_secrets_never_reach_non_system_users(self):
        for user in (self.viewer, self.officer, self.manager, self.dci_admin):
            source = self.source.with_user(user)
            data = source.read()[0]
            for name in SECRET_SOURCE_FIELDS:
                self.assertNotIn(name, data, (user.login, name))
            self.assertNotIn(SECRET, repr(data))
            self.assertNotIn(BEARER, repr(data))
            arch = source.get_views([(False, "form")])["views"]["form"]["arch"]
            self.assertNotIn("oauth2_client_secret", arch)
            self.assertNotIn("bearer_token", arch)
            if user in (self.manager, self.dci_admin):
                key_data = self.key.with_user(user).read()[0]
                self.assertNotIn("private_key", key_data)
                self.assertNotIn("PRIVATE KEY", repr(key_data))
                self.assertTrue(key_data["public_key"])
        arch = self.source.with_user(self.system_admin).get_views([(False, "form")])
        self.assertIn('password="True"', arch["views"]["form"]["arch"])

    def test_secrets_not_in_errors_or_reprs(self):
        self.source.write(
            {
                "base_url": "http://127.0.0.1:9",
                "oauth2_token_url": "http://127.0.0.1:9/oauth2/client/token",
                "timeout": 1,
                "connect_timeout": 1,
            }
        )
        self.source.action_spp_test_ibr_connection()
        self.assertEqual(self.source.state, "error")
        self.assertTrue(self.source.last_error)
        self.assertNotIn(SECRET, self.source.last_error)
        client = self.source._spp_dci_client()
        self.assertNotIn(SECRET, repr(client))
        self.assertNotIn("PRIVATE KEY", repr(client))

    # ---------------------------------------------------------- callback user

    def test_callback_user_least_privilege(self):
        user = self.callback_user
        self.assertFalse(user.has_group("base.group_user"))
        self.assertTrue(user.has_group("spp_dci_client_ibr.group_dci_callback"))
        self.assertFalse(user.has_group("spp_dci_client_ibr.group_dci_viewer"))
        with self.assertRaises(AccessError):
            self.source.with_user(user).read(["oauth2_client_secret"])
        with self.assertRaises(AccessError):
            self.key.with_user(user).read(["private_key"])
        with self.assertRaises(AccessError):
            self.env["spp.dci.duplication.check"].with_user(user).create(
                {"partner_id": self.partner.id}
            )
        with self.assertRaises(AccessError):
            self.env["spp.dci.ibr.sender"].with_user(user).create(
                {"name": "evil", "sender_id": "evil"}
            )
        # Only checks sent asynchronously can be completed by a callback.
        self.async_check.with_user(user).write({"error_message": "from callback"})
        with self.assertRaises(AccessError):
            self.check.with_user(user).write({"error_message": "not async"})
        # The JWKS only needs active public keys.
        self.key.copy({"key_id": "draft-key"})
        keys = signing_keys(self.env).with_user(user).search([])
        self.assertEqual(set(keys.mapped("state")), {"active"})

    def test_jwks_publishes_active_public_keys_only(self):
        revoked = signing_keys(self.env).create(
            {"name": "Old", "key_id": "old-key", "sender_id": "openspp.test"}
        )
        revoked.action_generate_key()
        revoked.action_activate()
        revoked.action_revoke()
        jwks = signing_keys(self.env).with_user(self.callback_user)._spp_public_jwks()
        kids = [key["kid"] for key in jwks["keys"]]
        self.assertIn("openspp.test|sec-key|ed25519", kids)
        self.assertNotIn("openspp.test|old-key|ed25519", kids)
        for key in jwks["keys"]:
            self.assertFalse({"d", "p", "q", "dp", "dq", "qi"} & set(key), key)
