"""The documentation follows the code: the component tables of docs/scenarios.md are what
``python -m testbed.docs`` generates, every parameter says what it is, every scenario key is in
the keys table, and the README's commands and links hold."""

import re
from pathlib import Path

import pytest
from clitools import ROOT, call

from testbed import docs
from testbed.config import PartyConfig, RayConfig, Scenario, TrainingConfig, parse_scenario, read_yaml
from testbed.registry import load_builtins

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_committed_component_tables_are_what_the_code_generates():
    code, out, err = call(docs.main, ["--check"])
    assert code == 0, f"{err}run python -m testbed.docs and commit docs/scenarios.md"


def test_a_drifted_table_fails_the_check_and_the_command_rewrites_it(tmp_path):
    drifted = tmp_path / "scenarios.md"
    drifted.write_text(docs.DOC.read_text(encoding="utf-8").replace("| **`mlp`** |", "| **`mlp`** (old) |"))
    code, _, err = call(docs.main, ["--check", "--doc", str(drifted)])
    assert code == 1 and "differ from what the code generates" in err
    assert call(docs.main, ["--doc", str(drifted)])[0] == 0
    assert drifted.read_text() == docs.DOC.read_text(encoding="utf-8")


def test_a_document_without_a_registry_s_table_is_refused_naming_it(tmp_path):
    text = docs.DOC.read_text(encoding="utf-8")
    start = text.index(docs.START.format(name="FILTERS"))
    (tmp_path / "scenarios.md").write_text(text[:start] + text[text.index(docs.END, start) + len(docs.END):])
    code, _, err = call(docs.main, ["--check", "--doc", str(tmp_path / "scenarios.md")])
    assert code == 2 and "missing: FILTERS" in err


def test_every_component_says_what_it_does_and_every_parameter_what_it_is():
    load_builtins()
    built_in = [registry.get(name) for registry in docs.REGISTRIES.values() for name in registry.names()
                if registry.get(name).__module__.startswith(docs.PROJECT)]
    missing = [f"{cls.kind}.{key}" for cls in built_in for key, field in cls.Params.model_fields.items() if not field.description]
    assert missing == [], "give these Params fields a description"
    assert len(built_in) > 30 and all(docs.what_it_does(cls) for cls in built_in)


@pytest.mark.parametrize("schema, words", [
    ({"type": "integer", "minimum": 1}, "integer >= 1"),
    ({"anyOf": [{"enum": [4096, 8192]}, {"type": "null"}]}, "`4096`, `8192` or `null`"),
    ({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1}, "list of number > 0, at least 1"),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}]}, "[integer, integer]"),
])
def test_allowed_values_in_words(schema, words):
    assert docs.allowed(schema) == words


def scenario_keys(model, prefix=""):
    for name, field in model.model_fields.items():
        sections = {"training": TrainingConfig, "ray": RayConfig, "parties": PartyConfig}
        if name in sections:
            yield from scenario_keys(sections[name], f"{prefix}{name}.{'NAME.' if name == 'parties' else ''}")
        else:
            yield f"{prefix}{name}"


def test_every_scenario_key_is_in_the_keys_table():
    text = docs.DOC.read_text(encoding="utf-8")
    table = text[text.index("## Scenario keys"):text.index("## Components")]
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE))
    assert set(scenario_keys(Scenario)) == listed


def test_the_readme_is_a_front_door_whose_test_command_ci_runs_and_whose_links_hold():
    assert len(README.splitlines()) <= 150
    commands = re.findall(r"```\n(python3 -m venv .*)\n```", README)
    assert len(commands) == 2 and commands[1] in (ROOT / ".ci" / "run").read_text()  # .ci/run runs it verbatim
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        assert (ROOT / link).is_file(), link
    example = re.search(r"```yaml\n(.*?)```", README, re.DOTALL).group(1)
    assert parse_scenario(read_yaml(example, "README")).parties["B"].role == "malicious"


def test_doc_links_between_docs_hold():
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / link).is_file(), f"{page.name}: {link}"


def test_no_path_of_a_developer_s_machine_in_the_docs():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert not re.search(r"/(work|home|root|tmp)/\w", page.read_text(encoding="utf-8")), page.name


def test_a_user_s_plug_in_is_not_listed_among_the_built_ins():
    from testbed.protocols.base import TrainingProtocol
    from testbed.registry import PROTOCOLS

    class Mine(TrainingProtocol):
        """A protocol of a user's own."""

    PROTOCOLS.register("mine_for_the_docs_test")(Mine)
    try:
        assert "mine_for_the_docs_test" not in docs.table(PROTOCOLS) and "`smule`" in docs.table(PROTOCOLS)
    finally:
        del PROTOCOLS._own["mine_for_the_docs_test"]


def test_every_repository_path_the_docs_name_exists():
    """A module renamed or moved leaves no stale path in the README or docs/ (results files and
    paths under results/ are what a run writes, not repository files)."""
    pattern = re.compile(r"`((?:testbed|attacks|analysis|bench|scenarios|tests|docs)/[\w./-]+\.(?:py|csv|yaml|md))`")
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for path in pattern.findall(page.read_text(encoding="utf-8")):
            assert (ROOT / path).exists(), f"{page.name}: {path}"
