import pytest

from energybench.harness.options import SettingsError, parse


def settings(tmp_path, **raw):
    return parse(raw, tmp_path)


def test_defaults(tmp_path):
    s = settings(tmp_path)
    assert s.models == ("distilbert",) and s.precisions == ("fp32", "fp16", "bf16", "int8")
    assert s.device == "auto" and s.model_source == "auto" and s.batch_size == 32
    assert s.reports_dir == tmp_path / "reports"
    assert s.budget_for("accuracy", "distilbert", "int8") == 1.0
    assert s.budget_for("perplexity", "gpt2", "fp16") == 1.0
    assert s.budget_for("accuracy", "distilbert", "fp32") is None


def test_the_gpu_group_names_what_a_cuda_gpu_runs(tmp_path):
    s = settings(tmp_path, precision="gpu")
    assert s.precisions == ("fp32", "fp16", "bf16", "int8-wo", "int8-dyn", "int4-wo", "fp8-dyn")
    assert settings(tmp_path, precision="all,int8-wo").precisions == ("fp32", "fp16", "bf16", "int8", "int8-wo")
    assert s.budget_for("accuracy", "distilbert", "int4-wo") == 2.0
    assert s.budget_for("perplexity", "gpt2", "fp8-dyn") == 5.0


def test_all_and_lists(tmp_path):
    s = settings(tmp_path, model="all", precision="int8,fp32", metric="latency")
    assert s.models == ("distilbert", "gpt2", "bert-base", "smollm2", "smollm2-360m")
    assert s.precisions == ("int8", "fp32") and s.metrics == ("latency",)


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"model": "llama"},
            "--model: unknown value llama; accepted: distilbert, gpt2, bert-base, smollm2, smollm2-360m, all",
        ),
        (
            {"precision": "int3"},
            "--precision: unknown value int3; accepted: fp32, fp16, bf16, int8, int8-wo, int8-dyn, int4-wo, "
            "fp8-dyn, int8-static, int4-hqq, int4-gptq, nf4-bnb, int8-bnb, kv4-quanto, kv4-hqq, mixed, all, gpu, llm",
        ),
        ({"metric": "speed"}, "--metric: unknown value speed; accepted: accuracy, perplexity"),
        ({"device": "tpu"}, "--device: unknown value tpu; accepted: auto, cpu, cuda"),
        ({"model_source": "s3"}, "--model-source: unknown value s3; accepted: auto, hub, path"),
        ({"batch_size": "0"}, "--batch-size: '0' is not a list of positive integers"),
        ({"batch_size": "many"}, "--batch-size: 'many' is not a list of positive integers"),
        ({"max_samples": "-3"}, "--max-samples: '-3' is not a positive integer"),
        ({"accuracy_budget": "int3=1"}, "--accuracy-budget: bad entry int3=1"),
        ({"accuracy_budget": "int8"}, "--accuracy-budget: 'int8' is not a list of <precision>=<limit>"),
        ({"perplexity_budget": "int8=-1"}, "--perplexity-budget: bad entry int8=-1"),
        ({"model_source": "path"}, "--model-source path needs --model-path DIR"),
        ({"model": "gpt2,distilbert", "model_path": "x"}, "--model-path applies to one model"),
        ({"meters": "wattmeter"}, "--meters: 'wattmeter' is not auto, none or a comma list of nvml, rapl, codecarbon"),
        ({"country": "France"}, "--country: 'France' is not a 3-letter ISO 3166 code"),
        ({"energy_min_s": "0"}, "--energy-min-s: '0' is not a positive number of seconds"),
        ({"idle_s": "soon"}, "--idle-s: 'soon' is not a positive number of seconds"),
        ({"energy_budget": "int8=x"}, "--energy-budget: bad entry int8=x"),
    ],
)
def test_bad_values_name_the_option_and_the_accepted_values(tmp_path, raw, message):
    with pytest.raises(SettingsError) as error:
        settings(tmp_path, **raw)
    assert message in str(error.value)


def test_budgets_from_pyproject_and_command_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.energybench]\naccuracy_budget_pp = { int8 = 2.0, "bert-base/fp16" = 0.5 }\n'
    )
    s = settings(tmp_path, accuracy_budget="fp16=0.1")
    assert s.budget_for("accuracy", "distilbert", "int8") == 2.0  # pyproject over built-in
    assert s.budget_for("accuracy", "bert-base", "fp16") == 0.5  # per-model key wins
    assert s.budget_for("accuracy", "distilbert", "fp16") == 0.1  # command line over pyproject


def test_energy_options(tmp_path):
    s = settings(tmp_path, meters="rapl,codecarbon", country="fra", energy_min_s="5", energy_budget="int8=0.8")
    assert s.meters == ("rapl", "codecarbon") and s.country == "FRA" and s.energy_min_s == 5.0
    assert s.budget_for("energy", "distilbert", "int8") == 0.8 and s.idle_s == 3.0 and s.energy_min_calls == 10


def test_a_model_path_checkpoint_is_named_after_its_folder(tmp_path):
    folder = tmp_path / "My Tiny-Llama v2"
    folder.mkdir()
    s = settings(tmp_path, model_path=str(folder))
    assert s.models == ("my-tiny-llama-v2",) and s.model_source == "path"
    named = settings(tmp_path, model_path=str(folder), model="distilbert")  # "my checkpoint of distilbert"
    assert named.models == ("distilbert",)
    assert (
        settings(tmp_path, model_path=str(folder), accuracy_budget="my-tiny-llama-v2/int8=2").budget_for(
            "accuracy", "my-tiny-llama-v2", "int8"
        )
        == 2.0
    )


def test_a_model_path_folder_named_like_a_registered_model_is_one_line(tmp_path):
    from energybench.harness.options import SettingsError

    folder = tmp_path / "gpt2"
    folder.mkdir()
    with pytest.raises(SettingsError, match=r"the folder name 'gpt2' is a registered model.*rename the folder, or "):
        settings(tmp_path, model_path=str(folder))


def test_mixed_is_opt_in_and_impact_samples_is_checked(tmp_path):
    from energybench.harness.options import PRECISION_GROUPS, SettingsError, parse

    classic = PRECISION_GROUPS["all"]
    assert parse({}, tmp_path).precisions == classic == ("fp32", "fp16", "bf16", "int8")
    assert parse({"precision": "all,mixed"}, tmp_path).precisions == (*classic, "mixed")
    assert parse({}, tmp_path).budget_for("accuracy", "distilbert", "mixed") == 1.0  # int8's unless set
    assert parse({"accuracy_budget": "mixed=0.5"}, tmp_path).budget_for("accuracy", "distilbert", "mixed") == 0.5
    with pytest.raises(SettingsError, match="--impact-samples: '0' is not a positive integer"):
        parse({"impact_samples": "0"}, tmp_path)


def test_every_catalog_option_reaches_settings_with_the_catalog_default(tmp_path):
    """Settings repeats no default: each option's field, unset, holds what the catalog declares."""
    import dataclasses

    from energybench.catalog import OPTIONS
    from energybench.harness.options import SETTING_OF, Settings

    fields = {f.name for f in dataclasses.fields(Settings)}
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(Settings))
    missing = [o.dest for o in OPTIONS if SETTING_OF.get(o.dest, o.dest) not in fields]
    assert not missing, f"options that never reach Settings: {missing}"
    settings = parse({}, tmp_path)
    simple = [o for o in OPTIONS if o.kind in ("int", "seconds", "text") and o.default is not None]
    assert simple and all(getattr(settings, SETTING_OF.get(o.dest, o.dest)) == o.default for o in simple)
    assert settings.backends == (OPTIONS[2].default,) and settings.save and not settings.report
