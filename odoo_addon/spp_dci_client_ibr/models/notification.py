# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The toast every button of the addon answers with."""

# Restores the current view: a form shows what the button just stored, not the record as
# it was when the form was opened.
SOFT_RELOAD = {"type": "ir.actions.client", "tag": "soft_reload"}


def notification(message, kind="info", next_action=SOFT_RELOAD):
    """A toast (sticky for a failure), then ``next_action``: by default a reload."""
    params = {"message": message, "type": kind, "sticky": kind == "danger"}
    if next_action:
        params["next"] = next_action
    return {"type": "ir.actions.client", "tag": "display_notification", "params": params}
