# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The one place a ``DCIError`` of the native package becomes what a user is shown."""

from contextlib import contextmanager

from spp_dci_ibr.exceptions import DCIError

from odoo.exceptions import UserError


def dci_user_error(env, exc, what=None):
    """The ``UserError`` shown for ``exc``: ``what`` (already translated, e.g. "The IBR
    search failed"), a colon, then the error's text (secrets are masked by the core)."""
    text = str(exc)
    if what:
        text = env._("%(what)s: %(error)s", what=what, error=text)
    return UserError(text)


@contextmanager
def dci_user_errors(env, what=None):
    """``with dci_user_errors(env, env._("...")):`` turns a ``DCIError`` raised inside into
    the ``UserError`` of :func:`dci_user_error`, chained to it."""
    try:
        yield
    except DCIError as exc:
        raise dci_user_error(env, exc, what) from exc
