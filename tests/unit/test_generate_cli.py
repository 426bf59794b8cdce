"""The two generator commands as a user runs them: `make generate` (python -m mlobs.generate
[--check] [--spec] [--root]) and `python -m mlobs.generate.kubernetes --out DIR`.

Each runs in-process (main(argv)) on a temporary copy of the files the generators read, so that
nothing below the checkout is written. Expected contents are the committed files: a fresh tree
rendered from the committed spec must reproduce them byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mlobs.generate import kibana_objects
from mlobs.generate.__main__ import main as generate
from mlobs.generate.kubernetes import sources
from mlobs.generate.kubernetes.__main__ import main as generate_kubernetes
from tests.conftest import REPO
from tests.support.generated import rendered

SPEC = Path("observability.yaml")
# What the generators read from the checkout besides the spec.
SOURCES = (
    sources.DOCKERFILE,
    sources.COMPOSE_FILE,
    sources.ENV_EXAMPLE,
    sources.PYPROJECT,
    sources.FILEBEAT_FILE,
    sources.LOGSTASH_SETTINGS,
    sources.LOGSTASH_PIPELINES,
    sources.KIBANA_SETTINGS,
    sources.GRAFANA_DATASOURCES,
    kibana_objects.MAPPING_FILE,
)
# Folders README.md says `make generate` renders into (none of them is a source's folder).
GENERATED_FOLDERS = ("prometheus/rules", "prometheus/tests", "deploy/kubernetes/model-servers")
STALE_HINT = "(run `make generate`)"
DEPLOY = Path("deploy/kubernetes")


def source_tree(root: Path) -> Path:
    """A checkout holding only the spec and the generators' sources: nothing generated yet."""
    for path in (SPEC, *SOURCES):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, root / path)
    return root


def at(root: Path) -> list[str]:
    """--root and --spec of a tree."""
    return ["--root", str(root), "--spec", str(root / SPEC)]


def files_below(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()}


def stale_lines(paths: set[Path]) -> list[str]:
    return sorted(f"stale: {path} {STALE_HINT}" for path in paths)


def changed_spec(path: Path, **changes: object) -> Path:
    """The committed spec with top-level `changes`, written to `path`."""
    data = yaml.safe_load((REPO / SPEC).read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**data, **changes}))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return source_tree(tmp_path / "repo")


@pytest.fixture
def generated_tree(tree: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A source tree after `make generate`."""
    assert generate(at(tree)) == 0
    capsys.readouterr()
    return tree


# --- python -m mlobs.generate: write mode ------------------------------------------------------


def test_generate_writes_every_file_into_new_folders_and_says_which(tree, capsys):
    before = files_below(tree)
    assert generate(at(tree)) == 0
    out, err = capsys.readouterr()
    written = files_below(tree) - before
    assert err == ""
    assert sorted(out.splitlines()) == sorted(f"wrote {path}" for path in written)
    assert written == set(rendered())  # every file of `make generate`, none left out
    for folder in GENERATED_FOLDERS:  # created with their parents (prometheus/, deploy/)
        assert any(path.parent == Path(folder) for path in written), folder
    # A fresh checkout renders exactly what is committed.
    different = [path for path in written if (tree / path).read_text() != (REPO / path).read_text()]
    assert different == []


def test_generate_overwrites_a_stale_file(generated_tree, capsys):
    config = generated_tree / "prometheus/prometheus.yml"
    config.write_text("# edited by hand\n")
    assert generate(at(generated_tree)) == 0
    assert config.read_text() == (REPO / "prometheus/prometheus.yml").read_text()
    assert "wrote prometheus/prometheus.yml" in capsys.readouterr().out.splitlines()


def test_generate_defaults_to_the_spec_and_root_of_the_current_directory(tree, capsys, monkeypatch):
    monkeypatch.chdir(tree)
    assert generate([]) == 0
    assert files_below(tree) >= set(rendered())
    assert generate(["--check"]) == 0
    assert capsys.readouterr().err == ""


# --- python -m mlobs.generate --check ----------------------------------------------------------


def test_check_on_a_fresh_tree_names_every_missing_file_and_writes_nothing(tree, capsys):
    before = files_below(tree)
    assert generate(["--check", *at(tree)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert sorted(err.splitlines()) == stale_lines(set(rendered()))
    assert files_below(tree) == before


def test_check_on_an_up_to_date_tree_passes_silently(generated_tree, capsys):
    assert generate(["--check", *at(generated_tree)]) == 0
    assert capsys.readouterr() == ("", "")


def test_check_names_only_the_files_edited_or_deleted(generated_tree, capsys):
    edited, deleted = Path("alertmanager/alertmanager.yml"), Path("prometheus/rules/alerts.yml")
    (generated_tree / edited).write_text((generated_tree / edited).read_text() + "# local\n")
    (generated_tree / deleted).unlink()
    args = ["--check", *at(generated_tree)]
    assert generate(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert sorted(err.splitlines()) == stale_lines({edited, deleted})
    assert not (generated_tree / deleted).exists()  # --check repairs nothing


def test_check_reads_the_spec_given_by_spec(generated_tree, tmp_path, capsys):
    """A tree rendered from the committed spec is stale against another spec, and only there."""
    other = changed_spec(tmp_path / "elsewhere/spec.yaml", grafana_url="https://grafana.example")
    root = ["--root", str(generated_tree)]
    assert generate(["--check", *root, "--spec", str(generated_tree / SPEC)]) == 0
    assert generate(["--check", *root, "--spec", str(other)]) == 1
    stale = capsys.readouterr().err.splitlines()
    # Alerts link to Grafana dashboards (README, "Alerts"): their rules change.
    assert f"stale: prometheus/rules/alerts.yml {STALE_HINT}" in stale


def test_generate_renders_the_spec_given_by_spec(tree, tmp_path, capsys):
    other = changed_spec(tmp_path / "elsewhere/spec.yaml", grafana_url="https://grafana.example")
    (tree / SPEC).unlink()  # the default spec is not read
    assert generate(["--root", str(tree), "--spec", str(other)]) == 0
    alerts = yaml.safe_load((tree / "prometheus/rules/alerts.yml").read_text())
    links = [
        value
        for group in alerts["groups"]
        for rule in group["rules"]
        for value in rule.get("annotations", {}).values()
        if "://" in value
    ]
    assert links and all(link.startswith("https://grafana.example/") for link in links)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_a_missing_spec_is_an_error_naming_it_and_nothing_is_written(tree, tmp_path, capsys, check):
    missing = tmp_path / "nowhere.yaml"
    before = files_below(tree)
    assert generate([*check, "--root", str(tree), "--spec", str(missing)]) == 2
    assert capsys.readouterr() == (
        "",
        f"error: {missing}: cannot read the spec: No such file or directory\n",
    )
    assert files_below(tree) == before


def test_an_invalid_spec_is_an_error_naming_the_key(tree, tmp_path, capsys):
    data = yaml.safe_load((REPO / SPEC).read_text())
    data["alerts"]["latency"]["threshold_seconds"] = "fast"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert generate(["--root", str(tree), "--spec", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {bad}: alerts.latency.threshold_seconds: ")
    assert not (tree / "prometheus").exists()


# --- python -m mlobs.generate.kubernetes -------------------------------------------------------


def test_kubernetes_defaults_reproduce_the_committed_bases(tree, capsys, monkeypatch):
    """README: `--out k8s/base` is relative to where it runs; with the default namespaces, release,
    spec and root it renders what `make generate` commits in deploy/kubernetes/."""
    monkeypatch.chdir(tree)
    out_dir = Path("k8s/base")
    assert generate_kubernetes(["--out", str(out_dir)]) == 0
    stdout, err = capsys.readouterr()
    assert err == ""
    # The bases `make generate` renders, each compared with its committed file below.
    committed = {path.relative_to(DEPLOY) for path in rendered() if path.is_relative_to(DEPLOY)}
    assert files_below(tree / out_dir) == committed
    assert sorted(stdout.splitlines()) == sorted(f"wrote {out_dir / path}" for path in committed)
    for path in committed:
        assert (tree / out_dir / path).read_text() == (REPO / DEPLOY / path).read_text(), path


def test_kubernetes_renders_the_spec_given_by_spec(tmp_path, capsys):
    """README: `--spec my-spec.yaml --out k8s/base` changes only the cluster's links."""
    other = changed_spec(tmp_path / "my-spec.yaml", grafana_url="https://grafana.example")
    out = tmp_path / "k8s"
    assert generate_kubernetes(["--out", str(out), "--root", str(REPO), "--spec", str(other)]) == 0
    rule = (out / "metrics/prometheus-rule.yaml").read_text()
    assert "https://grafana.example/" in rule and "http://localhost:3000" not in rule


def test_kubernetes_needs_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(source_tree(tmp_path))
    before = files_below(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        generate_kubernetes([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m mlobs.generate.kubernetes ")
    assert err.endswith("error: the following arguments are required: --out\n")
    assert files_below(tmp_path) == before


def test_kubernetes_refuses_a_namespace_naming_the_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        generate_kubernetes(["--out", str(tmp_path / "k8s"), "--namespace", "ML_prod"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m mlobs.generate.kubernetes: error: "
        "namespace 'ML_prod' is not a Kubernetes namespace name"
    )
    assert not (tmp_path / "k8s").exists()


def test_kubernetes_a_missing_spec_is_an_error_and_nothing_is_written(tmp_path, capsys):
    missing, out = tmp_path / "nowhere.yaml", tmp_path / "k8s"
    args = ["--out", str(out), "--root", str(REPO), "--spec", str(missing)]
    assert generate_kubernetes(args) == 2
    assert capsys.readouterr() == (
        "",
        f"error: {missing}: cannot read the spec: No such file or directory\n",
    )
    assert not out.exists()
