"""The papermill runner: parameter checking before any work, failure reporting, summary; the result cache."""
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from scarlet_lib import cache as cache_mod
from scarlet_lib import reproduce
from scarlet_lib.profiles import NOTEBOOKS, PROFILES, profile_parameters, resolve_notebook
from scarlet_lib.reproduce import ParameterError, parse_override, plan_run


def test_every_notebook_has_exactly_one_parameters_cell_and_no_outputs():
    for nb in NOTEBOOKS:
        book = nbformat.read(reproduce.NOTEBOOK_DIR / f"{nb}.ipynb", as_version=4)
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, nb
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in book.cells if c.cell_type == "code"), \
            f"{nb} is committed with outputs"
        assert book.metadata["kernelspec"]["name"] == "python3"


def test_notebook_defaults_are_the_cpu_profile():
    # a notebook opened in JupyterLab and run as it is computes what `make reproduce` computes
    for nb in NOTEBOOKS:
        book = nbformat.read(reproduce.NOTEBOOK_DIR / f"{nb}.ipynb", as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        defaults = {}
        exec(cell.source, {}, defaults)
        expected = profile_parameters("cpu", nb)
        assert {k: defaults.get(k) for k in expected} == expected, nb


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profiles_fit_the_notebooks(profile, tmp_path):
    plan = plan_run(profile, output=tmp_path, device="cpu")
    assert plan.notebooks == list(NOTEBOOKS)
    for nb in NOTEBOOKS:
        assert plan.parameters[nb]["profile"] == profile
        assert plan.parameters[nb]["device"] == "cpu"
    # the supernet notebooks get identical supernet settings, so they share the cache
    from scarlet_lib.recipes import RECIPE_FIELDS
    keys = [k for k in RECIPE_FIELDS if k not in ("identity_mode", "seed")]
    ref = plan.parameters["02_supernet_stability"]
    for nb in ("04_feature_maps", "06_search", "07_architecture_browser", "08_ranking_fidelity"):
        assert {k: plan.parameters[nb][k] for k in keys} == {k: ref[k] for k in keys}, nb
        if nb == "08_ranking_fidelity":  # ranks the models by every supernet of notebook 2
            assert plan.parameters[nb]["seeds"] == ref["seeds"] and plan.parameters[nb]["arms"] == ref["arms"]
        else:
            assert plan.parameters[nb]["seed"] == ref["seeds"][0]


def test_default_figures_folder_depends_on_profile(tmp_path):
    assert plan_run("cpu-long", only=["1"], output=tmp_path).figures == reproduce.REPO_ROOT / "figures"
    assert plan_run("cpu", only=["1"], output=tmp_path).figures == reproduce.REPO_ROOT / "figures" / "cpu"
    assert plan_run("smoke", only=["1"], output=tmp_path).figures == tmp_path / "figures"


@pytest.mark.parametrize("name,expected", [("2", "02_supernet_stability"), ("02", "02_supernet_stability"),
                                           ("supernet_stability", "02_supernet_stability"),
                                           ("07_architecture_browser.ipynb", "07_architecture_browser")])
def test_resolve_notebook(name, expected):
    assert resolve_notebook(name) == expected


def test_unknown_profile_is_refused_with_the_accepted_ones():
    with pytest.raises(ParameterError, match=r"unknown profile 'fast'.*smoke, cpu, gpu, cpu-long"):
        plan_run("fast")


def test_unknown_notebook_is_refused():
    with pytest.raises(ParameterError, match=r"unknown notebook '09'.*01_let_equivalence"):
        plan_run("smoke", only=["09"])


def test_unknown_device_is_refused():
    with pytest.raises(ParameterError, match=r"unknown device 'tpu'; accepted: cpu, cuda"):
        plan_run("smoke", device="tpu")


def test_wrong_type_is_refused_with_the_expected_type():
    with pytest.raises(ParameterError, match=r"parameter 'epochs' takes a int.*got 'many'"):
        plan_run("smoke", only=["2"], overrides=["epochs=many"])
    with pytest.raises(ParameterError, match=r"'seeds' is a list of int"):
        plan_run("smoke", only=["2"], overrides=["seeds=[0, 'a']"])
    with pytest.raises(ParameterError, match=r"takes a float"):
        plan_run("smoke", only=["2"], overrides=["width=wide"])


@pytest.mark.parametrize("override,accepted", [
    ("epochs=-5", "an integer >= 1"), ("lr=-1", r"a finite number in \(0, inf\)"),
    ("dataset=nonsense", "one of gratings, cifar10"), ("seeds=[]", "at least 1 distinct"),
    ("seeds=[0, 0]", "distinct"), ("08:standalone_seeds=[0]", "at least 2 distinct"),
    ("08:min_reference_tau=2.0", r"\[-1, 1\]"), ("steps_per_epoch=-1", "an integer >= 0"),
    ("02:pool_with=['no/such/folder']", "existing folders"), ("02:shorter_run=no/such/folder", "an existing folder"),
])
def test_out_of_range_values_are_refused_before_any_work_with_what_is_accepted(override, accepted):
    name = override.split(":")[-1].split("=")[0]
    with pytest.raises(ParameterError, match=rf"bad parameter value.*{name}=.*accepted: .*{accepted}"):
        plan_run("smoke", only=["2", "8"], overrides=[override])


def _notebook2_record(folder, **changes):
    """A minimal finished notebook-2 run: its run record with the smoke profile's parameters, changed."""
    import json

    params = {**plan_run("smoke", only=["2"]).parameters["02_supernet_stability"], **changes}
    folder.mkdir()
    (folder / "02_supernet_stability.run.json").write_text(json.dumps({"parameters": params}))
    return folder


def test_a_length_check_against_another_recipe_or_a_longer_run_is_refused_at_planning(tmp_path):
    other_lr = _notebook2_record(tmp_path / "other_lr", lr=0.5, steps_per_epoch=1)
    with pytest.raises(ParameterError, match=r"shorter_run .* differs from this run in lr 0.5 vs 0.05"):
        plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={other_lr}"])
    longer = _notebook2_record(tmp_path / "longer", steps_per_epoch=50)
    with pytest.raises(ParameterError, match=r"has 50 steps, this run 3; .*fewer steps"):
        plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={longer}"])
    with pytest.raises(ParameterError, match=r"is not a finished run of 02_supernet_stability"):
        plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={tmp_path}"])
    shorter = _notebook2_record(tmp_path / "shorter", steps_per_epoch=1)
    plan = plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={shorter}"])
    assert plan.parameters["02_supernet_stability"]["shorter_run"] == str(shorter)


def test_a_pooled_length_check_needs_every_pooled_run_to_name_a_shorter_run_of_one_recipe(tmp_path):
    shorter = _notebook2_record(tmp_path / "shorter", steps_per_epoch=1)
    no_shorter = _notebook2_record(tmp_path / "no_shorter", seeds=[5])
    with pytest.raises(ParameterError, match=r"no_shorter names no shorter run; .*every pooled run needs its own"):
        plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={shorter}", f"02:pool_with=['{no_shorter}']"])
    other_length = _notebook2_record(tmp_path / "other_length", steps_per_epoch=2)
    pooled = _notebook2_record(tmp_path / "pooled", seeds=[5], shorter_run=str(other_length))
    with pytest.raises(ParameterError, match=r"differs from shorter run of this run in steps_per_epoch \(1 vs 2\)"):
        plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={shorter}", f"02:pool_with=['{pooled}']"])
    gone = _notebook2_record(tmp_path / "gone", seeds=[5], shorter_run=str(tmp_path / "deleted"))
    with pytest.raises(ParameterError, match=r"deleted is not a finished run"):
        plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={shorter}", f"02:pool_with=['{gone}']"])
    good = _notebook2_record(tmp_path / "good", seeds=[5], shorter_run=str(_notebook2_record(
        tmp_path / "good_shorter", seeds=[5], steps_per_epoch=1)))
    plan = plan_run("smoke", only=["2"], overrides=[f"02:shorter_run={shorter}", f"02:pool_with=['{good}']"])
    assert plan.parameters["02_supernet_stability"]["pool_with"] == [str(good)]
    # without shorter_run, pooling asks nothing of the pooled runs' length checks
    plan_run("smoke", only=["2"], overrides=[f"02:pool_with=['{no_shorter}']"])


def test_every_profile_gives_values_the_rules_accept():
    for profile in PROFILES:
        for nb, params in plan_run(profile, device="cpu").parameters.items():
            reproduce.check_values(nb, params)  # raises on a value out of range


def test_unknown_parameter_is_refused_with_the_known_ones():
    with pytest.raises(ParameterError, match=r"no selected notebook has a parameter 'epochz'.*epochs"):
        plan_run("smoke", only=["2"], overrides=["epochz=3"])
    with pytest.raises(ParameterError, match=r"expects name=value"):
        plan_run("smoke", overrides=["epochs"])
    with pytest.raises(ParameterError, match=r"not selected"):
        plan_run("smoke", only=["1"], overrides=["02:epochs=3"])


def test_overrides_reach_only_the_notebooks_that_have_the_parameter(tmp_path):
    plan = plan_run("smoke", overrides=["epochs=2", "width=1", "02:seeds=[3, 4, 5]", "dataset=cifar10"], output=tmp_path)
    assert plan.parameters["02_supernet_stability"]["epochs"] == 2
    assert plan.parameters["02_supernet_stability"]["seeds"] == [3, 4, 5]
    assert plan.parameters["04_feature_maps"]["width"] == 1.0 and isinstance(plan.parameters["04_feature_maps"]["width"], float)
    assert plan.parameters["06_search"]["dataset"] == "cifar10"
    assert "epochs" not in plan.parameters["01_let_equivalence"]


def test_parse_override():
    assert parse_override("epochs=3") == (None, "epochs", 3)
    assert parse_override("02:seeds=[1, 2]") == ("02_supernet_stability", "seeds", [1, 2])
    assert parse_override("dataset=cifar10") == (None, "dataset", "cifar10")
    assert parse_override("lr=1e-3") == (None, "lr", 1e-3)


def test_main_reports_bad_input_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert reproduce.main(["--profile", "nope", "--output", str(out)]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
    assert reproduce.main(["--profile", "smoke", "--set", "epochs=x", "--output", str(out)]) == 2
    assert not out.exists()


def _notebook(path: Path, cells):
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_a_failing_notebook_is_reported_with_its_cell_and_the_others_still_run(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "bad.ipynb", ["x = 1", "y = x + 1", "raise RuntimeError('boom in cell 2')", "z = 3"])
    _notebook(nbdir / "good.ipynb", ["x = 1", "open('done.txt', 'w').write(str(x))"])
    plan = reproduce.RunPlan("smoke", ["bad", "good"], {"bad": {"x": 5}, "good": {"x": 7}}, tmp_path / "out",
                             tmp_path / "figs", tmp_path / "cache", nbdir)
    summary = reproduce.run(plan, log=lambda m: None)
    bad, good = summary.set_index("notebook").loc["bad"], summary.set_index("notebook").loc["good"]
    assert bad["status"] == "failed" and "boom in cell 2" in bad["error"]
    executed = nbformat.read(tmp_path / "out" / "notebooks" / "bad.ipynb", as_version=4)
    failing = [c for c in executed.cells if c.get("execution_count") == bad["failed_cell"]]
    assert len(failing) == 1 and "boom" in failing[0].source  # In [n] names the failing cell
    assert bad["failed_source"].startswith("raise RuntimeError")
    assert good["status"] == "ok" and (nbdir / "done.txt").read_text() == "7"  # ran, with the injected parameter
    assert (tmp_path / "out" / "summary.csv").exists() and summary["seconds"].gt(0).all()


def test_cache_creates_once_and_keys_on_parameters(tmp_path):
    c = cache_mod.Cache("things", tmp_path)
    calls = []

    def create(folder):
        calls.append(folder)
        (folder / "value.txt").write_text("42")

    p1, created1 = c.get_or_create({"a": 1, "b": [1, 2]}, create)
    p2, created2 = c.get_or_create({"b": [1, 2], "a": 1.0}, create)  # same parameters, other order / 1.0 == 1
    p3, created3 = c.get_or_create({"a": 2, "b": [1, 2]}, create)
    assert (created1, created2, created3) == (True, False, True) and len(calls) == 2
    assert p1 == p2 != p3 and (p1 / "value.txt").read_text() == "42"
    assert json.loads((p1 / cache_mod.MARKER).read_text())["params"] == {"a": 1, "b": [1, 2]}


def test_an_interrupted_cache_entry_is_not_used(tmp_path):
    c = cache_mod.Cache("things", tmp_path)

    def fail(folder):
        (folder / "half.txt").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        c.get_or_create({"a": 1}, fail)
    assert not c.has({"a": 1}) and not c.path({"a": 1}).exists()


def test_cache_key_changes_with_the_code():
    a = cache_mod.cache_key({"x": 1}, code="aaa")
    assert a == cache_mod.cache_key({"x": 1}, code="aaa") != cache_mod.cache_key({"x": 1}, code="bbb")


def test_code_text_ignores_comments_docstrings_and_layout_but_not_code():
    a = 'def f(x):\n    return x + 1\n\nclass C:\n    y = 2\n'
    b = ('"""Module doc."""\n# a comment\n\ndef f(x):  # inline\n    """What f does."""\n\n    return (x +\n'
         '            1)\n\n\nclass C:\n    """Doc."""\n    y = 2  # two\n')
    assert cache_mod.code_text(a) == cache_mod.code_text(b)
    assert cache_mod.code_text(a) != cache_mod.code_text(a.replace("x + 1", "x + 2"))
    assert cache_mod.code_text(a) != cache_mod.code_text(a.replace("return x + 1", "return 'x + 1'"))
    # a string that is not the first statement is code, not a docstring
    assert cache_mod.code_text("x = 1\n'not a docstring'\n") != cache_mod.code_text("x = 1\n")
    assert cache_mod.code_text("def (:") == "def (:"  # unparseable: its text


def test_source_fingerprint_keeps_a_comment_edit_of_the_training_code_and_changes_with_a_statement(tmp_path,
                                                                                               monkeypatch):
    real = Path(cache_mod.__file__).resolve().parent / "data.py"
    monkeypatch.setattr(cache_mod, "_PKG", tmp_path)
    text = real.read_text()
    (tmp_path / "data.py").write_text(text)
    before = cache_mod.source_fingerprint(["data"])
    commented = "\n".join(("# moved comment\n" + line) if line.startswith("def ") else line
                          for line in text.splitlines())
    (tmp_path / "data.py").write_text(commented + "\n\n# trailing note\n")
    assert cache_mod.source_fingerprint(["data"]) == before
    (tmp_path / "data.py").write_text(text + "\n_EXTRA = 1\n")
    assert cache_mod.source_fingerprint(["data"]) != before
