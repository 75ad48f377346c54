"""docs/coming-from.md stays honest: its gpusched examples run as written, its commands exist.

The conventions the page follows, which this test enforces:

- A ```yaml block whose first line is ``# gpusched experiment file: NAME`` is a gpusched
  experiment file called NAME; one whose first line is ``# gpusched --aip config: NAME`` is an
  AI Platform ``hptuning_config.yaml`` called NAME. Each is written to a temporary folder under
  its NAME and read as ``gpusched submit`` reads it (``load_experiment_file``; the AI Platform
  one through ``load_aip_file``, the ``submit --aip FILE -- COMMAND`` path, from that folder).
  It must have no problem and give no warning, and every plugin it names (its search, its
  ``early_stopping``, ``bounds`` for its ``stop:``) must be built with its options, as the
  daemon does at submit. Whether the trainer in ``command`` exists is not judged (the daemon
  does not judge it at submit either: a trial that cannot start fails).
- Any other ```yaml block is another tool's file: one that starts ``# gpusched`` without being
  one of the two markers is a mistyped marker, and one with a top-level ``command:``,
  ``params:``, ``trainingInput:`` or ``hyperparameters:`` is a gpusched example left unmarked,
  hence unchecked. Both fail.
- Every line of a ```bash block that starts with ``gpusched`` is parsed by the CLI's own parser
  (``cli.build_parser``): its command and options exist. A ``gpusched submit`` line names a
  marked block of the page (an AI Platform one with ``--aip``), which is read again with that
  line's ``--set``, ``--name`` and command after ``--``.
- Every ``gpusched WORD`` in the page's inline code, and in the comments of its yaml blocks, is
  a command of ``cli.COMMANDS`` (the view commands included).
- Every ```python block compiles; in one that does ``from gpusched import trial``, every
  ``trial.NAME`` is in ``gpusched.trial.__all__``. Every ``gpusched.NAME`` in inline code is in
  ``gpusched.__all__``, and every ``GPUSCHED_*`` or ``CLOUD_ML_*`` variable named is one that
  gpusched's code sets or reads.
- Every relative link leads to a file, and its ``#fragment`` to a heading there.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

import gpusched
from gpusched import cli, trial
from gpusched.errors import PluginError, SpecError
from gpusched.plugins import make_search_plugin, make_stopping_plugin
from gpusched.spec import ExperimentSpec, load_aip_file, load_experiment_file

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "coming-from.md"

EXPERIMENT_MARK = "experiment file"
AIP_MARK = "--aip config"
_MARKER = re.compile(r"# gpusched (experiment file|--aip config): (\S+)")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+)`")
# `gpusched WORD` as a command: not `gpusched.trial`, `gpusched[plot]`, `from gpusched import`.
_COMMAND = re.compile(r"(?<![\w./-])(?<!from )gpusched[ \t]+([a-z][\w-]*)")
_UNMARKED_SPEC = re.compile(r"^(command|params|trainingInput|hyperparameters|studySpec):",
                            re.MULTILINE)
_VARIABLE = re.compile(r"\b((?:GPUSCHED|CLOUD_ML)_[A-Z_]+)\b")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the page: its language tag and text."""

    lang: str
    text: str


@dataclass(frozen=True)
class Example:
    """A marked gpusched block: which kind, the file name it stands for, and its text."""

    kind: str
    name: str
    text: str


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of ``text``, in order."""
    return [Block(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def marked_examples(text: str) -> list[Example]:
    """The yaml blocks that carry a gpusched marker on their first line."""
    found = []
    for block in fenced_blocks(text):
        first = block.text.split("\n", 1)[0].strip()
        if block.lang == "yaml" and (mark := _MARKER.fullmatch(first)) is not None:
            found.append(Example(mark.group(1), mark.group(2), block.text))
    return found


def shell_lines(text: str) -> list[str]:
    """The lines of the page's bash blocks that run ``gpusched``."""
    return [line.strip() for block in fenced_blocks(text) if block.lang == "bash"
            for line in block.text.splitlines() if line.strip().startswith("gpusched ")]


def prose(text: str) -> str:
    """``text`` without its fenced blocks (inline code stays)."""
    return _FENCE.sub("", text)


def command_words(text: str) -> list[str]:
    """Each ``gpusched WORD`` of ``text``'s inline code and yaml comments (markers left out)."""
    spans = [m.group(1) for m in _INLINE.finditer(prose(text))]
    for block in fenced_blocks(text):
        if block.lang == "yaml":
            spans += [line for line in block.text.splitlines()[1:] if "#" in line]
    words = []
    for span in spans:
        words += [m.group(1) for m in _COMMAND.finditer(_MARKER.sub("", span))]
    return words


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: ``## 2. When it fails`` is ``#2-when-it-fails``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def parse_command_line(line: str) -> argparse.Namespace:
    """``line`` (``gpusched ...``) as the CLI parses it; SystemExit when argparse refuses it."""
    argv = [word for word in shlex.split(line, comments=True)[1:] if word != "&"]
    extra: list[str] = []
    if "--" in argv:  # as cli.main: `submit --aip FILE -- COMMAND ARGS`
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = cli.build_parser(argv[0]).parse_args(argv)
    if args.cmd == "submit":
        args.command = list(args.command) + extra
    return args


def build_plugins(spec: ExperimentSpec) -> None:
    """Make every plugin ``spec`` names, with its options, as the daemon does at submit."""
    make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal,
                       seed=spec.search_seed or 0, options=spec.search_options)
    if spec.stop:
        make_stopping_plugin("bounds", metric=spec.metric, goal=spec.goal, options=spec.stop)
    if spec.early_stopping_policy is not None:
        make_stopping_plugin(spec.early_stopping_policy, metric=spec.metric, goal=spec.goal,
                             options=spec.early_stopping_options)


def load_example(example: Example, folder: Path, *, overrides: list[str] | None = None,
                 name: str | None = None, command: list[str] | None = None) -> ExperimentSpec:
    """``example`` written to ``folder`` under its name and read as ``gpusched submit`` reads
    it: an experiment file from its own folder, an AI Platform config (with ``--aip``) from the
    current folder, which must be ``folder``."""
    path = folder / example.name
    path.write_text(example.text, encoding="utf-8")
    if example.kind == AIP_MARK:
        return load_aip_file(path, command or ["python", "-m", "trainer.task"],
                             overrides=overrides or [], name=name)
    return load_experiment_file(path, overrides=overrides or [], name=name)


def check_example(example: Example, folder: Path, *, overrides: list[str] | None = None,
                  name: str | None = None, command: list[str] | None = None) -> ExperimentSpec:
    """:func:`load_example` and :func:`build_plugins`, failing the test with gpusched's own
    words for what is wrong; a spec that ``gpusched submit`` would warn about fails too."""
    try:
        spec = load_example(example, folder, overrides=overrides, name=name, command=command)
        build_plugins(spec)
    except (SpecError, PluginError) as exc:
        pytest.fail(f"{PAGE.name}: the block {example.name!r} is refused: {exc}")
    assert spec.warnings() == (), f"{example.name}: gpusched submit would warn"
    return spec


_EXAMPLES = marked_examples(_page())


def test_the_page_marks_an_example_for_each_origin() -> None:
    """Without markers nothing below would be checked: a renamed marker must not pass."""
    kinds = [example.kind for example in _EXAMPLES]
    assert kinds.count(EXPERIMENT_MARK) >= 5, kinds
    assert kinds.count(AIP_MARK) == 2, kinds
    names = [example.name for example in _EXAMPLES]
    assert len(set(names)) == len(names), f"two marked blocks share a name: {names}"


@pytest.mark.parametrize("example", _EXAMPLES, ids=lambda e: e.name)
def test_each_marked_block_is_accepted_as_written(
    example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each marked block, as it stands, is what `gpusched submit` accepts without a warning."""
    monkeypatch.chdir(tmp_path)  # `--aip` runs in the current folder
    check_example(example, tmp_path)


def test_the_aip_config_is_read_as_ai_platform_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AI Platform block really is in AI Platform's spelling, read through `--aip`."""
    monkeypatch.chdir(tmp_path)
    (example,) = [e for e in _EXAMPLES if e.kind == AIP_MARK and "trainingInput" in e.text]
    assert "parameterName" in example.text and "hyperparameterMetricTag" in example.text
    spec = check_example(example, tmp_path, command=["python", "-m", "trainer.task"])
    assert spec.early_stopping_policy == "median"  # enableTrialEarlyStopping, as the table says
    assert spec.workdir == str(tmp_path)


_SHELL = shell_lines(_page())


def _line_id(line: str) -> str:
    """A shell line as a test id: its words, without its comment."""
    return " ".join(shlex.split(line, comments=True))


@pytest.mark.parametrize("line", _SHELL, ids=_line_id)
def test_each_shell_line_is_a_command_line_gpusched_takes(line: str) -> None:
    try:
        parse_command_line(line)
    except SystemExit:
        pytest.fail(f"{PAGE.name}: gpusched refuses the command line `{line}`")


@pytest.mark.parametrize("line", [line for line in _SHELL if line.split()[1] == "submit"],
                         ids=_line_id)
def test_each_submit_line_runs_a_block_of_the_page(
    line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file a `gpusched submit` line names is a marked block, read with its settings."""
    monkeypatch.chdir(tmp_path)
    args = parse_command_line(line)
    kind = AIP_MARK if args.aip else EXPERIMENT_MARK
    named = [e for e in _EXAMPLES if e.name == args.file.name and e.kind == kind]
    assert named, f"`{line}` names {args.file.name}, which no block marked {kind!r} is"
    check_example(named[0], tmp_path, overrides=args.set, name=args.name,
                  command=args.command or None)


def test_every_gpusched_command_the_page_names_exists() -> None:
    words = command_words(_page())
    assert "best" in words and "resume" in words  # the scan itself finds what is there
    unknown = sorted(set(words) - set(cli.COMMANDS))
    assert not unknown, f"{PAGE.name} names commands gpusched does not have: {unknown}"


def test_yaml_blocks_are_marked_or_belong_to_another_tool() -> None:
    for block in fenced_blocks(_page()):
        if block.lang != "yaml":
            continue
        first = block.text.split("\n", 1)[0].strip()
        if first.startswith("# gpusched"):
            assert _MARKER.fullmatch(first), f"a mistyped marker: {first!r}"
        else:
            assert not _UNMARKED_SPEC.search(block.text), (
                f"a gpusched example without a marker, so unchecked: {block.text[:80]!r}")


def test_python_blocks_compile_and_use_only_the_trial_api() -> None:
    blocks = [b.text for b in fenced_blocks(_page()) if b.lang == "python"]
    assert blocks
    for text in blocks:
        ast.parse(text)  # a SyntaxError names the line
        if "from gpusched import trial" in text:
            used = set(re.findall(r"\btrial\.(\w+)", text))
            assert used <= set(trial.__all__), f"not in gpusched.trial: {used - set(trial.__all__)}"


def test_gpusched_names_and_variables_are_real() -> None:
    text = _page()
    names = {m for span in _INLINE.findall(prose(text))
             for m in re.findall(r"\bgpusched\.(\w+)", span)}
    assert names <= set(gpusched.__all__), names - set(gpusched.__all__)
    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "gpusched").rglob("*.py"))
    variables = set(_VARIABLE.findall(text))
    assert "GPUSCHED_REPORT_FILE" in variables
    unknown = sorted(v for v in variables if f'"{v}"' not in source)
    assert not unknown, f"variables gpusched neither sets nor reads: {unknown}"


def test_links_lead_to_files_and_headings_that_exist() -> None:
    links = [link for link in _LINK.findall(prose(_page())) if "://" not in link]
    assert links
    for link in links:
        path, _, fragment = link.partition("#")
        target = (PAGE.parent / path).resolve() if path else PAGE
        assert target.is_file(), f"{link}: no such file"
        if fragment:
            anchors = {anchor(h) for h in _HEADING.findall(prose(target.read_text("utf-8")))}
            assert fragment in anchors, f"{link}: no such heading in {target.name}"


def test_the_readme_links_the_page() -> None:
    assert "(docs/coming-from.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
