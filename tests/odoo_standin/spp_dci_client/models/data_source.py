# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Stand-in of OpenSPP's ``spp.dci.data.source``: its fields, checks and public methods,
including the OAuth2 token cache kept in the record (``get_oauth2_token``)."""

import re
from datetime import timedelta

import httpx

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from odoo.addons.spp_dci.schemas.constants import RegistryType

CODE_RE = re.compile(r"^[a-z0-9_]+$")
TOKEN_EXPIRY_MARGIN = timedelta(seconds=60)


class DCIDataSource(models.Model):
    _name = "spp.dci.data.source"
    _description = "DCI Data Source"
    _order = "name"

    _SECRET_MASK = "********"

    name = fields.Char(required=True)
    code = fields.Char(required=True)
    registry_type = fields.Selection(selection="_get_registry_types")
    base_url = fields.Char(string="Base URL", required=True)
    auth_type = fields.Selection(
        [("none", "None"), ("bearer", "Bearer Token"), ("basic", "Basic"), ("oauth2", "OAuth2")],
        string="Authentication Type",
        required=True,
        default="oauth2",
    )
    bearer_token = fields.Char(groups="base.group_system")
    oauth2_token_url = fields.Char(string="OAuth2 Token URL")
    oauth2_client_id = fields.Char(string="OAuth2 Client ID")
    oauth2_client_secret = fields.Char(
        string="OAuth2 Client Secret", groups="base.group_system", copy=False
    )
    oauth2_client_secret_display = fields.Char(
        string="OAuth2 Client Secret (masked)",
        compute="_compute_oauth2_client_secret_display",
        inverse="_inverse_oauth2_client_secret_display",
        groups="base.group_system",
    )
    oauth2_scope = fields.Char(string="OAuth2 Scope")
    oauth2_credential_location = fields.Selection(
        [("body", "Request Body"), ("query", "Query Parameters")], default="body"
    )
    signing_key_id = fields.Many2one("spp.dci.signing.key", domain=[("state", "=", "active")])
    verify_ssl = fields.Boolean(string="Verify SSL", default=True)
    timeout = fields.Integer(string="Timeout (seconds)", default=30)
    active = fields.Boolean(default=True)
    notes = fields.Text()
    our_sender_id = fields.Char(string="Our Sender ID")
    our_callback_uri = fields.Char(string="Callback URI")
    receiver_id = fields.Char(string="Receiver ID")
    search_endpoint = fields.Char(default="/registry/sync/search")
    subscribe_endpoint = fields.Char(default="/registry/subscribe")
    auth_endpoint = fields.Char(default="/oauth2/client/token")
    state = fields.Selection(
        [
            ("draft", "Not Configured"),
            ("testing", "Testing"),
            ("active", "Active"),
            ("error", "Connection Error"),
        ],
        default="draft",
    )
    last_test_date = fields.Datetime(readonly=True)
    last_error = fields.Text(readonly=True)
    _oauth2_access_token = fields.Char(string="Cached Access Token")
    _oauth2_token_expires_at = fields.Datetime(string="Token Expiry")

    @api.model
    def _get_registry_types(self):
        return [
            (RegistryType.SOCIAL_REGISTRY.value, "Social Registry"),
            (RegistryType.IBR.value, "Integrated Beneficiary Registry (IBR)"),
            (RegistryType.CRVS.value, "Civil Registration and Vital Statistics (CRVS)"),
            (RegistryType.DISABILITY_REGISTRY.value, "Disability Registry (DR)"),
            (RegistryType.FUNCTIONAL_REGISTRY.value, "Functional Registry (FR)"),
        ]

    @api.depends("oauth2_client_secret")
    def _compute_oauth2_client_secret_display(self):
        for source in self:
            source.oauth2_client_secret_display = source.oauth2_client_secret and self._SECRET_MASK

    def _inverse_oauth2_client_secret_display(self):
        for source in self:
            if source.oauth2_client_secret_display != self._SECRET_MASK:
                source.oauth2_client_secret = source.oauth2_client_secret_display

    @api.constrains("code")
    def _check_code(self):
        for source in self:
            if not CODE_RE.match(source.code or ""):
                raise ValidationError(self.env._("Code: lowercase letters, digits and '_' only."))
            if self.search_count([("code", "=", source.code), ("id", "!=", source.id)]):
                raise ValidationError(self.env._("Data source code must be unique."))

    @api.constrains("base_url")
    def _check_base_url_format(self):
        for source in self:
            if not source.base_url.startswith(("http://", "https://")):
                raise ValidationError(self.env._("Base URL must start with http:// or https://"))
            if source.base_url.endswith("/"):
                raise ValidationError(self.env._("Base URL should not end with a slash"))

    @api.constrains("auth_type", "oauth2_token_url", "oauth2_client_id", "oauth2_client_secret")
    def _check_oauth2_fields(self):
        for source in self.sudo():
            if source.auth_type == "oauth2" and not (
                source.oauth2_token_url and source.oauth2_client_id and source.oauth2_client_secret
            ):
                raise ValidationError(
                    self.env._("OAuth2 needs a token URL, a client ID and a client secret.")
                )

    @api.constrains("auth_type", "bearer_token")
    def _check_bearer_token(self):
        for source in self.sudo():
            if source.auth_type == "bearer" and not source.bearer_token:
                raise ValidationError(self.env._("Bearer Token is required."))

    @api.constrains("timeout")
    def _check_timeout_value(self):
        for source in self:
            if source.timeout <= 0:
                raise ValidationError(self.env._("Timeout must be a positive integer."))

    @api.constrains("auth_type", "our_sender_id")
    def _check_sender_id(self):
        for source in self:
            if source.auth_type != "none" and not source.our_sender_id:
                raise ValidationError(self.env._("Sender ID is required for authenticated use."))

    def clear_oauth2_token_cache(self):
        self.ensure_one()
        self.sudo().write({"_oauth2_access_token": False, "_oauth2_token_expires_at": False})

    def get_oauth2_token(self, force_refresh=False):
        """A client-credentials token, cached in the record until 60 s before it expires."""
        self.ensure_one()
        if self.auth_type != "oauth2":
            raise UserError(self.env._("This data source does not use OAuth2 authentication."))
        source = self.sudo()
        now = fields.Datetime.now()
        expires_at = source._oauth2_token_expires_at
        if not force_refresh and source._oauth2_access_token and expires_at:
            if now < expires_at - TOKEN_EXPIRY_MARGIN:
                return source._oauth2_access_token
        form = {
            "grant_type": "client_credentials",
            "client_id": source.oauth2_client_id,
            "client_secret": source.oauth2_client_secret,
        }
        if source.oauth2_scope:
            form["scope"] = source.oauth2_scope
        location = "params" if source.oauth2_credential_location == "query" else "data"
        try:
            with httpx.Client(verify=source.verify_ssl, timeout=source.timeout) as client:
                response = client.post(source.oauth2_token_url, **{location: form})
                response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UserError(self.env._("The OAuth2 token request failed.")) from exc
        token = answer.get("access_token")
        if not token:
            raise UserError(self.env._("OAuth2 token response did not contain access_token"))
        source.write(
            {
                "_oauth2_access_token": token,
                "_oauth2_token_expires_at": now + timedelta(seconds=answer.get("expires_in", 3600)),
            }
        )
        return token

    def get_headers(self, force_refresh_token=False):
        self.ensure_one()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth_type == "oauth2":
            token = self.get_oauth2_token(force_refresh=force_refresh_token)
            headers["Authorization"] = f"Bearer {token}"
        elif self.auth_type == "bearer":
            headers["Authorization"] = f"Bearer {self.sudo().bearer_token}"
        elif self.auth_type == "basic":
            raise UserError(self.env._("Basic authentication is not yet implemented."))
        return headers

    def test_connection(self):
        """GET <base_url>/health: 200, 404 or 405 mean the registry was reached."""
        self.ensure_one()
        try:
            with httpx.Client(verify=self.verify_ssl, timeout=self.timeout) as client:
                status = client.get(
                    f"{self.base_url}/health", headers=self.get_headers()
                ).status_code
        except (httpx.HTTPError, UserError) as exc:
            self.write({"state": "error", "last_error": str(exc)})
            return False
        if status not in (200, 404, 405):
            self.write({"state": "error", "last_error": f"HTTP {status}"})
            return False
        self.write(
            {"state": "active", "last_test_date": fields.Datetime.now(), "last_error": False}
        )
        return True

    def action_test_connection(self):
        return self.test_connection()

    @api.model
    def get_by_code(self, code):
        source = self.search([("code", "=", code), ("active", "=", True)], limit=1)
        if not source:
            raise UserError(self.env._("Data source %(code)s not found or inactive.", code=code))
        return source

    @api.model
    def get_by_registry_type(self, registry_type):
        return self.search([("registry_type", "=", registry_type), ("active", "=", True)])
