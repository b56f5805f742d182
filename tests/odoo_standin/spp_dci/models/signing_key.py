# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Stand-in of OpenSPP's ``spp.dci.signing.key``: its fields, lifecycle and public methods."""

import base64
import re
from collections import namedtuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# What OpenSPP's get_signer hands to its DCISigner; enough to prove the method is theirs.
Signer = namedtuple("Signer", "private_key sender_id key_id algorithm")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DCISigningKey(models.Model):
    _name = "spp.dci.signing.key"
    _description = "DCI Signing Key"
    _order = "created_date desc, id desc"

    name = fields.Char(string="Key Name", required=True)
    key_id = fields.Char(string="Key Identifier", required=True)
    algorithm = fields.Selection(
        [("ed25519", "Ed25519"), ("rs256", "RSA-256")], required=True, default="ed25519"
    )
    private_key = fields.Text(groups="base.group_system")
    public_key = fields.Text()
    state = fields.Selection(
        [("draft", "Draft"), ("active", "Active"), ("revoked", "Revoked")],
        required=True,
        default="draft",
    )
    created_date = fields.Datetime(default=fields.Datetime.now, readonly=True)
    activated_date = fields.Datetime(readonly=True)
    revoked_date = fields.Datetime(readonly=True)
    expires_at = fields.Datetime(string="Expiration Date")

    @api.constrains("key_id")
    def _check_key_id(self):
        for key in self:
            if not KEY_ID_RE.match(key.key_id or ""):
                raise ValidationError(self.env._("Key ID: letters, digits, '-' and '_' only."))
            if self.search_count([("key_id", "=", key.key_id), ("id", "!=", key.id)]):
                raise ValidationError(self.env._("Key ID must be unique."))

    @api.constrains("state", "private_key", "public_key")
    def _check_keys_present(self):
        for key in self.sudo():
            if key.state == "active" and not (key.private_key and key.public_key):
                raise ValidationError(self.env._("Generate the key pair before activating."))

    @api.constrains("expires_at")
    def _check_expiration_date(self):
        for key in self:
            if key.expires_at and key.expires_at <= fields.Datetime.now():
                raise ValidationError(self.env._("The expiration date must be in the future."))

    def action_generate_key(self):
        self.ensure_one()
        if self.state != "draft" or self.sudo().private_key or self.public_key:
            raise UserError(self.env._("Keys can only be generated once, on a draft key."))
        if self.algorithm == "rs256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            private = ed25519.Ed25519PrivateKey.generate()
        self.sudo().write(
            {
                "private_key": private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                "public_key": private.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode(),
            }
        )
        return True

    def action_activate(self):
        self.ensure_one()
        if self.state != "draft":
            raise UserError(self.env._("Only a draft key can be activated."))
        self.write({"state": "active", "activated_date": fields.Datetime.now()})
        return True

    def action_revoke(self):
        self.ensure_one()
        if self.state == "revoked":
            raise UserError(self.env._("Key is already revoked."))
        self.write({"state": "revoked", "revoked_date": fields.Datetime.now()})
        return True

    def _sender_id(self):
        return self.env["ir.config_parameter"].sudo().get_param("dci.sender_id", "openspp")

    def get_jwks_entry(self):
        """The public JWK, kid ``<dci.sender_id>|<key_id>|<algorithm>``."""
        self.ensure_one()
        if not self.public_key:
            raise UserError(self.env._("Cannot build a JWKS entry without a public key."))
        public = serialization.load_pem_public_key(self.public_key.encode())
        entry = {"kid": f"{self._sender_id()}|{self.key_id}|{self.algorithm}", "use": "sig"}
        if self.algorithm == "ed25519":
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            entry.update(kty="OKP", alg="EdDSA", crv="Ed25519", x=_b64url(raw))
        else:
            numbers = public.public_numbers()
            entry.update(
                kty="RSA",
                alg="RS256",
                n=_b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                e=_b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            )
        return entry

    def get_signer(self):
        self.ensure_one()
        if self.state != "active" or not self.sudo().private_key:
            raise UserError(self.env._("Only an active key with a private key can sign."))
        return Signer(
            self.sudo().private_key.encode(), self._sender_id(), self.key_id, self.algorithm
        )

    @api.model
    def get_active_key(self, algorithm=None):
        domain = [("state", "=", "active")]
        if algorithm:
            domain.append(("algorithm", "=", algorithm))
        return self.search(domain, order="activated_date desc, id desc", limit=1)
