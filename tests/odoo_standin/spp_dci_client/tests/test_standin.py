# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Baseline of the OpenSPP stand-in: its fields and methods exist and behave as OpenSPP's.

Run here with the stand-in alone; ``spp_dci_standin_with_ibr`` runs the same tests with our
addon installed on top, where every one of them must still pass.
"""

from datetime import timedelta

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import TransactionCase, tagged

from odoo.addons.spp_dci.schemas.constants import RegistryType

# (model, field) -> field type, for a representative set of OpenSPP's fields.
FIELDS = {
    ("spp.dci.data.source", "name"): "char",
    ("spp.dci.data.source", "code"): "char",
    ("spp.dci.data.source", "registry_type"): "selection",
    ("spp.dci.data.source", "base_url"): "char",
    ("spp.dci.data.source", "auth_type"): "selection",
    ("spp.dci.data.source", "bearer_token"): "char",
    ("spp.dci.data.source", "oauth2_token_url"): "char",
    ("spp.dci.data.source", "oauth2_client_id"): "char",
    ("spp.dci.data.source", "oauth2_client_secret"): "char",
    ("spp.dci.data.source", "oauth2_client_secret_display"): "char",
    ("spp.dci.data.source", "oauth2_scope"): "char",
    ("spp.dci.data.source", "oauth2_credential_location"): "selection",
    ("spp.dci.data.source", "signing_key_id"): "many2one",
    ("spp.dci.data.source", "verify_ssl"): "boolean",
    ("spp.dci.data.source", "timeout"): "integer",
    ("spp.dci.data.source", "our_sender_id"): "char",
    ("spp.dci.data.source", "our_callback_uri"): "char",
    ("spp.dci.data.source", "receiver_id"): "char",
    ("spp.dci.data.source", "search_endpoint"): "char",
    ("spp.dci.data.source", "subscribe_endpoint"): "char",
    ("spp.dci.data.source", "auth_endpoint"): "char",
    ("spp.dci.data.source", "state"): "selection",
    ("spp.dci.data.source", "last_test_date"): "datetime",
    ("spp.dci.data.source", "last_error"): "text",
    ("spp.dci.data.source", "_oauth2_access_token"): "char",
    ("spp.dci.data.source", "_oauth2_token_expires_at"): "datetime",
    ("spp.dci.signing.key", "name"): "char",
    ("spp.dci.signing.key", "key_id"): "char",
    ("spp.dci.signing.key", "algorithm"): "selection",
    ("spp.dci.signing.key", "private_key"): "text",
    ("spp.dci.signing.key", "public_key"): "text",
    ("spp.dci.signing.key", "state"): "selection",
    ("spp.dci.signing.key", "created_date"): "datetime",
    ("spp.dci.signing.key", "activated_date"): "datetime",
    ("spp.dci.signing.key", "revoked_date"): "datetime",
    ("spp.dci.signing.key", "expires_at"): "datetime",
}
# Selection values OpenSPP's other modules write; a replacing model would refuse them.
SELECTIONS = {
    ("spp.dci.data.source", "registry_type"): {member.value for member in RegistryType},
    ("spp.dci.data.source", "auth_type"): {"none", "bearer", "basic", "oauth2"},
    ("spp.dci.data.source", "oauth2_credential_location"): {"body", "query"},
    ("spp.dci.data.source", "state"): {"draft", "testing", "active", "error"},
    ("spp.dci.signing.key", "algorithm"): {"ed25519", "rs256"},
    ("spp.dci.signing.key", "state"): {"draft", "active", "revoked"},
}
METHODS = {
    "spp.dci.data.source": (
        "get_oauth2_token",
        "clear_oauth2_token_cache",
        "get_headers",
        "test_connection",
        "action_test_connection",
        "get_by_code",
        "get_by_registry_type",
        "_get_registry_types",
    ),
    "spp.dci.signing.key": (
        "action_generate_key",
        "action_activate",
        "action_revoke",
        "get_jwks_entry",
        "get_signer",
        "get_active_key",
    ),
}


@tagged("post_install", "-at_install")
class TestOpenSPPStandin(TransactionCase):
    def _ibr_source(self, **vals):
        return self.env["spp.dci.data.source"].create(
            {
                "name": "National IBR",
                "code": "ibr_national",
                "registry_type": RegistryType.IBR.value,
                "base_url": "https://ibr.example.org/api",
                "auth_type": "oauth2",
                "oauth2_token_url": "https://ibr.example.org/oauth2/client/token",
                "oauth2_client_id": "openspp",
                "oauth2_client_secret": "s3cret",
                "our_sender_id": "openspp.example.org",
                **vals,
            }
        )

    def _field_type(self, model, name):
        field = self.env[model]._fields.get(name)
        return field.type if field else None

    def test_fields_exist_with_their_types(self):
        wrong = {
            key: self._field_type(*key)
            for key, ftype in FIELDS.items()
            if self._field_type(*key) != ftype
        }
        self.assertEqual(wrong, {}, "fields missing (None) or of another type")

    def test_selection_values(self):
        missing = {
            (model, name): sorted(values - set(self.env[model]._fields[name].get_values(self.env)))
            for (model, name), values in SELECTIONS.items()
        }
        self.assertEqual({key: values for key, values in missing.items() if values}, {})

    def test_methods_exist(self):
        missing = [
            (model, name)
            for model, names in METHODS.items()
            for name in names
            if not callable(getattr(self.env[model], name, None))
        ]
        self.assertEqual(missing, [])

    def test_ibr_source_found_by_its_registry_type(self):
        source = self._ibr_source()
        Source = self.env["spp.dci.data.source"]
        self.assertEqual(Source.get_by_registry_type(RegistryType.IBR.value), source)
        self.assertEqual(Source.get_by_code("ibr_national"), source)
        self.assertEqual(source.oauth2_client_secret_display, Source._SECRET_MASK)

    def test_oauth2_token_comes_from_the_record_cache(self):
        source = self._ibr_source()
        expiry = fields.Datetime.now() + timedelta(hours=1)
        source.write({"_oauth2_access_token": "cached-token", "_oauth2_token_expires_at": expiry})
        self.assertEqual(source.get_oauth2_token(), "cached-token")
        self.assertEqual(source.get_headers()["Authorization"], "Bearer cached-token")
        source.clear_oauth2_token_cache()
        self.assertFalse(source._oauth2_access_token)

    def test_oauth2_token_refused_without_oauth2(self):
        source = self._ibr_source(auth_type="none")
        with self.assertRaises(UserError):
            source.get_oauth2_token()

    def test_basic_auth_is_accepted_but_not_implemented(self):
        source = self._ibr_source(auth_type="basic")
        with self.assertRaises(UserError):
            source.get_headers()

    def test_signing_key_lifecycle_and_jwks_entry(self):
        self.env["ir.config_parameter"].sudo().set_param("dci.sender_id", "openspp.example.org")
        key = self.env["spp.dci.signing.key"].create({"name": "Primary", "key_id": "primary-2026"})
        self.assertTrue(key.created_date)
        key.action_generate_key()
        key.action_activate()
        self.assertEqual(key.state, "active")
        self.assertEqual(self.env["spp.dci.signing.key"].get_active_key("ed25519"), key)
        entry = key.get_jwks_entry()
        self.assertEqual(entry["kid"], "openspp.example.org|primary-2026|ed25519")
        self.assertEqual((entry["kty"], entry["crv"]), ("OKP", "Ed25519"))
        self.assertEqual(key.get_signer().key_id, "primary-2026")
        self._ibr_source(signing_key_id=key.id)
        key.action_revoke()
        with self.assertRaises(UserError):
            key.get_signer()
