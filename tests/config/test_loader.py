"""factory.conf loading: sections, queuesDir, precedence inputs and every error with its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopyfactory.config import loader as config
from autopyfactory.config.loader import ConfigError, ConfigErrors, FactoryConfig
from autopyfactory.domain.label import Setting, Source
from tests.support.factory_conf import factory_conf
from tests.support.paths import REPO

EXAMPLE = REPO / "etc" / "factory.conf.example"

# Lines 1-5; whatever a test appends starts on line 6.
FACTORY = factory_conf()


def write(directory: Path, text: str, name: str = "factory.conf") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load(directory: Path, text: str) -> tuple[Path, FactoryConfig]:
    path = write(directory, text)
    return path, config.load(path)


def raised(directory: Path, text: str) -> tuple[Path, ConfigError]:
    path = write(directory, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return path, info.value


def messages(cfg: FactoryConfig) -> list[str]:
    return [str(error) for error in cfg.errors]


def names(cfg: FactoryConfig) -> list[str]:
    return [queue.name for queue in cfg.queues]


# --- a good configuration ------------------------------------------------------------------------


def test_example_config_loads_with_cern_queue_and_typed_factory_settings() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.errors == ()
    assert names(cfg) == ["CERN"]
    factory = cfg.factory
    assert factory.identity.factory_id == "example-factory"
    assert factory.panda.server == "https://pandaserver.cern.ch:25443"
    assert factory.schedconfig.location == "https://atlas-cric.cern.ch/api/atlas/pandaqueue/query/?json"
    assert factory.schedconfig.refresh == 600
    assert factory.http.timeout == 30.0
    assert isinstance(factory.http.timeout, float)
    assert factory.caps.max_per_cycle is None
    assert factory.identity.queues_dir == ""
    assert factory.schedconfig_cache_path == Path("/var/lib/autopyfactory/schedconfig.json")
    cern = cfg.queues[0]
    assert cern.local == {}
    assert cern.pq == "CERN"
    assert cern.file == str(EXAMPLE)
    assert cern.line == EXAMPLE.read_text().splitlines().index("[CERN]") + 1


def test_factory_defaults_and_types(tmp_path: Path) -> None:
    _, cfg = load(tmp_path, FACTORY + "sleep = 30\nhttpTimeout = 2.5\nmaxPilots = 100\nschedconfigCache =\n")
    factory = cfg.factory
    assert (factory.identity.sleep, factory.http.timeout, factory.caps.max_pilots) == (30, 2.5, 100)
    assert factory.identity.state_dir == "/var/lib/autopyfactory"
    assert factory.caps.num_factories == 1
    assert factory.panda.vo == "atlas"
    assert factory.schedconfig_cache_path == Path("/var/lib/autopyfactory/schedconfig.json")
    _, cfg = load(tmp_path, FACTORY + "stateDir = /srv/apf\n")
    assert cfg.factory.schedconfig_cache_path == Path("/srv/apf/schedconfig.json")
    _, cfg = load(tmp_path, FACTORY + "schedconfigCache = /tmp/sc.json\n")
    assert cfg.factory.schedconfig_cache_path == Path("/tmp/sc.json")


def test_keys_are_case_insensitive_and_stored_canonically(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "SLEEP = 7\n[CERN]\nNQueue = 3\nSched.MaxPending.Maximum = 9\n")
    assert cfg.factory.identity.sleep == 7
    assert dict(cfg.queues[0].local) == {
        "nqueue": Setting(3, Source.LOCAL, f"{path}:8"),
        "sched.maxpending.maximum": Setting(9, Source.LOCAL, f"{path}:9"),
    }


def test_queue_settings_record_source_and_origin(tmp_path: Path) -> None:
    path, cfg = load(
        tmp_path,
        FACTORY + "[QueueDefaults]\nnqueue = 10\nmaxrss = 4000\n[CERN]\nnqueue = 3\n[NDGF-T1]\n",
    )
    cern, ndgf = cfg.queues
    # built-in default
    assert cern.defaults["depthboost"] == Setting(2, Source.DEFAULT, "built-in")
    assert cern.get("depthboost") == 2
    # [QueueDefaults] beats the built-in default
    assert cern.defaults["nqueue"] == Setting(10, Source.QUEUE_DEFAULTS, f"{path}:7")
    assert ndgf.get("nqueue") == 10
    assert ndgf.get("maxrss") == 4000
    # the queue's own section beats [QueueDefaults]
    assert cern.local == {"nqueue": Setting(3, Source.LOCAL, f"{path}:10")}
    assert cern.get("nqueue") == 3
    assert ndgf.local == {}


def test_wmsqueue_names_the_panda_queue(tmp_path: Path) -> None:
    _, cfg = load(tmp_path, FACTORY + "[CERN-MCORE]\nwmsqueue = CERN\n[CERN]\n")
    assert [(q.name, q.pq) for q in cfg.queues] == [("CERN-MCORE", "CERN"), ("CERN", "CERN")]


def test_values_keep_comment_lines_and_continuations_out_of_line_numbers(tmp_path: Path) -> None:
    text = FACTORY + "# a comment\n; another\n\n[CERN]\narguments = -a\n  -b\n\n# note\nnqueue = 4\n"
    path, cfg = load(tmp_path, text)
    local = cfg.queues[0].local
    assert local["arguments"] == Setting("-a\n-b", Source.LOCAL, f"{path}:10")
    assert local["nqueue"] == Setting(4, Source.LOCAL, f"{path}:14")


# --- errors in a queue section disable only that queue --------------------------------------------


def test_unknown_key_names_file_line_key_and_hint(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nnqeue = 5\n[NDGF-T1]\n")
    assert messages(cfg) == [f"{path}:7: [CERN] nqeue: unknown key (did you mean 'nqueue'?)"]
    assert names(cfg) == ["NDGF-T1"]
    error = cfg.errors[0]
    assert (error.file, error.line, error.section, error.key, error.hint) == (
        str(path),
        7,
        "CERN",
        "nqeue",
        "nqueue",
    )


def test_unknown_key_without_a_close_match_has_no_hint(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nzzzzzz = 5\n")
    assert messages(cfg) == [f"{path}:7: [CERN] zzzzzz: unknown key"]


def test_factory_key_in_a_queue_section_says_where_it_belongs(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nsleep = 5\n[TEST-SITE]\n")
    assert messages(cfg) == [f"{path}:7: [CERN] sleep: unknown key here; it belongs in [Factory]"]
    assert names(cfg) == ["TEST-SITE"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nqueue = many", "nqueue: bad value: expected a whole number, got 'many'"),
        ("nqueue = 2.5", "nqueue: bad value: expected a whole number, got '2.5'"),
        ("enabled = maybe", "enabled: bad value: expected true or false, got 'maybe'"),
        ("sched.scale.factor = nan", "sched.scale.factor: bad value: expected a finite number, got 'nan'"),
        ("sched.scale.factor = x", "sched.scale.factor: bad value: expected a number, got 'x'"),
        (
            "status = up",
            "status: bad value: expected one of online, brokeroff, test, offline, standby, maintenance;"
            " got 'up'",
        ),
        ("batch = slurm", "batch: bad value: expected one of condor, local; got 'slurm'"),
        ("corecount = 0", "corecount: bad value: must be at least 1, got 0"),
        ("nqueue = -1", "nqueue: bad value: must be at least 0, got -1"),
        ("sched.scale.factor = -0.5", "sched.scale.factor: bad value: must be at least 0, got -0.5"),
        ("pilotlimit = -3", "pilotlimit: bad value: must be at least 0, got -3"),
        ("schedplugin =", "schedplugin: bad value: expected at least one plugin name"),
    ],
)
def test_bad_values_in_a_queue(tmp_path: Path, line: str, message: str) -> None:
    path, cfg = load(tmp_path, FACTORY + f"[CERN]\n{line}\n[NDGF-T1]\n")
    assert messages(cfg) == [f"{path}:7: [CERN] {message}"]
    assert names(cfg) == ["NDGF-T1"]


def test_unknown_plugin_names_known_ones_and_hints(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nschedplugin = Ready, MaxPendng\n")
    assert messages(cfg) == [
        f"{path}:7: [CERN] schedplugin: unknown plugin 'MaxPendng' (known: Classic, Fixed, MaxHeld,"
        " MaxPending, MaxPerCycle, MaxToRun, MinPending, MinPerCycle, Ready, Scale, StatusOffline,"
        " StatusTest) (did you mean 'MaxPending'?)"
    ]
    assert cfg.errors[0].hint == "MaxPending"
    assert cfg.queues == ()


def test_plugin_names_are_case_insensitive_and_canonical(tmp_path: Path) -> None:
    _, cfg = load(tmp_path, FACTORY + "[CERN]\nschedplugin = ready,scale , MAXPENDING\n")
    assert cfg.queues[0].get("schedplugin") == ("Ready", "Scale", "MaxPending")


def test_all_errors_of_a_queue_are_reported(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nnqeue = 5\ncorecount = 0\nenabled = false\n")
    assert messages(cfg) == [
        f"{path}:7: [CERN] nqeue: unknown key (did you mean 'nqueue'?)",
        f"{path}:8: [CERN] corecount: bad value: must be at least 1, got 0",
    ]


def test_optional_values_accept_empty_and_none(tmp_path: Path) -> None:
    _, cfg = load(tmp_path, FACTORY + "[CERN]\npilotlimit =\nsched.maxpending.maximum = None\n")
    assert cfg.queues[0].get("pilotlimit") is None
    assert cfg.queues[0].get("sched.maxpending.maximum") is None


def test_local_queue_needs_ce_flavour(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[MYSITE]\nautoconfigure = false\n[CERN]\n")
    assert messages(cfg) == [f"{path}:6: [MYSITE] ceFlavour: autoconfigure = false needs ceFlavour"]
    assert names(cfg) == ["CERN"]


def test_local_grid_queue_needs_ce_endpoint(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[MYSITE]\nautoconfigure = false\nceFlavour = htcondor-ce\n")
    assert messages(cfg) == [f"{path}:6: [MYSITE] ceEndpoint: autoconfigure = false needs ceEndpoint"]


def test_local_queues_that_are_complete(tmp_path: Path) -> None:
    text = FACTORY + (
        "[MYSITE]\nautoconfigure = false\nceFlavour = HTCONDOR-CE\nceEndpoint = ce01.example.org:9619\n"
        "[POOL]\nautoconfigure = false\nceFlavour = LOCAL\n"
        "[LAPTOP]\nautoconfigure = false\nbatch = local\n"
    )
    _, cfg = load(tmp_path, text)
    assert cfg.errors == ()
    assert names(cfg) == ["MYSITE", "POOL", "LAPTOP"]
    assert cfg.queues[0].get("ceFlavour") == "HTCONDOR-CE"


def test_local_queue_ce_may_come_from_queue_defaults(tmp_path: Path) -> None:
    text = (
        FACTORY + "[QueueDefaults]\nceFlavour = ARC-CE\n[MYSITE]\nautoconfigure = no\nceEndpoint = arc:443\n"
    )
    _, cfg = load(tmp_path, text)
    assert cfg.errors == ()
    assert names(cfg) == ["MYSITE"]


def test_duplicate_queue_across_files_disables_both(tmp_path: Path) -> None:
    queues = tmp_path / "queues.d"
    queues.mkdir()
    write(queues, "[NDGF-T1]\n\n[CERN]\nnqueue = 1\n", "b.conf")
    path, cfg = load(tmp_path, FACTORY + "queuesDir = queues.d\n[CERN]\n[TEST-SITE]\n")
    assert messages(cfg) == [
        f"{queues / 'b.conf'}:3: [CERN] queue defined again (first at {path}:7); both disabled"
    ]
    assert names(cfg) == ["TEST-SITE", "NDGF-T1"]


# --- errors in [Factory] or [QueueDefaults] stop start-up -------------------------------------------


def test_missing_required_factory_key(tmp_path: Path) -> None:
    text = FACTORY.replace("pandaserver = https://pandaserver.example.org:25443\n", "")
    path, error = raised(tmp_path, text)
    assert str(error) == f"{path}:1: [Factory] pandaserver: missing required key"
    assert isinstance(error, ConfigErrors)
    assert (error.errors[0].line, error.errors[0].key) == (1, "pandaserver")


def test_all_missing_required_factory_keys_are_listed(tmp_path: Path) -> None:
    path, error = raised(tmp_path, "[Factory]\nsleep = 5\n")
    assert isinstance(error, ConfigErrors)
    assert str(error).splitlines() == [
        f"{path}:1: [Factory] {key}: missing required key"
        for key in ("factoryId", "factoryOwner", "pandaserver", "schedconfig")
    ]


def test_required_factory_key_must_not_be_empty(tmp_path: Path) -> None:
    path, error = raised(
        tmp_path, FACTORY.replace("schedconfig = file:///nonexistent/cric.json", "schedconfig =")
    )
    assert str(error) == f"{path}:5: [Factory] schedconfig: bad value: a value is required"


def test_no_factory_section(tmp_path: Path) -> None:
    path, error = raised(tmp_path, "[CERN]\n")
    assert str(error) == f"{path}: no [Factory] section"


def test_factory_unknown_key_with_hint(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "schedconfigRefesh = 60\n")
    assert str(error) == (
        f"{path}:6: [Factory] schedconfigRefesh: unknown key (did you mean 'schedconfigRefresh'?)"
    )


def test_factory_bad_values(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "sleep = 0\nhttpTimeout = soon\n")
    assert isinstance(error, ConfigErrors)
    assert [str(e) for e in error.errors] == [
        f"{path}:6: [Factory] sleep: bad value: must be at least 1, got 0",
        f"{path}:7: [Factory] httpTimeout: bad value: expected a number, got 'soon'",
    ]
    path, error = raised(tmp_path, FACTORY.replace("test-factory", "my factory"))
    assert str(error) == (
        f"{path}:2: [Factory] factoryId: bad value: expected 1-64 letters, digits, '_', '.' or '-';"
        " got 'my factory'"
    )


def test_queue_key_in_factory_says_where_it_belongs(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "nqueue = 5\n")
    assert str(error) == (
        f"{path}:6: [Factory] nqueue: unknown key here; it belongs in [QueueDefaults] or a queue section"
    )


def test_queue_defaults_errors_stop_start_up(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "[QueueDefaults]\nnqueue = 5\nsleep = 3\nnquee = 3\n[CERN]\n")
    assert isinstance(error, ConfigErrors)
    assert [str(e) for e in error.errors] == [
        f"{path}:8: [QueueDefaults] sleep: unknown key here; it belongs in [Factory]",
        f"{path}:9: [QueueDefaults] nquee: unknown key (did you mean 'nqueue'?)",
    ]


def test_duplicate_key_disables_its_queue(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nnqueue = 5\nnqueue = 6\n[NDGF-T1]\n")
    assert messages(cfg) == [f"{path}:8: [CERN] nqueue: key appears twice (first at line 7)"]
    assert names(cfg) == ["NDGF-T1"]


def test_duplicate_key_in_factory_or_queue_defaults_stops(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "sleep = 5\nsleep = 6\n")
    assert str(error) == f"{path}:7: [Factory] sleep: key appears twice (first at line 6)"
    path, error = raised(tmp_path, FACTORY + "[QueueDefaults]\nnqueue = 5\n\nnqueue = 6\n")
    assert str(error) == f"{path}:9: [QueueDefaults] nqueue: key appears twice (first at line 7)"


def test_duplicate_key_in_another_spelling(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nnqueue = 5\nNQUEUE = 6\n[NDGF-T1]\n")
    assert messages(cfg) == [f"{path}:8: [CERN] NQUEUE: key appears twice (first at line 7)"]
    assert names(cfg) == ["NDGF-T1"]
    path, error = raised(tmp_path, FACTORY + "factoryid = other\n")
    assert str(error) == f"{path}:6: [Factory] factoryid: key appears twice (first at line 2)"


def test_duplicate_section_disables_its_queue(tmp_path: Path) -> None:
    path, cfg = load(tmp_path, FACTORY + "[CERN]\nnqueue = 1\n[NDGF-T1]\n[CERN]\ncloud = CERN\n")
    assert messages(cfg) == [f"{path}:9: [CERN] section appears twice (first at line 6)"]
    assert names(cfg) == ["NDGF-T1"]


def test_duplicate_factory_section_stops(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "[CERN]\n[Factory]\nsleep = 5\n")
    assert str(error) == f"{path}:7: [Factory] section appears twice (first at line 1)"


def test_default_section_is_rejected(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "[DEFAULT]\nnqueue = 3\n")
    assert str(error) == f"{path}:6: [DEFAULT] is not used; put defaults for every queue in [QueueDefaults]"


def test_text_before_the_first_section(tmp_path: Path) -> None:
    path, error = raised(tmp_path, "# comment\nnqueue = 1\n" + FACTORY)
    assert str(error) == f"{path}:2: text before the first [section] header"


def test_line_that_is_no_key_value_pair(tmp_path: Path) -> None:
    path, error = raised(tmp_path, FACTORY + "[CERN]\nnqueue = 1\njust some words\n")
    assert str(error) == (
        f"{path}:8: cannot parse 'just some words' (expected [section], key = value or a comment)"
    )


def test_indented_key_is_located(tmp_path: Path) -> None:
    # configparser reads an indented key right after a header as a key, not a continuation.
    path, cfg = load(tmp_path, FACTORY + "[CERN]\n  nqeue = 1\n")
    assert messages(cfg) == [f"{path}:7: [CERN] nqeue: unknown key (did you mean 'nqueue'?)"]


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_unreadable_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "factory.conf"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(FACTORY.encode() + b"factoryOwner = \xe9\xff\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    expected = {
        "missing": "No such file or directory",
        "directory": "Is a directory",
        "binary": "not UTF-8 text",
    }[kind]
    assert str(info.value).startswith(f"{path}: cannot read: {expected}")


# --- queuesDir ----------------------------------------------------------------------------------


def queues_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "queues.d"
    directory.mkdir()
    for name, text in files.items():
        write(directory, text, name)
    return directory


def test_queues_dir_adds_queues_in_file_order(tmp_path: Path) -> None:
    directory = queues_dir(
        tmp_path,
        {"b.conf": "[TEST-SITE]\nnqueue = 2\n", "a.conf": "[NDGF-T1]\n", "notes.txt": "[IGNORED]\n"},
    )
    _, cfg = load(tmp_path, FACTORY + f"queuesDir = {directory}\n[CERN]\n")
    assert cfg.errors == ()
    assert [(q.name, q.file, q.line) for q in cfg.queues] == [
        ("CERN", str(tmp_path / "factory.conf"), 7),
        ("NDGF-T1", str(directory / "a.conf"), 1),
        ("TEST-SITE", str(directory / "b.conf"), 1),
    ]
    assert cfg.queues[2].local == {"nqueue": Setting(2, Source.LOCAL, f"{directory / 'b.conf'}:2")}


def test_queues_dir_relative_to_the_main_file(tmp_path: Path) -> None:
    queues_dir(tmp_path, {"x.conf": "[NDGF-T1]\n"})
    _, cfg = load(tmp_path, FACTORY + "queuesDir = queues.d\n")
    assert names(cfg) == ["NDGF-T1"]


def test_queues_dir_queues_get_queue_defaults(tmp_path: Path) -> None:
    directory = queues_dir(tmp_path, {"x.conf": "[NDGF-T1]\n"})
    path, cfg = load(tmp_path, FACTORY + f"queuesDir = {directory}\n[QueueDefaults]\nnqueue = 9\n")
    assert cfg.queues[0].defaults["nqueue"] == Setting(9, Source.QUEUE_DEFAULTS, f"{path}:8")


def test_broken_queues_dir_file_disables_only_its_queues(tmp_path: Path) -> None:
    directory = queues_dir(
        tmp_path,
        {
            "a.conf": "[NDGF-T1]\n",
            "b.conf": "[TEST-SITE]\nnqueue = 1\n[NOCE-SITE]\nthis is not ini\n",
            "c.conf": "[LEGACY-SITE]\nnqeue = 1\n[DOWN-SITE]\n[X]\nnqueue = 1\nnqueue = 2\n",
        },
    )
    _, cfg = load(tmp_path, FACTORY + f"queuesDir = {directory}\n[CERN]\n")
    assert messages(cfg) == [
        # a file that cannot be parsed disables all its queues
        f"{directory / 'b.conf'}:4: cannot parse 'this is not ini'"
        " (expected [section], key = value or a comment)",
        # an error in one queue section disables that queue only
        f"{directory / 'c.conf'}:2: [LEGACY-SITE] nqeue: unknown key (did you mean 'nqueue'?)",
        f"{directory / 'c.conf'}:6: [X] nqueue: key appears twice (first at line 5)",
    ]
    assert names(cfg) == ["CERN", "NDGF-T1", "DOWN-SITE"]


def test_queues_dir_may_not_hold_factory_sections(tmp_path: Path) -> None:
    directory = queues_dir(tmp_path, {"a.conf": "[NDGF-T1]\n[Factory]\nsleep = 1\n[QueueDefaults]\n"})
    _, cfg = load(tmp_path, FACTORY + f"queuesDir = {directory}\n")
    assert messages(cfg) == [
        f"{directory / 'a.conf'}:2: [Factory] belongs in the main factory.conf, not in queuesDir",
        f"{directory / 'a.conf'}:4: [QueueDefaults] belongs in the main factory.conf, not in queuesDir",
    ]
    assert names(cfg) == ["NDGF-T1"]


def test_queues_dir_unreadable_file(tmp_path: Path) -> None:
    directory = queues_dir(tmp_path, {"a.conf": "[NDGF-T1]\n"})
    (directory / "b.conf").write_bytes(b"[TEST-SITE]\ncloud = \xff\n")
    _, cfg = load(tmp_path, FACTORY + f"queuesDir = {directory}\n")
    assert len(cfg.errors) == 1
    assert messages(cfg)[0].startswith(f"{directory / 'b.conf'}: cannot read: not UTF-8 text")
    assert names(cfg) == ["NDGF-T1"]


def test_queues_dir_that_is_not_a_directory_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "factory.conf"
    path.write_text(FACTORY + "queuesDir = /nonexistent/queues.d\n[CERN]\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(caught.value) == f"{path}:6: [Factory] queuesDir: '/nonexistent/queues.d' is not a directory"


def test_inline_comments_are_allowed(tmp_path: Path) -> None:
    _, cfg = load(tmp_path, FACTORY + "[CERN]\nnqueue = 5  # five is plenty\nmaxrss = 4000 ; MB\n")
    [queue] = cfg.queues
    assert queue.local["nqueue"].value == 5
    assert queue.local["maxrss"].value == 4000


def test_queues_dir_queue_defined_twice_in_the_directory(tmp_path: Path) -> None:
    directory = queues_dir(tmp_path, {"a.conf": "[NDGF-T1]\n", "b.conf": "\n[NDGF-T1]\n"})
    _, cfg = load(tmp_path, FACTORY + f"queuesDir = {directory}\n[CERN]\n")
    assert messages(cfg) == [
        f"{directory / 'b.conf'}:2: [NDGF-T1] queue defined again (first at {directory / 'a.conf'}:1);"
        " both disabled"
    ]
    assert names(cfg) == ["CERN"]


# --- pandaserver: a base URL without a path ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "https://pandaserver.cern.ch:25443/server/panda",
            "the base URL of the PanDA server takes no path ('/server/panda');"
            " write 'https://pandaserver.cern.ch:25443' (PANDA_URL_SSL's /server/panda is not part of it)",
        ),
        ("pandaserver.cern.ch:25443", "expected http(s)://host[:port], got 'pandaserver.cern.ch:25443'"),
    ],
)
def test_pandaserver_with_a_path_is_rejected_with_the_url_to_write(
    tmp_path: Path, value: str, message: str
) -> None:
    path, error = raised(tmp_path, FACTORY.replace("https://pandaserver.example.org:25443", value))
    assert str(error) == f"{path}:4: [Factory] pandaserver: bad value: {message}"


def test_pandaserver_trailing_slash_is_dropped(tmp_path: Path) -> None:
    _, cfg = load(tmp_path, FACTORY.replace(":25443", ":25443/"))
    assert cfg.factory.panda.server == "https://pandaserver.example.org:25443"
