"""The backend-neutral pilot invocation: words and values exactly as the pilot must see them, the
same ones HTCondor delivers after its own escaping and macro expansion."""

from __future__ import annotations

import dataclasses

import pytest

from autopyfactory.batch.condor.submit import render_submit, validate
from autopyfactory.batch.pilot import (
    SubmitRenderError,
    gtag,
    log_dir,
    pilot_arguments,
    pilot_environment,
    render_arguments,
    template_fields,
)
from autopyfactory.domain.label import Label, PilotSettings
from tests.support.condor_submit import CONTEXT, decode_new_syntax, expanded, submit_labels

HOSTILE = "we\"ird 'label' $(Cluster) \\ x"


@pytest.fixture(scope="module")
def cern(tmp_path_factory: pytest.TempPathFactory) -> Label:
    made = submit_labels(tmp_path_factory.mktemp("conf"))
    return next(label for label in made if label.name == "CERN-ce503.cern.ch-share")


def hostile(label: Label) -> Label:
    environ = (("DOLLAR", "$(Process)$ENV(HOME)"), ("APFCID", "not-this-one"), ("SPACEY", "a b"))
    submit = dataclasses.replace(label.submit, arguments="-h %(label)s --m $(Cluster) -s %(siteid)s 'a $x b'")
    return dataclasses.replace(
        label,
        name=HOSTILE,
        siteid="site$1",
        resources=dataclasses.replace(label.resources, environ=environ),
        submit=submit,
        resource_type="MCORE",
        pilot=PilotSettings(url="http://x/$y.tgz", extra_args="--note '$HOME x'"),
    )


def test_arguments_are_the_words_the_pilot_sees(cern: Label) -> None:
    words = pilot_arguments(hostile(cern), CONTEXT)
    assert words == [
        "-h", HOSTILE, "--m", "$(Cluster)", "-s", "site$1", "a $x b",
        "--resource-type", "MCORE", "--piloturl", "http://x/$y.tgz", "--note", "$HOME x",
    ]  # fmt: skip


def test_environment_carries_the_job_id_and_the_factorys_own_values(cern: Label) -> None:
    env = pilot_environment(hostile(cern), CONTEXT, "12.3")
    assert env == [
        ("DOLLAR", "$(Process)$ENV(HOME)"),
        ("SPACEY", "a b"),
        ("APFFID", "test-factory"),
        ("APFCID", "12.3"),
        ("APFMON", "http://apfmon.example.org/api"),
        ("FACTORYQUEUE", HOSTILE),
        ("GTAG", "http://factory.example.org/pilots/2026-03-01/we%22ird%20%27label%27%20%24%28Cluster%29%20%5C%20x/12.3.out"),
        ("PANDA_JSID", "test-factory"),
    ]  # fmt: skip


def test_condor_delivers_the_same_words_and_values(cern: Label) -> None:
    """What condor_submit makes of the escaped description is what the neutral module says."""
    label = hostile(cern)
    text = render_submit(label, 1, CONTEXT)
    validate(text)
    assert decode_new_syntax(expanded(text, "arguments")) == pilot_arguments(label, CONTEXT)
    env = [tuple(entry.split("=", 1)) for entry in decode_new_syntax(expanded(text, "environment"))]
    assert env == pilot_environment(label, CONTEXT, "1.0")  # the submit parser's first job id


def test_no_monitor_and_no_log_url_leave_their_variables_out(cern: Label) -> None:
    context = dataclasses.replace(CONTEXT, monitor_url="", base_log_dir_url="")
    names = [name for name, _ in pilot_environment(cern, context, "1.0")]
    assert names == ["APFFID", "APFCID", "FACTORYQUEUE", "PANDA_JSID"]
    assert gtag(context, "L", "1.0") == ""


def test_template_fields_and_errors(cern: Label) -> None:
    fields = template_fields(cern, CONTEXT)
    assert (fields["pandaurl"], fields["port"], fields["factoryId"]) == (
        "https://pandaserver.cern.ch",
        25443,
        "test-factory",
    )
    assert render_arguments("-p %(port)s 100%%", fields) == ["-p", "25443", "100%"]
    with pytest.raises(SubmitRenderError, match=r"unknown field %\(nope\)s"):
        render_arguments("%(nope)s", fields)
    with pytest.raises(SubmitRenderError, match="No closing quotation"):
        render_arguments("'open", fields)


@pytest.mark.parametrize(("date", "label"), [("2026-3-1", "L"), ("2026-03-01", "a/b"), ("2026-03-01", "..")])
def test_log_dir_refuses_what_cannot_name_a_directory(date: str, label: str) -> None:
    with pytest.raises(SubmitRenderError):
        log_dir("/logs", date, label)
    assert log_dir("/logs/", "2026-03-01", "L") == "/logs/2026-03-01/L"
