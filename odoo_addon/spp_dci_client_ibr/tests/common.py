# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Shared fixtures: the embedded IBR sandbox over loopback, users per group, and an
independent DCI signer (PROTOCOL §2, written with ``cryptography``) to craft callbacks."""

import base64
import hashlib
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from unittest.mock import patch

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from spp_dci_ibr import SigningKey
from spp_dci_ibr.callbacks import CallbackEvent
from spp_dci_ibr.sandbox import IBRSandbox

from odoo.tests.common import new_test_user
from odoo.tests.test_cursor import TestCursor
from odoo.tools.misc import Callbacks

from ..models.spp_dci_data_source import data_source_model, signing_key_model

OUR_SENDER_ID = "openspp.test"
# Sandbox faults (set_faults) of a registry that must fail checks, never answer "no match".
FAULTS = {
    "HTTP 503": {"error_rates": {"503": 1.0}},
    "garbage answer": {"garbage_rate": 1.0},
    "bad signature": {"bad_signature_rate": 1.0},
    "wrong reference": {"wrong_reference_rate": 1.0},
    "dropped connection": {"drop_rate": 1.0},
}
GROUP_VIEWER = "spp_dci_client_ibr.group_dci_viewer"
GROUP_OFFICER = "spp_dci_client_ibr.group_dci_officer"
GROUP_MANAGER = "spp_dci_client_ibr.group_dci_manager"
GROUP_ADMIN = "spp_dci_client_ibr.group_dci_admin"


def data_sources(env):
    """The data-source model of our checks, wherever it lives: ``spp.dci.ibr.data.source``
    in plain Odoo, OpenSPP's ``spp.dci.data.source`` with the bridge. Tests create data
    sources only through this, so the whole suite runs on both (``registry_type`` defaults
    to the installed selection's IBR key)."""
    model = data_source_model(env)
    return model.with_context(default_registry_type=model._spp_ibr_registry_types()[0])


def signing_keys(env):
    """The signing-key model of those data sources (ours, or OpenSPP's with the bridge)."""
    return signing_key_model(env)


def now_ts():
    return int(time.time())


def message_ts():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def canonical(header, message):
    """PROTOCOL §2.1: Python's json.dumps, sorted keys, no whitespace, ASCII escapes."""
    return json.dumps({"header": header, "message": message}, sort_keys=True, separators=(",", ":"))


class DciSigner:
    """Signs envelopes the way a registry does (PROTOCOL §2), with knobs to break them."""

    def __init__(self, sender_id, key_id="k1", algorithm="ed25519"):
        self.sender_id = sender_id
        self.key_id = key_id
        self.native = SigningKey.generate(algorithm)
        self.algorithm = self.native.algorithm
        self._private = load_pem_private_key(self.native.private_pem().encode(), password=None)

    @property
    def kid(self):
        return f"{self.sender_id}|{self.key_id}|{self.algorithm}"

    def public_jwk(self):
        return self.native.public_jwk(self.sender_id, self.key_id)

    def signature(
        self,
        header,
        message,
        *,
        created=None,
        expires=None,
        kid=None,
        omit=(),
        raw=None,
        **params,
    ):
        """The ``signature`` field. ``params`` and ``raw`` override parameters as written
        (``raw`` for names that are also arguments, e.g. ``created``); ``omit`` drops them."""
        created = now_ts() if created is None else created
        expires = created + 300 if expires is None else expires
        digest = base64.b64encode(
            hashlib.sha256(canonical(header, message).encode()).digest()
        ).decode()
        signing_string = f"(created): {created}\n(expires): {expires}\ndigest: {digest}"
        if self.algorithm == "ed25519":
            signed = self._private.sign(signing_string.encode())
        else:
            signed = self._private.sign(
                signing_string.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        values = {
            "namespace": "dci",
            "kidId": kid or self.kid,
            "algorithm": self.algorithm,
            "created": str(created),
            "expires": str(expires),
            "headers": "(created) (expires) digest",
            "signature": base64.b64encode(signed).decode(),
        }
        values.update(params)
        values.update(raw or {})
        return ", ".join(f'{name}="{value}"' for name, value in values.items() if name not in omit)


def callback_header(sender_id, action="on-search", **overrides):
    header = {
        "version": "1.0.0",
        "message_id": str(uuid.uuid4()),
        "message_ts": message_ts(),
        "action": action,
        "status": "succ",
        "sender_id": sender_id,
        "receiver_id": OUR_SENDER_ID,
        "total_count": 1,
        "completed_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }
    header.update(overrides)
    return header


def search_message(transaction_id, reference_id=None, records=None, status="succ"):
    """An on-search SearchResponse answering one identifier."""
    item = {
        "timestamp": message_ts(),
        "status": status,
        "data": {
            "version": "1.0.0",
            "reg_type": "ns:org:RegistryType:IBR",
            "reg_record_type": "ns:org:RegistryRecordType:Person",
            "reg_records": records or [],
        },
    }
    if reference_id:
        item["reference_id"] = reference_id
    return {
        "transaction_id": transaction_id,
        "correlation_id": f"corr-{transaction_id}",
        "search_response": [item],
    }


def envelope(signer, header, message, **signature_kwargs):
    return {
        "signature": signer.signature(header, message, **signature_kwargs),
        "header": header,
        "message": message,
    }


def event_from(envelope_dict):
    """The router's ``CallbackEvent`` for an envelope, for tests that call the sink directly
    (as the router does once the envelope verified)."""
    header, message = envelope_dict["header"], envelope_dict["message"]
    raw = json.dumps(envelope_dict).encode()
    items = message.get("search_response") or []
    return CallbackEvent(
        action=header["action"],
        sender_id=header["sender_id"],
        message_id=header["message_id"],
        kid="",
        header=header,
        message=message,
        raw_body=raw,
        transaction_id=message.get("transaction_id"),
        correlation_id=message.get("correlation_id"),
        reference_ids=tuple(item["reference_id"] for item in items if item.get("reference_id")),
        received_at=now_ts(),
    )


class CallbackListener:
    """Loopback HTTP server standing in for our callback URI: it keeps what the sandbox
    posts (the real signed bytes), to be delivered to the Odoo endpoint by the test."""

    ACK = json.dumps(
        {"message": {"ack_status": "ACK", "timestamp": "", "correlation_id": "", "error": None}}
    ).encode()

    def __init__(self):
        self.received = queue.Queue()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                listener.received.put(SimpleNamespace(path=self.path, body=body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(listener.ACK)))
                self.end_headers()
                self.wfile.write(listener.ACK)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        host, port = self.server.server_address
        return f"http://{host}:{port}/dci_ibr/registry/on-search"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def next_callback(self, timeout=15):
        return self.received.get(timeout=timeout)


class SandboxMixin:
    """Class-level sandbox registry (signatures and OAuth2 required) and a fully
    configured data source pointing at it."""

    @classmethod
    def setup_sandbox(cls):
        sandbox = IBRSandbox(synthetic=200, seed=7, require_signatures=True, require_auth=True)
        cls.sandbox = sandbox.__enter__()
        cls.addClassCleanup(sandbox.__exit__, None, None, None)
        cls.listener = CallbackListener().start()
        cls.addClassCleanup(cls.listener.stop)
        env = cls.env
        cls.signing_key = signing_keys(env).create(
            {"name": "Test key", "key_id": "test-key", "sender_id": OUR_SENDER_ID}
        )
        cls.signing_key.action_generate_key()
        cls.signing_key.action_activate()
        cls.sandbox.register_client_key(OUR_SENDER_ID, json.loads(cls.signing_key.public_jwk))
        cls.registry_sender = env["spp.dci.ibr.sender"].create(
            {
                "name": "Sandbox IBR",
                "sender_id": cls.sandbox.sender_id,
                "jwks_url": cls.sandbox.jwks_url,
                "allow_insecure_jwks": True,
            }
        )
        cls.registry_sender.fetch_public_key()
        cls.data_source = data_sources(env).create(cls.data_source_vals())

    @classmethod
    def data_source_vals(cls, **overrides):
        vals = {
            "name": "Sandbox IBR",
            "code": "sandbox_ibr",
            "registry_type": data_sources(cls.env)._spp_ibr_registry_types()[0],
            "base_url": cls.sandbox.url.rstrip("/"),
            "auth_type": "oauth2",
            "oauth2_token_url": cls.sandbox.token_url,
            "oauth2_client_id": cls.sandbox.client_id,
            "oauth2_client_secret": cls.sandbox.client_secret,
            "our_sender_id": OUR_SENDER_ID,
            "our_callback_uri": cls.listener.url,
            "signing_key_id": cls.signing_key.id,
            "registry_sender_id": cls.registry_sender.id,
            "timeout": 10,
            "connect_timeout": 5,
            "max_retries": 0,
        }
        vals.update(overrides)
        return vals

    @classmethod
    def identifier(cls, status):
        return cls.sandbox.sample_identifiers(status=status, n=1)[0]

    @classmethod
    def identifiers(cls, status, n):
        return cls.sandbox.sample_identifiers(status=status, n=n)

    def send_after_commit(self):
        """Run what the test transaction left for after its commit (the asynchronous sends)
        as Odoo runs it after a real commit, on cursors of the test transaction."""
        if type(self)._registry_patched:  # HttpCase: the registry is in test mode already
            self.env.flush_all()
            self.env.cr.postcommit.run()
            self.env.invalidate_all()
            return
        with self.enter_registry_test_mode():
            self.env.cr.postcommit.run()

    def run_batch_workers(self):
        """Run what a batch left to the background, as production runs it: the batch cron,
        or with queue_job (which auto-installs the queue bridge) the chunks' queue jobs."""
        if "queue.job" not in self.env:
            self.env["spp.dci.duplication.check"]._cron_run_queued_checks()
            return
        from odoo.addons.queue_job.job import Job  # only with queue_job

        jobs = self.env["queue.job"].search(
            [("model_name", "=", "spp.dci.duplication.check"), ("state", "=", "pending")],
            order="id",
        )
        for job in jobs:
            Job.load(self.env, job.uuid).perform()

    def new_partner(self, *pairs, name=None):
        """A registrant with these identifiers of its own."""
        return self.env["res.partner"].create(
            {
                "name": name or f"Registrant {pairs[0][1] if pairs else 'without identifier'}",
                "spp_dci_identifier_ids": [
                    (0, 0, {"id_type": id_type, "value": value}) for id_type, value in pairs
                ],
            }
        )

    def new_check(self, pair, source=None, partner=None):
        partner = partner or self.env["res.partner"].create({"name": f"Registrant {pair[1]}"})
        return self.env["spp.dci.duplication.check"].create(
            {
                "partner_id": partner.id,
                "identifier_type": pair[0],
                "identifier_value": pair[1],
                "data_source_id": (source or self.data_source).id,
            }
        )


class UsersMixin:
    @classmethod
    def setup_users(cls):
        env = cls.env
        cls.viewer = new_test_user(
            env, login="dci_viewer", groups=f"base.group_user,{GROUP_VIEWER}"
        )
        cls.officer = new_test_user(
            env, login="dci_officer", groups=f"base.group_user,{GROUP_OFFICER}"
        )
        cls.manager = new_test_user(
            env, login="dci_manager", groups=f"base.group_user,{GROUP_MANAGER}"
        )
        cls.dci_admin = new_test_user(
            env, login="dci_admin", groups=f"base.group_user,{GROUP_ADMIN}"
        )
        cls.system_admin = new_test_user(
            env, login="dci_sysadmin", groups=f"base.group_system,{GROUP_ADMIN}"
        )
        cls.plain_user = new_test_user(env, login="dci_nobody", groups="base.group_user")
        cls.callback_user = env.ref("spp_dci_client_ibr.user_dci_ibr_callback")


def commit_then_run_postcommit(original):
    """A real commit runs the post-commit hooks; a test cursor drops them. Requests of these
    tests commit like production does, so a check is sent after its request's commit."""

    def commit(cursor):
        hooks, cursor.postcommit = cursor.postcommit, Callbacks()
        original(cursor)
        hooks.run()

    return commit


class LiveHttpMixin:
    """For ``HttpCase`` tests through Odoo's real HTTP server: requests commit as in
    production, and ``self.callbacks_filed`` is set once the callback endpoint has filed a
    callback."""

    @classmethod
    def commit_like_production(cls):
        cls.startClassPatcher(
            patch.object(TestCursor, "commit", commit_then_run_postcommit(TestCursor.commit))
        )

    def watch_filed_callbacks(self):
        self.http_request_allow_all = True  # the registry's callback has no session cookie
        self.callbacks_filed = threading.Event()
        log_model = type(self.env["spp.dci.callback.log"])
        original_sink = log_model._spp_sink

        def sink(logs, event):
            try:
                return original_sink(logs, event)
            finally:
                self.callbacks_filed.set()

        self.startPatcher(patch.object(log_model, "_spp_sink", sink))
