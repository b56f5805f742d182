"""Static checks of the Odoo addons (no Odoo needed): manifest, data files, XML, access
rights, fields used in views, security attributes, readme and translations.

The models are read with ``ast``: fields, methods and constraints are collected from the
addon's Python sources, the way Odoo would see them once loaded.
"""

from __future__ import annotations

import ast
import csv
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "odoo_addon"
ADDON = ROOT / "spp_dci_client_ibr"
QUEUE_ADDON = ROOT / "spp_dci_client_ibr_queue"
BRIDGE_ADDON = ROOT / "spp_dci_client_ibr_openspp"
# OpenSPP's DCI base: no module of ours may take one of these names (a pip-installed wheel's
# addons shadow any addons_path entry), and no model of ours may take one of these model names
# without extending OpenSPP's (issue 12, OPENSPP section of the readme).
OPENSPP_BASE_MODULES = {"spp_dci", "spp_dci_client", "spp_dci_server", "spp_registry"}
OPENSPP_BASE_MODELS = {"spp.dci.data.source", "spp.dci.signing.key"}
MODULE = ADDON.name

ADMIN_GROUP = f"{MODULE}.group_dci_admin"
SYSTEM_GROUP = "base.group_system"
# External ids of the dependencies the addon may point at.
KNOWN_EXTERNAL_IDS = {
    "base.group_user",
    "base.group_system",
    "base.group_no_one",
    "base.group_erp_manager",
    "base.user_root",
    "base.user_admin",
    "base.menu_custom",
    "base.model_res_partner",
    "base.view_partner_form",
    "fastapi.group_fastapi_endpoint_runner",
}
MAGIC_FIELDS = {"id", "display_name", "create_date", "create_uid", "write_date", "write_uid"}
# Names a view expression may use besides the model's fields.
EXPRESSION_NAMES = {"True", "False", "None", "uid", "context", "parent", "context_today", "id"}
EXPRESSION_ATTRS = ("invisible", "readonly", "required", "column_invisible")
SECRET_NAME = re.compile(r"(secret|private_key|password)$|^bearer_token$")
# Personal data: readable by the DCI administrator group only.
PII_FIELDS = {
    ("spp.dci.duplication.check", "identifier_value"),
    ("spp.dci.duplication.check", "matched_programs"),
    ("spp.dci.duplication.check", "raw_response"),
    ("spp.dci.duplication.check.detail", "id_value"),
    ("spp.dci.duplication.check.detail", "response_json"),
    ("spp.dci.callback.log", "raw_body"),
}
REF_IN_EVAL = re.compile(r"""ref\(\s*['"]([^'"]+)['"]\s*\)""")
ACCESS_HEADER = [
    "id",
    "name",
    "model_id:id",
    "group_id:id",
    "perm_read",
    "perm_write",
    "perm_create",
    "perm_unlink",
]


# --------------------------------------------------------------------------- model index


@dataclass
class FieldDef:
    name: str
    kind: str
    kwargs: dict[str, object]
    comodel: str | None


@dataclass
class ModelDef:
    name: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    methods: set[str] = field(default_factory=set)
    constraints: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    transient: bool = False
    abstract: bool = False
    inherits: tuple[str, ...] = ()


def _module_constants(trees: list[ast.Module]) -> dict[str, object]:
    constants: dict[str, object] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        constants[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        continue
    return constants


def _value(node: ast.AST, constants: dict[str, object]) -> object:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _python_files(addon: Path) -> list[Path]:
    return sorted(p for p in addon.rglob("*.py") if "tests" not in p.relative_to(addon).parts)


def load_models(addon: Path = ADDON) -> dict[str, ModelDef]:
    trees = [ast.parse(p.read_text(), filename=str(p)) for p in _python_files(addon)]
    constants = _module_constants(trees)
    models: dict[str, ModelDef] = {}
    for tree in trees:
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            attrs = {
                n.targets[0].id: n.value
                for n in cls.body
                if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
            }
            name = _value(attrs["_name"], constants) if "_name" in attrs else None
            if name is None and "_inherit" in attrs:
                name = _value(attrs["_inherit"], constants)
            if not isinstance(name, str):
                continue
            model = models.setdefault(name, ModelDef(name))
            bases = {ast.unparse(b) for b in cls.bases}
            model.transient = model.transient or "models.TransientModel" in bases
            model.abstract = model.abstract or "models.AbstractModel" in bases
            parents = _value(attrs["_inherit"], constants) if "_inherit" in attrs else ()
            parents = (parents,) if isinstance(parents, str) else tuple(parents or ())
            model.inherits += tuple(p for p in parents if p != name)
            if "_description" in attrs:
                model.description = _value(attrs["_description"], constants)
            for attr, node in attrs.items():
                if not isinstance(node, ast.Call):
                    continue
                func = ast.unparse(node.func)
                if func.startswith("fields."):
                    kwargs = {kw.arg: _value(kw.value, constants) for kw in node.keywords}
                    comodel = None
                    if func in ("fields.Many2one", "fields.One2many", "fields.Many2many"):
                        comodel = kwargs.get("comodel_name") or (
                            _value(node.args[0], constants) if node.args else None
                        )
                    model.fields[attr] = FieldDef(attr, func[7:], kwargs, comodel)
                elif func == "models.Constraint":
                    model.constraints[attr] = _value(node.args[0], constants)
            model.methods |= {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    # What a model gets from the mixins it inherits (its own definitions win).
    for model in models.values():
        for parent in model.inherits:
            if parent in models:
                model.fields = {**models[parent].fields, **model.fields}
                model.methods |= models[parent].methods
    return models


MODELS = load_models()


def manifest(addon: Path = ADDON) -> dict:
    return ast.literal_eval((addon / "__manifest__.py").read_text())


def model_xmlid(model_name: str) -> str:
    return "model_" + model_name.replace(".", "_")


def field_names(model: str) -> set[str]:
    assert model in MODELS, f"unknown model {model}"
    return set(MODELS[model].fields) | MAGIC_FIELDS


# --------------------------------------------------------------------------- manifest


def test_manifest():
    data = manifest()
    assert data["license"] == "LGPL-3"
    assert re.fullmatch(r"19\.0\.\d+\.\d+\.\d+", data["version"]), data["version"]
    # It installs on plain Odoo 19 with OCA fastapi (its router): no OpenSPP module needed.
    assert "fastapi" in data["depends"]
    assert not [name for name in data["depends"] if name.startswith(("spp_", "g2p_"))]
    assert data["external_dependencies"] == {"python": ["spp-dci-client-ibr"]}
    assert data.get("installable", True) is True
    assert not data.get("application")


def test_queue_glue_manifest_and_hook():
    data = manifest(QUEUE_ADDON)
    assert data["license"] == "LGPL-3"
    assert re.fullmatch(r"19\.0\.\d+\.\d+\.\d+", data["version"])
    # Auto-installed exactly when both queue_job and the addon are.
    assert sorted(data["depends"]) == ["queue_job", MODULE]
    assert data["auto_install"] is True
    for name in data.get("data", []):
        ET.parse(QUEUE_ADDON / name)
    queue_models = load_models(QUEUE_ADDON)
    overridden = queue_models["spp.dci.duplication.check"].methods
    assert "_spp_dispatch_chunks" in overridden
    assert overridden <= MODELS["spp.dci.duplication.check"].methods, "overrides must exist"
    for doc in ("DESCRIPTION.md", "USAGE.md"):
        assert (QUEUE_ADDON / "readme" / doc).read_text().strip()


def test_data_files_exist_and_every_file_is_listed():
    listed = manifest()["data"]
    assert len(listed) == len(set(listed)), "a data file is listed twice"
    for name in listed:
        assert (ADDON / name).is_file(), f"{name} listed but missing"
    on_disk = {
        str(p.relative_to(ADDON))
        for folder in ("data", "views", "security", "wizards")
        for p in (ADDON / folder).glob("*")
        if p.suffix in (".xml", ".csv")
    }
    assert on_disk == set(listed), on_disk ^ set(listed)
    # Load order: groups, access rights, record rules, then data and views.
    assert listed[:3] == [
        "security/security.xml",
        "security/ir.model.access.csv",
        "security/ir_rules.xml",
    ]


def test_layout():
    for path in (
        "__init__.py",
        "dependencies.py",
        "models/__init__.py",
        "routers/__init__.py",
        "tests/__init__.py",
    ):
        assert (ADDON / path).is_file(), path
    for doc in ("DESCRIPTION.md", "CONFIGURE.md", "USAGE.md"):
        assert len((ADDON / "readme" / doc).read_text().strip()) > 100, doc
    assert (ADDON / "i18n" / f"{MODULE}.pot").is_file()
    # The addon ships inside the wheel as a namespace package: never odoo/__init__.py.
    assert not (ROOT / "__init__.py").exists()


# --------------------------------------------------------------------------- XML


def xml_files(addon: Path = ADDON) -> list[Path]:
    return sorted(addon.rglob("*.xml"))


@pytest.mark.parametrize("path", xml_files() + xml_files(QUEUE_ADDON), ids=lambda p: p.name)
def test_xml_parses(path):
    root = ET.parse(path).getroot()
    assert root.tag == "odoo"


def iter_view_records():
    for path in xml_files():
        for record in ET.parse(path).getroot().iter("record"):
            if record.get("model") == "ir.ui.view":
                fields_ = {f.get("name"): f for f in record.findall("field")}
                yield path, record.get("id"), fields_


def test_views_use_list_and_no_attrs_or_states():
    seen = 0
    for path in xml_files():
        text = path.read_text()
        assert "<tree" not in text, f"{path.name}: Odoo 18+ uses <list>"
        for element in ET.parse(path).getroot().iter():
            assert "attrs" not in element.attrib, f"{path.name}: attrs= is gone since 17"
            assert "states" not in element.attrib, f"{path.name}: states= is gone since 17"
            seen += 1
    assert seen > 100


def _expression_names(expression: str) -> set[str]:
    tree = ast.parse(expression.strip(), mode="eval")
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    return names - (attributes & {"parent", "context"})


def _check_arch(element, model: str, path: Path, problems: list[str]) -> None:
    known = field_names(model)
    for child in element:
        for attr, expression in child.attrib.items():
            if attr in EXPRESSION_ATTRS or attr.startswith("decoration-"):
                unknown = _expression_names(expression) - known - EXPRESSION_NAMES
                if unknown:
                    problems.append(f"{path.name}: {attr}={expression!r} uses {unknown} ({model})")
        if child.tag == "field":
            name = child.get("name")
            if name not in known:
                problems.append(f"{path.name}: field {name} not on {model}")
                continue
            subviews = [c for c in child if c.tag in ("list", "form", "kanban")]
            for subview in subviews:
                comodel = MODELS[model].fields[name].comodel
                _check_arch(subview, comodel, path, problems)
            if subviews:
                continue
        elif child.tag == "label" and child.get("for") and child.get("for") not in known:
            problems.append(f"{path.name}: label for unknown field {child.get('for')}")
        elif child.tag == "button" and child.get("type") == "object":
            if child.get("name") not in MODELS[model].methods:
                problems.append(f"{path.name}: button {child.get('name')} not a method of {model}")
        elif child.tag == "filter" and child.get("context"):
            group_by = re.search(r"'group_by':\s*'([\w.]+)", child.get("context"))
            if group_by and group_by.group(1).split(":")[0] not in known:
                problems.append(f"{path.name}: group_by unknown field {group_by.group(1)}")
        _check_arch(child, model, path, problems)


def test_every_field_used_in_a_view_exists():
    problems: list[str] = []
    checked = 0
    for path, _xmlid, fields_ in iter_view_records():
        model = fields_["model"].text
        assert model in MODELS, f"{path.name}: view of a model this addon does not define"
        _check_arch(fields_["arch"], model, path, problems)
        checked += 1
    assert checked >= 25
    assert not problems, "\n".join(problems)


def test_every_model_has_its_views_and_action():
    kinds: dict[str, set[str]] = {}
    for _path, _xmlid, fields_ in iter_view_records():
        if "inherit_id" in fields_:
            continue
        arch = next(iter(fields_["arch"]))
        kinds.setdefault(fields_["model"].text, set()).add(arch.tag)
    actions = {
        record.find("field[@name='res_model']").text
        for path in xml_files()
        for record in ET.parse(path).getroot().iter("record")
        if record.get("model") == "ir.actions.act_window"
    }
    ours = {name for name, model in MODELS.items() if model.description and not model.abstract}
    for name in ours:
        if MODELS[name].transient:
            assert "form" in kinds.get(name, set()), name
        else:
            assert {"list", "form", "search"} <= kinds.get(name, set()), (name, kinds.get(name))
        assert name in actions, f"no window action for {name}"


def _view_fields(model: str, name: str):
    for path, _xmlid, fields_ in iter_view_records():
        if fields_["model"].text != model:
            continue
        for element in fields_["arch"].iter("field"):
            if element.get("name") == name:
                yield path, element


def test_secret_fields_are_for_system_administrators_only():
    secrets = [
        (model.name, f)
        for model in MODELS.values()
        for f in model.fields.values()
        if SECRET_NAME.search(f.name) and f.kind in ("Char", "Text")
    ]
    assert {(m, f.name) for m, f in secrets} >= {
        ("spp.dci.ibr.data.source", "bearer_token"),
        ("spp.dci.ibr.data.source", "oauth2_client_secret"),
        ("spp.dci.ibr.signing.key", "private_key"),
    }
    for model, definition in secrets:
        assert definition.kwargs.get("groups") == SYSTEM_GROUP, (model, definition.name)
        assert definition.kwargs.get("copy") is False, (model, definition.name)
        for path, element in _view_fields(model, definition.name):
            assert element.get("groups") == SYSTEM_GROUP, (path.name, definition.name)
            if definition.kind == "Char":
                assert element.get("password") == "True", (path.name, definition.name)
    # The private key is never put in a view at all.
    assert not list(_view_fields("spp.dci.ibr.signing.key", "private_key"))


def test_personal_data_is_for_dci_administrators_only():
    for model, name in PII_FIELDS:
        groups = MODELS[model].fields[name].kwargs.get("groups", "")
        assert ADMIN_GROUP in groups.split(","), (model, name)
        assert not {g for g in groups.split(",") if "viewer" in g or "officer" in g}
        for path, element in _view_fields(model, name):
            assert ADMIN_GROUP in (element.get("groups") or "").split(","), (path.name, name)


def test_result_stays_empty_until_a_check_ran():
    result = MODELS["spp.dci.duplication.check"].fields["result"]
    assert "default" not in result.kwargs
    assert not result.kwargs.get("required")
    state = MODELS["spp.dci.duplication.check"].fields["state"]
    assert state.kwargs.get("default") == "ready"


def test_database_constraints_of_odoo_19():
    sources = "".join(p.read_text() for p in _python_files(ADDON))
    assert "_sql_constraints" not in sources, "Odoo 19 uses models.Constraint"
    assert "cr.commit()" not in sources
    replay = MODELS["spp.dci.callback.replay"].constraints
    assert any(
        re.fullmatch(r"UNIQUE\(\s*sender_id\s*,\s*message_id\s*\)", c, re.I)
        for c in replay.values()
    )
    sender = MODELS["spp.dci.ibr.sender"].constraints
    assert any(re.fullmatch(r"UNIQUE\(\s*sender_id\s*\)", c, re.I) for c in sender.values())
    source = MODELS["spp.dci.ibr.data.source"].constraints
    assert any(re.fullmatch(r"UNIQUE\(\s*code\s*\)", c, re.I) for c in source.values())


# --------------------------------------------------------------------------- ids and refs


def _defined_ids() -> dict[str, str]:
    """Local xml id -> model, in the order Odoo loads them."""
    defined: dict[str, str] = {}
    for name in manifest()["data"]:
        path = ADDON / name
        if path.suffix == ".csv":
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    defined[row["id"]] = "ir.model.access"
            continue
        for element in ET.parse(path).getroot().iter():
            if element.tag == "record":
                defined[element.get("id")] = element.get("model")
            elif element.tag == "menuitem":
                defined[element.get("id")] = "ir.ui.menu"
    return defined


def _resolve(ref: str, defined: dict[str, str]) -> str | None:
    """Problem text for an unresolvable reference, else None."""
    ref = ref.lstrip("-")
    module, _, local = ref.rpartition(".")
    if module in ("", MODULE):
        if local.startswith("model_"):
            names = {model_xmlid(m) for m in MODELS}
            return None if local in names else f"{ref}: no such model"
        return None if local in defined else f"{ref}: not defined before use"
    return None if ref in KNOWN_EXTERNAL_IDS else f"{ref}: unknown external id"


def test_every_reference_is_defined_before_use():
    defined: dict[str, str] = {}
    problems: list[str] = []
    for name in manifest()["data"]:
        path = ADDON / name
        if path.suffix == ".csv":
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    for column in ("model_id:id", "group_id:id"):
                        if row[column] and (problem := _resolve(row[column], defined)):
                            problems.append(f"{name}: {problem}")
                    defined[row["id"]] = "ir.model.access"
            continue
        for element in ET.parse(path).getroot().iter():
            refs = []
            if element.tag in ("field", "function") and element.get("ref"):
                refs.append(element.get("ref"))
            if element.get("eval"):
                refs += REF_IN_EVAL.findall(element.get("eval"))
            if element.tag == "menuitem":
                refs += [element.get(a) for a in ("parent", "action") if element.get(a)]
            if element.get("groups"):
                refs += element.get("groups").split(",")
            problems += [f"{name}: {p}" for r in refs if (p := _resolve(r.strip(), defined))]
            if element.tag == "record":
                defined[element.get("id")] = element.get("model")
            elif element.tag == "menuitem":
                defined[element.get("id")] = "ir.ui.menu"
    assert not problems, "\n".join(problems)


def test_access_csv():
    path = ADDON / "security" / "ir.model.access.csv"
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ACCESS_HEADER
    defined = _defined_ids()
    groups = {k for k, v in defined.items() if v == "res.groups"}
    assert {"group_dci_viewer", "group_dci_officer", "group_dci_manager"} <= groups
    assert {"group_dci_admin", "group_dci_callback"} <= groups
    covered = set()
    for row in rows[1:]:
        record = dict(zip(ACCESS_HEADER, row, strict=True))
        assert record["model_id:id"] in {model_xmlid(m) for m in MODELS}, record
        assert record["group_id:id"] in groups, f"access without a group of ours: {record}"
        assert all(record[p] in ("0", "1") for p in ACCESS_HEADER[4:]), record
        covered.add(record["model_id:id"])
    ours = {
        model_xmlid(name)
        for name, model in MODELS.items()
        if model.description and not model.abstract
    }
    assert covered == ours, ours ^ covered
    ids = [row[0] for row in rows[1:]]
    assert len(ids) == len(set(ids))


def _access(model: str) -> dict[str, str]:
    with (ADDON / "security" / "ir.model.access.csv").open() as handle:
        return {
            row["group_id:id"]: "".join(row[p] for p in ACCESS_HEADER[4:])
            for row in csv.DictReader(handle)
            if row["model_id:id"] == model_xmlid(model)
        }


def test_callback_runner_has_least_privilege():
    runner = "group_dci_callback"
    granted = {
        name: rights
        for name in MODELS
        if (rights := _access(name).get(runner)) and rights != "0000"
    }
    assert granted == {
        "spp.dci.ibr.data.source": "1000",
        "spp.dci.ibr.signing.key": "1000",
        "spp.dci.ibr.sender": "1000",
        "spp.dci.ibr.sender.key": "1000",
        "spp.dci.duplication.check": "1100",
        "spp.dci.duplication.check.detail": "1100",
        "spp.dci.callback.log": "1010",
        "spp.dci.callback.replay": "1011",
    }
    security = ET.parse(ADDON / "security" / "security.xml").getroot()
    group = security.find(".//record[@id='group_dci_callback']")
    implied = group.find("field[@name='implied_ids']").get("eval")
    assert REF_IN_EVAL.findall(implied) == ["fastapi.group_fastapi_endpoint_runner"]
    users = ET.parse(ADDON / "data" / "res_users.xml").getroot()
    user = users.find(".//record[@model='res.users']")
    assert REF_IN_EVAL.findall(user.find("field[@name='group_ids']").get("eval")) == [runner]


def test_fastapi_endpoint_record():
    root = ET.parse(ADDON / "data" / "fastapi_endpoint.xml").getroot()
    record = root.find(".//record[@model='fastapi.endpoint']")
    values = {f.get("name"): f for f in record.findall("field")}
    assert values["root_path"].text == "/dci_ibr"
    assert values["app"].text == "spp_dci_ibr"
    assert values["user_id"].get("ref") == "user_dci_ibr_callback"
    assert values["save_http_session"].get("eval") == "False"
    endpoint_source = (ADDON / "models" / "fastapi_endpoint.py").read_text()
    assert 'APP_NAME = "spp_dci_ibr"' in endpoint_source
    assert "_get_fastapi_routers" in MODELS["fastapi.endpoint"].methods


def test_crons_and_server_actions_call_existing_methods():
    calls = 0
    for name in ("data/ir_cron.xml", "data/ir_actions_server.xml"):
        for record in ET.parse(ADDON / name).getroot().iter("record"):
            code = record.find("field[@name='code']").text
            model_ref = record.find("field[@name='model_id']").get("ref")
            model = next(m for m in MODELS if model_ref.endswith(model_xmlid(m)))
            for method in re.findall(r"(?:model|records)\.(\w+)\(", code):
                assert method in MODELS[model].methods, (name, method)
                calls += 1
            if record.get("model") == "ir.cron":
                assert record.find("field[@name='numbercall']") is None
                assert record.find("field[@name='interval_type']").text in (
                    "minutes",
                    "hours",
                    "days",
                )
    assert calls == 5


def test_groups_use_odoo_19_privileges():
    root = ET.parse(ADDON / "security" / "security.xml").getroot()
    assert root.find(".//record[@model='res.groups.privilege']") is not None
    for group in root.iter("record"):
        if group.get("model") != "res.groups":
            continue
        names = {f.get("name") for f in group.findall("field")}
        assert "category_id" not in names, "Odoo 19: privilege_id, not category_id"
        assert "users" not in names, "Odoo 19: user_ids, not users"
        if group.get("id") != "group_dci_callback":
            assert "privilege_id" in names


def test_dci_is_a_top_level_menu():
    """DCI officers and managers have a menu of their own, not Settings > Technical."""
    root = ET.parse(ADDON / "views" / "menus.xml").getroot()
    menus = {m.get("id"): m for m in root.iter("menuitem")}
    assert menus["menu_spp_dci_root"].get("parent") is None
    assert menus["menu_spp_dci_root"].get("groups") == "group_dci_viewer"
    labels = {m.get("name"): m.get("parent") for m in menus.values()}
    for name in ("Data Sources", "Signing Keys", "Registry Senders"):
        assert labels[name] == "menu_spp_dci_configuration"
    for name in ("Checks", "Callback Log", "Registrant Identifiers"):
        assert labels[name] == "menu_spp_dci_activity"


# --------------------------------------------------------------------------- translations


def _translatable_strings() -> set[str]:
    strings = set()
    for path in _python_files(ADDON):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            is_translation = (isinstance(func, ast.Name) and func.id == "_") or (
                isinstance(func, ast.Attribute) and func.attr == "_"
            )
            if is_translation and isinstance(node.args[0], ast.Constant):
                strings.add(node.args[0].value)
    return strings


def _pot_msgids() -> set[str]:
    text = (ADDON / "i18n" / f"{MODULE}.pot").read_text()
    ids = set()
    for block in re.findall(r'^msgid ((?:".*"\n)+)', text, re.M):
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', block)
        ids.add("".join(parts).encode().decode("unicode_escape"))
    return ids


def test_pot_holds_every_translatable_string():
    pot = (ADDON / "i18n" / f"{MODULE}.pot").read_text()
    assert pot.startswith("# Translation of Odoo Server.")
    assert '"Project-Id-Version: Odoo Server 19.0\\n"' in pot
    strings = _translatable_strings()
    assert len(strings) > 30
    missing = strings - _pot_msgids()
    assert not missing, missing
    descriptions = {m.description for m in MODELS.values() if m.description}
    assert not descriptions - _pot_msgids()


def test_translations_take_named_arguments():
    for path in _python_files(ADDON):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                left = node.left
                if isinstance(left, ast.Call) and ast.unparse(left.func).endswith("_"):
                    pytest.fail(f"{path.name}: _() % args; pass arguments to _()")


# --------------------------------------------------------------------------- package contract

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "spp_dci_ibr"
# How the addon names the package's objects it calls methods on.
RECEIVERS = {
    "client": "DCIClient",
    "service": "IBRService",
    "IBRService": "IBRService",
    "JWKS": "JWKS",
    "jwks": "JWKS",
    "SigningKey": "SigningKey",
    "native": "SigningKey",
}


def _params(function: ast.FunctionDef) -> set[str]:
    args = function.args
    return {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs} - {"self", "cls"}


def _package_api() -> tuple[dict[str, dict[str, set[str]]], dict[str, set[str]]]:
    """(class -> method -> parameters, function -> parameters) of the package's stubs."""
    classes: dict[str, dict[str, set[str]]] = {}
    functions: dict[str, set[str]] = {}
    for source in (PACKAGE / "_native.pyi", PACKAGE / "callbacks.py"):
        tree = ast.parse(source.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                methods = classes.setdefault(node.name, {})
                if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                    # A dataclass is called with its annotated fields.
                    methods["__call__"] = {
                        item.target.id
                        for item in node.body
                        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                    }
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        name = "__call__" if item.name in ("__new__", "__init__") else item.name
                        methods[name] = _params(item)
            elif isinstance(node, ast.FunctionDef):
                functions[node.name] = _params(node)
    return classes, functions


def _dict_keys_for(function: ast.FunctionDef, name: str) -> set[str]:
    """Keys given to the dict ``name`` in ``function`` (literal, update(), item assignment)."""
    keys: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == name:
            if isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == f"{name}.update":
            keys |= {kw.arg for kw in node.keywords if kw.arg}
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == name:
            if isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
    return keys


def test_addon_calls_match_the_package_stubs():
    classes, functions = _package_api()
    exported = set()
    for module in ("__init__.py", "callbacks.py", "exceptions.py", "sandbox.py"):
        tree = ast.parse((PACKAGE / module).read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
                exported |= set(ast.literal_eval(node.value))
    problems, checked = [], 0
    for path in sorted(ADDON.rglob("*.py")) + sorted(QUEUE_ADDON.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spp_dci_ibr"):
                submodule = node.module.partition(".")[2]
                if submodule and not (PACKAGE / f"{submodule}.py").exists():
                    continue  # e.g. spp_dci_ibr.sandbox, not written yet
                for alias in node.names:
                    checked += 1
                    if alias.name not in exported:
                        problems.append(f"{path.name}: {node.module}.{alias.name} not exported")
            if not isinstance(node, ast.FunctionDef):
                continue
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                func = call.func
                kwargs = {kw.arg for kw in call.keywords if kw.arg}
                if isinstance(func, ast.Name) and func.id in functions:
                    params = functions[func.id]
                elif isinstance(func, ast.Name) and func.id in classes:
                    params = classes[func.id].get("__call__", set())
                    for kw in call.keywords:
                        if kw.arg is None:
                            kwargs |= _dict_keys_for(node, ast.unparse(kw.value))
                elif (
                    isinstance(func, ast.Attribute)
                    and ast.unparse(func.value) in RECEIVERS
                    and "tests" not in path.parts
                ):
                    methods = classes[RECEIVERS[ast.unparse(func.value)]]
                    if func.attr not in methods:
                        problems.append(f"{path.name}: {ast.unparse(func)} not in the stubs")
                        continue
                    params = methods[func.attr]
                else:
                    continue
                checked += 1
                if kwargs - params:
                    problems.append(f"{path.name}: {ast.unparse(func)}() given {kwargs - params}")
    assert checked > 20
    assert not problems, "\n".join(problems)


def test_installed_wheel_ships_the_addons_at_the_odoo_namespace_path() -> None:
    """`pip install spp-dci-client-ibr` puts the addons where Odoo finds them, as namespace
    packages: never an `odoo/__init__.py` or `odoo/addons/__init__.py` of ours."""
    import importlib.metadata
    import importlib.util

    files = {str(f) for f in importlib.metadata.files("spp-dci-client-ibr") or []}
    for addon in ("spp_dci_client_ibr", "spp_dci_client_ibr_queue", "spp_dci_client_ibr_openspp"):
        assert f"odoo/addons/{addon}/__manifest__.py" in files
        assert f"odoo/addons/{addon}/__init__.py" in files
    assert "odoo/__init__.py" not in files
    assert "odoo/addons/__init__.py" not in files
    spec = importlib.util.find_spec("odoo.addons.spp_dci_client_ibr")
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith("odoo/addons/spp_dci_client_ibr/__init__.py")


# --------------------------------------------------------------------------- OpenSPP (issue 12)


def _addons() -> list[Path]:
    return sorted(p.parent for p in ROOT.glob("*/__manifest__.py"))


def _model_classes(addon: Path):
    """(path, class name, _name, _inherit names) of every model class of an addon."""
    trees = [(p, ast.parse(p.read_text(), filename=str(p))) for p in _python_files(addon)]
    constants = _module_constants([tree for _p, tree in trees])
    for path, tree in trees:
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            attrs = {
                n.targets[0].id: n.value
                for n in cls.body
                if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
            }
            name = _value(attrs["_name"], constants) if "_name" in attrs else None
            parents = _value(attrs["_inherit"], constants) if "_inherit" in attrs else ()
            parents = (parents,) if isinstance(parents, str) else tuple(parents or ())
            yield path, cls.name, name, parents


def openspp_shadowing_problems(addons: list[Path]) -> list[str]:
    """Modules named like OpenSPP's DCI base, and classes that would replace OpenSPP's
    models (``_name`` one of theirs, not in ``_inherit``: Odoo then drops every field and
    method OpenSPP defines, silently)."""
    problems = [f"module {a.name} has an OpenSPP base name" for a in addons]
    problems = [p for a, p in zip(addons, problems, strict=True) if a.name in OPENSPP_BASE_MODULES]
    for addon in addons:
        for path, cls, name, parents in _model_classes(addon):
            if name in OPENSPP_BASE_MODELS and name not in parents:
                problems.append(f"{path.name}: {cls} replaces OpenSPP's {name}")
    return problems


def test_no_module_or_model_of_ours_replaces_openspps_base():
    assert {a.name for a in _addons()} >= {MODULE, QUEUE_ADDON.name, BRIDGE_ADDON.name}
    assert openspp_shadowing_problems(_addons()) == []
    # Only the bridge touches OpenSPP's models, and it extends them.
    touching = {
        (addon.name, name)
        for addon in _addons()
        for _path, _cls, name, parents in _model_classes(addon)
        if {name, *parents} & OPENSPP_BASE_MODELS
    }
    assert touching == {
        (BRIDGE_ADDON.name, "spp.dci.data.source"),
        (BRIDGE_ADDON.name, "spp.dci.signing.key"),
    }


def test_the_guard_catches_a_replacing_model(tmp_path):
    """The guard fails on what 0.1.0 shipped: ``_name = "spp.dci.data.source"`` alone, and
    on a fallback module named like OpenSPP's base."""
    for module, source in (
        ("spp_dci_client", "class A(models.Model):\n    _name = 'spp.dci.data.source'\n"),
        (
            "ours",
            "class B(models.Model):\n    _name = 'spp.dci.signing.key'\n"
            "    _inherit = 'spp.dci.ibr.signing.key.mixin'\n",
        ),
    ):
        addon = tmp_path / module
        (addon / "models").mkdir(parents=True)
        (addon / "models" / "m.py").write_text(source)
        assert openspp_shadowing_problems([addon]), module
    extension = tmp_path / "bridge"
    (extension / "models").mkdir(parents=True)
    (extension / "models" / "m.py").write_text(
        "class C(models.Model):\n    _name = 'spp.dci.data.source'\n"
        "    _inherit = ('spp.dci.data.source', 'spp.dci.ibr.data.source.mixin')\n"
    )
    assert openspp_shadowing_problems([extension]) == []


def test_bridge_manifest_hooks_and_data():
    data = manifest(BRIDGE_ADDON)
    assert data["license"] == "LGPL-3"
    assert re.fullmatch(r"19\.0\.\d+\.\d+\.\d+", data["version"])
    # Auto-installed exactly when OpenSPP's DCI base and the addon both are.
    assert sorted(data["depends"]) == ["spp_dci_client", MODULE]
    assert data["auto_install"] is True
    init = (BRIDGE_ADDON / "__init__.py").read_text()
    for hook in ("pre_init_hook", "post_init_hook", "uninstall_hook"):
        assert data[hook] == hook and hook in init
    on_disk = {
        str(p.relative_to(BRIDGE_ADDON))
        for folder in ("data", "views", "security")
        for p in (BRIDGE_ADDON / folder).glob("*")
        if p.suffix in (".xml", ".csv")
    }
    assert on_disk == set(data["data"])
    for name in data["data"]:
        if name.endswith(".xml"):
            assert ET.parse(BRIDGE_ADDON / name).getroot().tag == "odoo"
    # Our menus are repointed by their existing external ids, never redefined.
    menus = ET.parse(BRIDGE_ADDON / "data" / "menus.xml").getroot()
    ids = {r.get("id") for r in menus.iter("record")}
    assert ids == {f"{MODULE}.menu_spp_dci_data_source", f"{MODULE}.menu_spp_dci_signing_key"}
    ours = {e.get("id") for e in ET.parse(ADDON / "views" / "menus.xml").getroot().iter()}
    assert {i.split(".", 1)[1] for i in ids} <= ours
    bridge = load_models(BRIDGE_ADDON)
    check = bridge["spp.dci.duplication.check"].fields["data_source_id"]
    assert check.comodel == "spp.dci.data.source"
    wizard = bridge["spp.dci.ibr.batch.check.wizard"].fields["data_source_id"]
    assert wizard.comodel == "spp.dci.data.source"
    # Our own models: the checks' and wizard's comodel, and the key of those sources.
    assert MODELS["spp.dci.duplication.check"].fields["data_source_id"].comodel == (
        "spp.dci.ibr.data.source"
    )
    assert MODELS["spp.dci.ibr.data.source"].fields["signing_key_id"].comodel == (
        "spp.dci.ibr.signing.key"
    )
    for doc in ("DESCRIPTION.md",):
        assert (BRIDGE_ADDON / "readme" / doc).read_text().strip()


def test_unverified_answers_are_a_system_administrators_opt_in():
    field = MODELS["spp.dci.ibr.data.source.mixin"].fields["accept_unverified_answers"]
    assert field.kind == "Boolean"
    assert field.kwargs.get("groups") == SYSTEM_GROUP
    assert not field.kwargs.get("default")
    for path, element in _view_fields("spp.dci.ibr.data.source", "accept_unverified_answers"):
        assert element.get("groups") == SYSTEM_GROUP, path.name
    source = (ADDON / "models" / "spp_dci_data_source.py").read_text()
    assert '"accept_unverified_answers": bool(source.accept_unverified_answers)' in source
