# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Connection settings of a DCI registry; builds the native client from them."""

import hashlib
import json
import logging
import re

from spp_dci_ibr import DCIClient, IBRService, SigningKey
from spp_dci_ibr.exceptions import DCIError, RegistryError

from odoo import api, fields, models, tools
from odoo.exceptions import UserError, ValidationError

from .errors import dci_user_errors
from .notification import notification

_logger = logging.getLogger(__name__)

CODE_RE = re.compile(r"^[a-z0-9_]+$")
# Identifier sent by "Test connection": any answered envelope proves the registry is reachable.
CONNECTION_TEST_IDENTIFIER = ("UIN", "spp-dci-connection-test")
# field name -> path key of the native client
PATH_FIELDS = {
    "async_search_endpoint": "search",
    "search_endpoint": "sync_search",
    "subscribe_endpoint": "subscribe",
    "unsubscribe_endpoint": "unsubscribe",
    "txn_status_endpoint": "txn_status",
    "sync_txn_status_endpoint": "sync_txn_status",
    "enrolled_endpoint": "enrolled",
    "enrollment_updates_endpoint": "enrollment_updates",
}


CALLBACK_URI_HELP = (
    "Sent as sender_uri of asynchronous requests: the endpoint's universal "
    "callback route https://<odoo>/dci_ibr/registry/callback, which takes every callback "
    "action (on-search, on-subscribe, notify, txn/on-status) of the registry"
)


def data_source_model(env):
    """The data-source model our checks use: ``spp.dci.ibr.data.source`` in plain Odoo,
    OpenSPP's ``spp.dci.data.source`` when the bridge ``spp_dci_client_ibr_openspp`` is
    installed (it redefines the checks' ``data_source_id``). Code never names the model."""
    return env[env["spp.dci.duplication.check"]._fields["data_source_id"].comodel_name]


def signing_key_model(env):
    """The signing-key model of that data-source model (its ``signing_key_id`` comodel)."""
    return env[data_source_model(env)._fields["signing_key_id"].comodel_name]


def ibr_source_domain(records):
    """Field domain of a ``data_source_id`` (callable: evaluated on the model holding the
    field): the IBR sources, by the IBR key(s) of the installed ``registry_type``."""
    comodel = records.env[records._fields["data_source_id"].comodel_name]
    return [("registry_type", "in", comodel._spp_ibr_registry_types())]


class SppDciIbrDataSourceMixin(models.AbstractModel):
    """Everything of ours about a DCI data source, on top of fields OpenSPP's
    ``spp.dci.data.source`` also has (``name``, ``code``, ``registry_type``, ``base_url``,
    ``auth_type``, ``bearer_token``, ``oauth2_*``, ``signing_key_id``, ``verify_ssl``,
    ``timeout``, ``active``, ``our_sender_id``, ``our_callback_uri``, ``receiver_id``,
    ``search_endpoint``, ``subscribe_endpoint``, ``auth_endpoint``, ``state``,
    ``last_test_date``, ``last_error``). Those are read with OpenSPP's meaning and never
    redefined here: the mixin only adds fields and methods of its own."""

    _name = "spp.dci.ibr.data.source.mixin"
    _description = "DCI IBR Data Source (mixin)"

    allow_unsigned = fields.Boolean(
        string="Send Unsigned Requests",
        help="Explicit opt-in: requests are sent without signature when no key is set.",
    )
    accept_unverified_answers = fields.Boolean(
        groups="base.group_system",
        copy=False,
        help="Explicit opt-in, for a registry that signs nothing: without a registry sender "
        "(whose keys verify the answers), the client refuses to read answers unless this is "
        "set. Anyone who can tamper with the connection can then forge a 'not enrolled' "
        "answer; checks completed this way say that their answer was not verified.",
    )
    registry_sender_id = fields.Many2one(
        "spp.dci.ibr.sender",
        string="Registry (Callback Sender)",
        help="The registry's sender entry: its keys verify the registry's signed answers, "
        "and only its callbacks may complete checks sent to this data source.",
    )
    ca_bundle = fields.Char(
        string="CA Bundle Path", groups="base.group_system", help="PEM file of extra trust roots"
    )
    connect_timeout = fields.Integer(string="Connect Timeout (seconds)", default=10)
    max_retries = fields.Integer(default=2)
    batch_size = fields.Integer(default=100, help="Identifiers per request envelope in batches")
    batch_concurrency = fields.Integer(default=4, help="Requests in flight during a batch")
    async_timeout_minutes = fields.Integer(
        string="Callback Timeout (minutes)",
        default=60,
        help="An asynchronous check still waiting for its callback after this delay fails.",
    )
    async_search_endpoint = fields.Char(default="/registry/search")
    unsubscribe_endpoint = fields.Char(default="/registry/unsubscribe")
    txn_status_endpoint = fields.Char(default="/registry/txn/status")
    sync_txn_status_endpoint = fields.Char(default="/registry/sync/txn/status")
    enrolled_endpoint = fields.Char(default="/registry/sync/enrolled")
    enrollment_updates_endpoint = fields.Char(default="/registry/sync/enrollment/updates")

    @api.constrains("connect_timeout")
    def _check_spp_connect_timeout(self):
        for source in self:
            if source.connect_timeout <= 0:
                raise ValidationError(self.env._("The connect timeout must be positive."))

    @api.constrains("batch_size", "batch_concurrency", "async_timeout_minutes")
    def _check_spp_batch_values(self):
        for source in self:
            if min(source.batch_size, source.batch_concurrency, source.async_timeout_minutes) <= 0:
                raise ValidationError(
                    self.env._("Batch size, concurrency and callback timeout must be positive.")
                )

    @api.model
    def _spp_ibr_registry_types(self):
        """The keys of the installed ``registry_type`` selection that mean IBR: ``ibr`` here,
        ``IBR`` or ``ns:org:RegistryType:IBR`` in OpenSPP versions (never hard-coded)."""
        keys = self._fields["registry_type"].get_values(self.env)
        return [key for key in keys if key.casefold() == "ibr" or key.casefold().endswith(":ibr")]

    def _spp_is_ibr(self):
        self.ensure_one()
        return self.registry_type in self._spp_ibr_registry_types()

    @api.model
    def _spp_default_ibr_source(self):
        return self.search(
            [("registry_type", "in", self._spp_ibr_registry_types())], order="id", limit=1
        )

    def _spp_paths(self):
        self.ensure_one()
        return {key: self[name] for name, key in PATH_FIELDS.items() if self[name]}

    def _spp_token_url(self):
        self.ensure_one()
        if self.oauth2_token_url:
            return self.oauth2_token_url
        return f"{self.base_url}{self.auth_endpoint or '/oauth2/client/token'}"

    def _spp_client_config(self):
        """Every keyword argument of the native client, as plain values (key material as
        PEM text). Reads the secrets with sudo: the caller must already be allowed to run
        checks; nothing secret is returned to a user or logged."""
        self.ensure_one()
        source = self.sudo()
        if source.auth_type not in ("none", "bearer", "oauth2"):
            # OpenSPP's "basic" (which its own client does not implement either).
            raise UserError(
                self.env._(
                    "Data source %(name)s: authentication type %(auth)s is not supported.",
                    name=source.name,
                    auth=source.auth_type,
                )
            )
        signing_pem = key_id = None
        sender_id = source.our_sender_id
        if source.signing_key_id:
            key = source.signing_key_id
            if not key._is_usable():
                raise UserError(
                    self.env._("Signing key %(name)s is not active or has expired.", name=key.name)
                )
            signing_pem, key_id = key.private_key, key.key_id
            sender_id = sender_id or key.sender_id
        elif not source.allow_unsigned:
            raise UserError(
                self.env._(
                    "Data source %(name)s has no active signing key; set one or explicitly "
                    "allow unsigned requests.",
                    name=source.name,
                )
            )
        if not sender_id:
            raise UserError(self.env._("Data source %(name)s has no sender ID.", name=source.name))
        config = {
            "base_url": source.base_url,
            "sender_id": sender_id,
            "receiver_id": source.receiver_id or None,
            "callback_uri": source.our_callback_uri or None,
            "auth": source.auth_type,
            "signing_key": signing_pem,
            "key_id": key_id,
            "unsigned": signing_pem is None,
            "paths": source._spp_paths(),
            "timeout": float(source.timeout),
            "connect_timeout": float(source.connect_timeout),
            "verify_tls": source.verify_ssl,
            "ca_bundle": source.ca_bundle or None,
            "max_retries": source.max_retries,
            "accept_unverified_answers": bool(source.accept_unverified_answers),
        }
        if source.registry_sender_id:
            config.update(source.registry_sender_id._spp_client_keys())
        if source.auth_type == "bearer":
            config["bearer_token"] = source.bearer_token or None
        elif source.auth_type == "oauth2":
            config.update(
                token_url=source._spp_token_url(),
                client_id=source.oauth2_client_id,
                client_secret=source.oauth2_client_secret or None,
                scope=source.oauth2_scope or None,
                credentials_location=source.oauth2_credential_location,
            )
        return config

    def _spp_dci_client(self):
        """The native client for this registry, shared by every check of this worker process
        until the configuration changes (the cache key is a digest of all of it, secrets and
        keys included): its connection pool, TLS sessions and parsed keys are reused. The
        native client rebuilds its pool after a fork, so Odoo's prefork workers can share it."""
        self.ensure_one()
        config = self._spp_client_config()
        digest = hashlib.sha256(
            json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        return self._spp_cached_client(digest, config, self.name)

    @api.model
    @tools.ormcache("digest")
    def _spp_cached_client(self, digest, config, name):
        kwargs = dict(config)
        with dci_user_errors(
            self.env, self.env._("Data source %(name)s is misconfigured", name=name)
        ):
            if kwargs["signing_key"]:
                kwargs["signing_key"] = SigningKey.from_pem(kwargs["signing_key"])
            return DCIClient(**kwargs)

    def _spp_ibr_service(self):
        """The native IBR service over this registry's client."""
        self.ensure_one()
        return IBRService(self._spp_dci_client())

    def action_spp_test_ibr_connection(self):
        """Fetch a token (OAuth2) and send one search: any answered envelope, even a
        registry error, proves the registry is reachable and our credentials work.

        The outcome is stored on the data source either way (a failure is not an
        exception: the transaction commits it), and the form reloads to show it."""
        self.ensure_one()
        try:
            client = self._spp_dci_client()
            if self.sudo().auth_type == "oauth2":
                client.check_auth()
            try:
                client.search_by_id(*CONNECTION_TEST_IDENTIFIER)
            except RegistryError:
                _logger.info("Connection test of %s: the registry answered an error", self.code)
        except (DCIError, UserError) as exc:
            self.write(
                {"state": "error", "last_test_date": fields.Datetime.now(), "last_error": str(exc)}
            )
            return notification(
                self.env._("Connection to %(name)s failed: %(error)s", name=self.name, error=exc),
                "danger",
            )
        self.write(
            {"state": "active", "last_test_date": fields.Datetime.now(), "last_error": False}
        )
        return notification(
            self.env._("Connection to %(name)s succeeded.", name=self.name), "success"
        )


class SppDciIbrDataSource(models.Model):
    """Our own data sources (plain Odoo). With OpenSPP's DCI base installed, the bridge
    ``spp_dci_client_ibr_openspp`` puts the mixin on OpenSPP's ``spp.dci.data.source``
    instead, and our checks use that model (``data_source_model``)."""

    _name = "spp.dci.ibr.data.source"
    _inherit = "spp.dci.ibr.data.source.mixin"
    _description = "DCI Data Source"
    _order = "name"

    name = fields.Char(required=True)
    code = fields.Char(required=True, help="Short lowercase identifier, e.g. ibr_national")
    registry_type = fields.Selection(
        [
            ("social_registry", "Social Registry"),
            ("ibr", "Integrated Beneficiary Registry (IBR)"),
            ("crvs", "Civil Registration and Vital Statistics (CRVS)"),
            ("disability_registry", "Disability Registry (DR)"),
            ("functional_registry", "Functional Registry (FR)"),
        ],
        default="ibr",
        required=True,
    )
    base_url = fields.Char(string="Base URL", required=True)
    auth_type = fields.Selection(
        [("none", "None"), ("bearer", "Bearer Token"), ("oauth2", "OAuth2")],
        string="Authentication Type",
        default="oauth2",
        required=True,
    )
    bearer_token = fields.Char(groups="base.group_system", copy=False)
    oauth2_token_url = fields.Char(string="OAuth2 Token URL")
    oauth2_client_id = fields.Char(string="OAuth2 Client ID")
    oauth2_client_secret = fields.Char(
        string="OAuth2 Client Secret", groups="base.group_system", copy=False
    )
    oauth2_scope = fields.Char(string="OAuth2 Scope")
    oauth2_credential_location = fields.Selection(
        [
            ("body", "Request body (RFC 6749)"),
            ("basic", "HTTP Basic (RFC 6749 §2.3.1)"),
            ("query", "Query parameters (OpenCRVS workaround)"),
        ],
        string="OAuth2 Credential Location",
        default="body",
        required=True,
    )
    signing_key_id = fields.Many2one("spp.dci.ibr.signing.key", domain=[("state", "=", "active")])
    verify_ssl = fields.Boolean(string="Verify TLS", default=True)
    timeout = fields.Integer(string="Timeout (seconds)", default=30)
    active = fields.Boolean(default=True)
    notes = fields.Text()
    our_sender_id = fields.Char(string="Our Sender ID")
    our_callback_uri = fields.Char(
        string="Callback URI",
        help=CALLBACK_URI_HELP,
    )
    receiver_id = fields.Char(string="Receiver ID")
    search_endpoint = fields.Char(default="/registry/sync/search")
    subscribe_endpoint = fields.Char(default="/registry/subscribe")
    auth_endpoint = fields.Char(
        default="/oauth2/client/token",
        help="Token path under the base URL, used when no OAuth2 token URL is set",
    )
    state = fields.Selection(
        [
            ("draft", "Not Tested"),
            ("active", "Connected"),
            ("error", "Connection Error"),
        ],
        default="draft",
        readonly=True,
        copy=False,
    )
    last_test_date = fields.Datetime(readonly=True, copy=False)
    last_error = fields.Text(readonly=True, copy=False)

    _code_uniq = models.Constraint("UNIQUE(code)", "The data source code must be unique.")
    _timeout_positive = models.Constraint(
        "CHECK(timeout > 0 AND connect_timeout > 0)", "Timeouts must be positive."
    )
    _batch_positive = models.Constraint(
        "CHECK(batch_size > 0 AND batch_concurrency > 0 AND async_timeout_minutes > 0)",
        "Batch size, concurrency and callback timeout must be positive.",
    )

    @api.constrains("code")
    def _check_code_format(self):
        for source in self:
            if source.code and not CODE_RE.match(source.code):
                raise ValidationError(
                    self.env._(
                        "Code %(code)s may only contain lowercase letters, digits and underscores.",
                        code=source.code,
                    )
                )

    @api.constrains("base_url")
    def _check_base_url(self):
        for source in self:
            if not source.base_url.startswith(("https://", "http://")):
                raise ValidationError(self.env._("The base URL must be an http(s) URL."))
            if source.base_url.endswith("/"):
                raise ValidationError(self.env._("The base URL must not end with a slash."))

    @api.constrains("auth_type", "oauth2_client_id")
    def _check_auth(self):
        for source in self.sudo():
            if source.auth_type == "oauth2" and not source.oauth2_client_id:
                raise ValidationError(self.env._("OAuth2 needs a client ID."))

    @api.model
    def get_by_code(self, code):
        """OpenSPP-compatible: the active data source with this code."""
        source = self.search([("code", "=", code)], limit=1)
        if not source:
            raise UserError(self.env._("Data source %(code)s not found or inactive.", code=code))
        return source

    @api.model
    def get_by_registry_type(self, registry_type):
        return self.search([("registry_type", "=", registry_type)])

    def action_test_connection(self):
        """OpenSPP-compatible name of the IBR connection test (on OpenSPP's own model the
        name is OpenSPP's /health test; ours is ``action_spp_test_ibr_connection`` there)."""
        return self.action_spp_test_ibr_connection()

    def test_connection(self):
        """OpenSPP-compatible alias."""
        return self.action_spp_test_ibr_connection()
