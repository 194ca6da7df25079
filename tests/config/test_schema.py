"""The schema table: value kinds, lookups, and that the table, the settings classes and the
reference cannot drift apart."""

from __future__ import annotations

import dataclasses

import pytest

from autopyfactory.config import schema
from autopyfactory.config.schema import Scope
from autopyfactory.config.settings import FactorySettings
from autopyfactory.domain.label import SubmitSettings
from autopyfactory.domain.policy import DEFAULT_CHAIN, STEPS


def option(key: str, scope: Scope = Scope.QUEUE) -> schema.Option:
    found = schema.find(key, scope)
    assert found is not None, key
    return found


# --- kinds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("5", 5), (" 12 ", 12), ("0", 0), ("-3", -3)])
def test_int(text: str, value: int) -> None:
    assert schema.INT.parse(text) == value


@pytest.mark.parametrize("text", ["", "1.5", "ten", "1e3"])
def test_int_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=f"^expected a whole number, got {text!r}$"):
        schema.INT.parse(text)


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), ("2.5", 2.5), (" 1e-1 ", 0.1)])
def test_float(text: str, value: float) -> None:
    assert schema.FLOAT.parse(text) == value


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_float_rejects_non_finite(text: str) -> None:
    with pytest.raises(ValueError, match=f"^expected a finite number, got {text!r}$"):
        schema.FLOAT.parse(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("Yes", True),
        ("ON", True),
        ("1", True),
        ("false", False),
        (" no ", False),
        ("off", False),
        ("0", False),
    ],
)
def test_bool(text: str, value: bool) -> None:
    assert schema.BOOL.parse(text) is value


@pytest.mark.parametrize("text", ["", "maybe", "2", "y"])
def test_bool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=f"^expected true or false, got {text!r}$"):
        schema.BOOL.parse(text)


def test_list_and_string() -> None:
    assert schema.LIST.parse(" a, b ,,c ") == ("a", "b", "c")
    assert schema.LIST.parse("") == ()
    assert schema.STR.parse("  x y  ") == "x y"


def test_identifier() -> None:
    assert schema.IDENT.parse(" apf-1.cern_ch ") == "apf-1.cern_ch"
    for bad in ("", "a b", "x" * 65, "a/b"):
        with pytest.raises(ValueError, match=r"^expected 1-64 letters"):
            schema.IDENT.parse(bad)


def test_choice_is_case_insensitive_and_canonical() -> None:
    flavour = option("ceFlavour")
    assert flavour.parse("arc-ce") == "ARC-CE"
    assert option("status").parse(" Online ") == "online"
    with pytest.raises(ValueError, match=r"^expected one of condor, local; got 'slurm'$"):
        option("batch").parse("slurm")


def test_optional_kind() -> None:
    pilotlimit = option("pilotlimit")
    assert pilotlimit.parse("") is None
    assert pilotlimit.parse("None") is None
    assert pilotlimit.parse("7") == 7
    assert pilotlimit.kind.name == "integer (empty = unset)"
    with pytest.raises(ValueError, match=r"^must be at least 0, got -1$"):
        pilotlimit.parse("-1")


def test_plugins() -> None:
    plugins = option("schedplugin")
    assert plugins.parse("classic") == ("Classic",)
    assert plugins.parse("Ready,Scale, maxpending") == ("Ready", "Scale", "MaxPending")
    with pytest.raises(schema.UnknownPluginError) as info:
        plugins.parse("Ready, Bogus, Other")
    assert info.value.name == "Bogus"
    assert info.value.known == sorted(STEPS.names())
    with pytest.raises(ValueError, match=r"^expected at least one plugin name$"):
        plugins.parse(" , ")


def test_minimum() -> None:
    assert option("corecount").parse("1") == 1
    with pytest.raises(ValueError, match=r"^must be at least 1, got 0$"):
        option("corecount").parse("0")
    with pytest.raises(ValueError, match=r"^must be at least 0\.1, got 0\.05$"):
        option("httpTimeout", Scope.FACTORY).parse("0.05")
    # less than a megabyte (some ten thousand announcements) would drop pilots in a short outage
    with pytest.raises(ValueError, match=r"^must be at least 1(\.0)?, got 0\.5$"):
        option("monitorOutboxMB", Scope.FACTORY).parse("0.5")


def test_required_value_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match=r"^a value is required$"):
        option("pandaserver", Scope.FACTORY).parse("  ")


# --- lookups --------------------------------------------------------------------------------------


def test_find_is_case_insensitive_and_scoped() -> None:
    assert option("SCHEDCONFIGREFRESH", Scope.FACTORY).key == "schedconfigRefresh"
    assert schema.find("schedconfigRefresh", Scope.QUEUE) is None
    assert schema.find("nqueue", Scope.FACTORY) is None
    # condorSchedd / condorPool exist in both scopes (a queue may override the factory's)
    assert option("condorschedd", Scope.FACTORY).scope is Scope.FACTORY
    assert option("condorschedd", Scope.QUEUE).scope is Scope.QUEUE


def test_keys_are_unique_per_scope() -> None:
    for scope in Scope:
        keys = [o.key.lower() for o in schema.options(scope)]
        assert len(keys) == len(set(keys)), scope


def test_required_keys() -> None:
    required = [o.key for o in schema.OPTIONS if o.required]
    assert required == ["factoryId", "factoryOwner", "pandaserver", "schedconfig"]


def test_defaults_parse_as_their_own_kind() -> None:
    """Every default is a value its parser could have produced (so `check` shows honest types)."""
    for o in schema.OPTIONS:
        if o.default is None:
            continue
        if isinstance(o.default, tuple):
            assert o.parse(", ".join(o.default)) == o.default, o.key
            continue
        if isinstance(o.default, frozenset):
            text = ", ".join(str(item) for item in sorted(o.default))
        elif isinstance(o.default, str):
            text = o.default
        else:
            text = str(o.default).lower()
        assert o.parse(text) == o.default, o.key


def test_schedconfig_fields() -> None:
    mapped = {o.key: o.schedconfig for o in schema.OPTIONS if o.schedconfig}
    assert mapped == {
        "siteid": "siteid",
        "status": "status",
        "cloud": "cloud",
        "corecount": "corecount",
        "maxrss": "maxrss",
        "maxtime": "maxtime",
        "maxwdir": "maxwdir",
        "environ": "environ",
        "depthboost": "depthboost",
        "pilotlimit": "pilotlimit",
        "transferringlimit": "transferringlimit",
    }
    assert all(o.scope is Scope.QUEUE for o in schema.OPTIONS if o.schedconfig)


# --- the table and the typed settings cannot drift ------------------------------------------------


def test_every_factory_key_fills_one_settings_field_and_back() -> None:
    keys = [o.key for o in schema.options(Scope.FACTORY)]
    settings = FactorySettings.from_values({key: key for key in keys})
    assert sorted(settings.by_key()) == sorted(keys)
    groups = [getattr(settings, group.name) for group in dataclasses.fields(settings)]
    assert sum(len(dataclasses.fields(group)) for group in groups) == len(keys)  # no key fills two fields


def test_settings_by_key_gives_back_the_values_they_were_built_from() -> None:
    values = {o.key: f"value of {o.key}" for o in schema.options(Scope.FACTORY)}
    settings = FactorySettings.from_values(values)
    assert settings.by_key() == values
    assert settings.http.timeout == "value of httpTimeout"
    assert settings.cron.exiting_lookback == "value of monExitingLookback"


def test_the_policy_keys_are_the_registered_steps_options() -> None:
    # policy keys in the schema: the plugin chain, Classic's keys and the APF 2 chain's sched.* keys
    policy_keys = [
        o.key
        for o in schema.options(Scope.QUEUE)
        if o.key == "schedplugin" or o.key.startswith("sched.") or o.help.startswith("Classic:")
    ]
    assert policy_keys == ["schedplugin", *(o.key for o in STEPS.options())]
    assert option("schedplugin").default == DEFAULT_CHAIN


def test_submit_keys_exist() -> None:
    submit_keys = {
        "executable",
        "arguments",
        "x509userproxy",
        "scitokensFile",
        "condorSchedd",
        "condorPool",
        "holdIdleAfter",
        "holdRerun",
        "removeHeldAfter",
        "removeIdleAfter",
        "removeRunningAfter",
        "submitAttributes",
    }
    assert len(submit_keys) == len(dataclasses.fields(SubmitSettings))
    for key in submit_keys:
        assert schema.find(key, Scope.QUEUE) is not None, key


def test_policy_options_are_as_their_steps_declare_them() -> None:
    kinds = {int: "integer", float: "number", int | None: "integer (empty = unset)"}
    for declared in STEPS.options():
        found = option(declared.key)
        assert (found.default, found.help, found.minimum) == (
            declared.default,
            declared.help,
            declared.minimum,
        )
        assert (found.schedconfig, found.kind.name) == (declared.schedconfig, kinds[declared.type]), (
            declared.key
        )


# --- the reference --------------------------------------------------------------------------------


def test_reference_lists_every_option_once_with_kind_and_default() -> None:
    text = schema.reference_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(schema.OPTIONS)
    factory, queue = text.split("## `[QueueDefaults]` and queue sections")
    assert factory.startswith("## `[Factory]`\n")
    for o in schema.OPTIONS:
        part = factory if o.scope is Scope.FACTORY else queue
        row = next(line for line in part.splitlines() if line.startswith(f"| `{o.key}` |"))
        assert f"| {o.kind.name} |" in row
        assert o.help.replace("<", "&lt;") in row  # "<stateDir>" would be an HTML tag on the page
        if o.schedconfig:
            assert f"Filled from schedconfig `{o.schedconfig}`." in row
    assert "| `factoryId` | identifier | **required** |" in text
    assert "| `sleep` | integer | `120` |" in text
    assert "| `holdRerun` | boolean | `true` |" in text
    assert "| `schedplugin` | comma-separated plugin names | `Classic` |" in text
    assert "| `pilotlimit` | integer (empty = unset) | (unset) |" in text
