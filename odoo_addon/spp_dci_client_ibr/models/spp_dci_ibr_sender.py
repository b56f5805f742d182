# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Registries we accept signed callbacks from, with their public keys (rotation by kid)."""

import json
import logging
import re

from spp_dci_ibr import JWKS, RemoteJWKS, jwk_to_pem, pem_to_jwk
from spp_dci_ibr.exceptions import DCIError

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from .errors import dci_user_errors
from .notification import notification

_logger = logging.getLogger(__name__)

SENDER_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def _algorithm_of(jwk):
    """Display value of a JWK's algorithm, from its key type (not from the kid text)."""
    if jwk.get("kty") == "OKP":
        return "ed25519"
    if jwk.get("kty") == "RSA":
        return "rs256"
    return False


class SppDciIbrSender(models.Model):
    _name = "spp.dci.ibr.sender"
    _description = "IBR Sender Registry"
    _order = "name"

    name = fields.Char(required=True, help="Friendly name for this IBR registry")
    sender_id = fields.Char(
        string="Sender ID",
        required=True,
        index=True,
        help="DCI sender id of the registry (header.sender_id of its callbacks)",
    )
    public_key = fields.Text(help="PEM public key, used when no key lines are configured")
    jwks_url = fields.Char(string="JWKS URL", help="The registry's /.well-known/jwks.json")
    allow_insecure_jwks = fields.Boolean(
        string="Allow http:// JWKS URL",
        help="Only for loopback test registries: JWKS is otherwise fetched over https only.",
    )
    algorithm = fields.Selection([("ed25519", "Ed25519"), ("rs256", "RSA (RS256)")])
    last_key_fetch = fields.Datetime(readonly=True)
    active = fields.Boolean(default=True)
    notes = fields.Text()
    key_ids = fields.One2many("spp.dci.ibr.sender.key", "ibr_sender_id", string="Keys")
    key_count = fields.Integer(compute="_compute_key_count")

    _sender_id_uniq = models.Constraint(
        "UNIQUE(sender_id)", "An IBR sender with this sender ID already exists."
    )

    @api.depends("key_ids.active")
    def _compute_key_count(self):
        for sender in self:
            sender.key_count = len(sender.key_ids.filtered("active"))

    @api.constrains("sender_id")
    def _check_sender_id_format(self):
        for sender in self:
            if sender.sender_id and not SENDER_ID_RE.match(sender.sender_id):
                raise ValidationError(
                    self.env._(
                        "Sender ID %(sender_id)s may only contain letters, digits, dots, "
                        "hyphens and underscores.",
                        sender_id=sender.sender_id,
                    )
                )

    @api.constrains("jwks_url", "allow_insecure_jwks")
    def _check_jwks_url(self):
        for sender in self:
            url = sender.jwks_url
            if not url:
                continue
            if not url.startswith(("https://", "http://")):
                raise ValidationError(self.env._("The JWKS URL must be an http(s) URL."))
            if url.startswith("http://") and not sender.allow_insecure_jwks:
                raise ValidationError(
                    self.env._("The JWKS URL must use https unless http is explicitly allowed.")
                )

    @api.model
    def get_by_sender_id(self, sender_id):
        """OpenSPP-compatible lookup of an active sender."""
        return self.search([("sender_id", "=", sender_id)], limit=1)

    def action_fetch_public_key(self):
        self.ensure_one()
        count = self.fetch_public_key()
        return notification(
            self.env._(
                "%(count)s key(s) of %(sender)s fetched.", count=count, sender=self.sender_id
            ),
            "success",
        )

    def fetch_public_key(self):
        """Fetch the registry's JWKS (native, https only unless allowed) and store its keys."""
        self.ensure_one()
        if not self.jwks_url:
            raise UserError(
                self.env._("No JWKS URL is configured for %(sender)s.", sender=self.sender_id)
            )
        what = self.env._("The keys of %(sender)s could not be fetched", sender=self.sender_id)
        with dci_user_errors(self.env, what):
            jwks = JWKS.fetch(self.jwks_url, allow_http=self.allow_insecure_jwks)
        return self._store_jwks(jwks)

    def _store_jwks(self, jwks):
        """Upsert key lines for the kids of this sender; retire the ones no longer published."""
        self.ensure_one()
        prefix = f"{self.sender_id}|"
        kids = [kid for kid in jwks.kids if kid and kid.startswith(prefix)]
        if not kids:
            raise UserError(
                self.env._("The JWKS holds no key whose kid starts with %(prefix)s.", prefix=prefix)
            )
        now = fields.Datetime.now()
        lines = self.with_context(active_test=False).key_ids
        by_kid = {line.kid: line for line in lines}
        first = None
        for kid in kids:
            jwk = jwks.get(kid)
            with dci_user_errors(self.env, self.env._("Key %(kid)s is not usable", kid=kid)):
                pem = jwk_to_pem(jwk)
            vals = {
                "jwk": json.dumps(jwk, sort_keys=True),
                "public_key": pem,
                "algorithm": _algorithm_of(jwk),
                "active": True,
                "source": "jwks",
                "fetched_at": now,
            }
            if kid in by_kid:
                by_kid[kid].write(vals)
            else:
                self.env["spp.dci.ibr.sender.key"].create(
                    dict(vals, ibr_sender_id=self.id, kid=kid)
                )
            first = first or vals
        lines.filtered(lambda line: line.source == "jwks" and line.kid not in kids).write(
            {"active": False}
        )
        self.write(
            {
                "public_key": first["public_key"],
                "algorithm": first["algorithm"],
                "last_key_fetch": now,
            }
        )
        return len(kids)

    def _spp_verification_keys(self):
        """Keys for the verifier: JWK dicts of the active key lines, else the PEM key."""
        self.ensure_one()
        keys = [line._as_verification_key() for line in self.key_ids.filtered("active")]
        keys = [key for key in keys if key]
        if not keys and self.public_key:
            keys = [self.public_key]
        return keys

    def _spp_client_keys(self):
        """How the native client verifies this registry's signed answers: the keyword
        arguments ``registry_jwks_url`` (+ ``allow_insecure_jwks``) or ``registry_keys``.

        The client takes one source, not both. With a JWKS URL, the URL: it is where the
        stored keys came from, and the core refetches it on a key it does not know (at most
        once a minute) and every hour, so a registry's key rotation needs nobody to click
        "Fetch Public Key". The stored keys are the fallback for a registry without a URL.
        """
        self.ensure_one()
        if self.jwks_url:
            return {
                "registry_jwks_url": self.jwks_url,
                "allow_insecure_jwks": bool(self.allow_insecure_jwks),
            }
        keys = self._spp_verification_keys()
        jwks = [key for key in keys if isinstance(key, dict)]
        if jwks:
            return {"registry_keys": {"keys": jwks}}
        return {"registry_keys": keys[0]} if keys else {}

    @api.model
    def _spp_key_lookup(self, sender_id, kid):
        """Key lookup of the callback router: None for an unknown or inactive sender.

        One indexed search, nothing fetched: the stored keys, plus the JWKS URL as a
        ``RemoteJWKS``, which the native verifier consults only when no stored key has the
        signature's kid, through its process-wide cache (refetched on an unknown kid at most
        once a minute per URL, failed fetches included). Keys fetched that way are used for
        verification only; an administrator stores them with "Fetch Public Key".
        """
        sender = self.search([("sender_id", "=", sender_id)], limit=1)
        if not sender:
            return None
        keys = sender._spp_verification_keys()
        if sender.jwks_url:
            keys.append(RemoteJWKS(sender.jwks_url, allow_http=sender.allow_insecure_jwks))
        return keys


class SppDciIbrSenderKey(models.Model):
    _name = "spp.dci.ibr.sender.key"
    _description = "IBR Sender Public Key"
    _order = "ibr_sender_id, active desc, id desc"
    _rec_name = "kid"

    ibr_sender_id = fields.Many2one(
        "spp.dci.ibr.sender", string="IBR Sender", required=True, ondelete="cascade", index=True
    )
    kid = fields.Char(
        string="Key ID (kid)", required=True, help="Full kid: <sender_id>|<key_id>|<algorithm>"
    )
    algorithm = fields.Selection([("ed25519", "Ed25519"), ("rs256", "RSA (RS256)")])
    public_key = fields.Text(help="PEM public key")
    jwk = fields.Text(string="JWK", help="The published public JWK (JSON)")
    active = fields.Boolean(default=True, help="Inactive keys are no longer accepted")
    source = fields.Selection(
        [("manual", "Manual"), ("jwks", "Fetched from JWKS")], default="manual", required=True
    )
    fetched_at = fields.Datetime(readonly=True)

    _sender_kid_uniq = models.Constraint(
        "UNIQUE(ibr_sender_id, kid)", "This sender already has a key with this kid."
    )

    @api.constrains("kid", "ibr_sender_id")
    def _check_kid_sender(self):
        for line in self:
            if line.kid.split("|", 1)[0] != line.ibr_sender_id.sender_id:
                raise ValidationError(
                    self.env._(
                        "The kid %(kid)s must start with the sender id %(sender)s.",
                        kid=line.kid,
                        sender=line.ibr_sender_id.sender_id,
                    )
                )

    @api.constrains("jwk", "public_key")
    def _check_key_material(self):
        for line in self:
            if not (line.jwk or line.public_key):
                raise ValidationError(self.env._("A sender key needs a JWK or a PEM public key."))
            try:
                if line.jwk:
                    jwk_to_pem(json.loads(line.jwk))
                else:
                    pem_to_jwk(line.public_key)
            except (ValueError, DCIError) as exc:
                raise ValidationError(
                    self.env._("The key is not usable: %(error)s", error=str(exc))
                ) from exc

    def _as_verification_key(self):
        """The key as a JWK carrying this line's kid (a PEM is converted natively)."""
        self.ensure_one()
        if self.jwk:
            jwk = json.loads(self.jwk)
            jwk["kid"] = self.kid
            return jwk
        if self.public_key:
            try:
                return pem_to_jwk(self.public_key, kid=self.kid)
            except DCIError:
                _logger.error(
                    "Key %s of sender %s is unreadable", self.kid, self.ibr_sender_id.sender_id
                )
        return None
