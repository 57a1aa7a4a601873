"""The model registry and model loading from one of four sources.

Sources:
- ``hub``: the published checkpoint, from the network or the local Hugging Face cache;
- ``path``: a local fine-tuned checkpoint saved with ``save_pretrained``;
- ``embedded``: the same architecture at reduced size, trained by energybench on shipped data;
- ``shape-only``: the published architecture sizes with random weights (speed/memory/size only).
``auto`` picks hub when reachable or cached, else embedded. Resolving a source is cheap and
happens at session start; loading happens when a benchmark first needs the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from energybench import data
from energybench.catalog import MODEL_SOURCES, TASKS
from energybench.errors import UsageError
from energybench.models.embedded import RECIPES, load_or_build

SOURCES = MODEL_SOURCES  # where weights come from (energybench.catalog declares the names)
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model*.bin.index.json")
SAVE_FIX = "give a folder written by save_pretrained (config.json, weights and tokenizer files)"
MAX_UNKNOWN_SHARE = 0.5  # a tokenizer that maps most of a real sentence to its unknown token cannot evaluate


class TokenizerError(ValueError):
    """A tokenizer that cannot encode the evaluation text."""


class ModelSourceError(UsageError):
    """The requested model source cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    hub_id: str
    architecture: str  # transformers config class family: distilbert | bert | gpt2 | llama
    description: str
    published: dict[str, Any] = field(default_factory=dict)  # the published config where transformers'
    # default config is another model (LlamaConfig() is Llama-2 7B); shape-only builds from it
    embedded: str | None = None  # the embedded recipe, when not the model's own name


# SmolLM2's published config.json (HuggingFaceTB/SmolLM2-135M and -360M): Llama architecture, tied head
SMOLLM2 = {
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "bos_token_id": 0,
    "eos_token_id": 0,
}


REGISTRY: dict[str, ModelSpec] = {
    "distilbert": ModelSpec(
        "distilbert",
        "sequence-classification",
        "distilbert-base-uncased-finetuned-sst-2-english",
        "distilbert",
        "DistilBERT-base fine-tuned on SST-2",
    ),
    "gpt2": ModelSpec("gpt2", "causal-lm", "openai-community/gpt2", "gpt2", "GPT-2 small (124M)"),
    "bert-base": ModelSpec(
        "bert-base",
        "sequence-classification",
        "textattack/bert-base-uncased-SST-2",
        "bert",
        "BERT-base uncased fine-tuned on SST-2",
    ),
    "smollm2": ModelSpec(
        "smollm2",
        "causal-lm",
        "HuggingFaceTB/SmolLM2-135M",
        "llama",
        "SmolLM2-135M (Llama architecture, Apache-2.0)",
        published={
            **SMOLLM2,
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
        },
    ),
    "smollm2-360m": ModelSpec(
        "smollm2-360m",
        "causal-lm",
        "HuggingFaceTB/SmolLM2-360M",
        "llama",
        "SmolLM2-360M (Llama architecture, Apache-2.0)",
        published={
            **SMOLLM2,
            "hidden_size": 960,
            "intermediate_size": 2560,
            "num_hidden_layers": 32,
            "num_attention_heads": 15,
            "num_key_value_heads": 5,
        },
        embedded="smollm2",  # one embedded Llama stands in for both sizes
    ),
}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights come from; stored in every record."""

    kind: str  # hub | path | embedded | shape-only
    model: str
    task: str
    checkpoint: str
    revision: str | None
    note: str

    def describe(self) -> str:
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.model} <- {self.kind} {self.checkpoint}{revision} ({self.note})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel, fp32, cpu, eval mode
    tokenizer: Any | None  # None for shape-only
    source: ModelSource
    details: dict[str, Any]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def hub_cached_revision(hub_id: str) -> str | None:
    """The commit of a cached snapshot of ``hub_id``, or None if it is not in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache  # deferred: optional

    cached = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    return None


def hub_remote_revision(hub_id: str, timeout_s: float = 3.0) -> tuple[str | None, str]:
    """(commit, "") when the hub answers for ``hub_id``, else (None, why not)."""
    if hub_offline():
        return None, "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import HfApi  # deferred: optional

        return HfApi().model_info(hub_id, timeout=timeout_s).sha, ""
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable"; the reason is kept
        return None, f"hub not reachable ({type(error).__name__}: {str(error).splitlines()[0][:120]})"


def resolve_hub(spec: ModelSpec) -> tuple[ModelSource | None, str]:
    revision = hub_cached_revision(spec.hub_id)
    if revision:
        return ModelSource(
            "hub", spec.name, spec.task, spec.hub_id, revision, "published checkpoint, local HF cache"
        ), ""
    revision, why = hub_remote_revision(spec.hub_id)
    if revision:
        return ModelSource("hub", spec.name, spec.task, spec.hub_id, revision, "published checkpoint"), ""
    return None, f"{spec.hub_id} is not in the local HF cache and {why}"


def resolve_embedded(spec: ModelSpec) -> ModelSource:
    name = spec.embedded or spec.name
    recipe = RECIPES[name]
    note = (
        f"embedded default: {recipe.layers}-layer, {recipe.hidden}-wide {spec.architecture} trained by "
        f"energybench on {recipe.train_data}; NOT the published {spec.hub_id}"
    )
    return ModelSource("embedded", spec.name, spec.task, f"embedded:{name}", recipe.hash(), note)


def resolve_shape_only(spec: ModelSpec) -> ModelSource:
    note = f"random weights at the published {spec.hub_id} sizes: speed, memory and size only"
    return ModelSource("shape-only", spec.name, spec.task, f"shape-only:{spec.hub_id}", None, note)


def resolve_path(name: str, path: Path, task: str | None) -> ModelSource:
    """Check a local checkpoint folder before anything runs; raise ModelSourceError if unusable."""
    path = Path(path).expanduser()
    fix = SAVE_FIX
    if not path.is_dir():
        raise ModelSourceError(f"--model-path {path}: no such directory; {fix}")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"--model-path {path}: no config.json; {fix}")
    found = task_of_checkpoint(path)
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ModelSourceError(f"--model-path {path}: no weights ({', '.join(WEIGHT_FILES)}); {fix}")
    if task and found and task != found:
        raise ModelSourceError(f"--model-path {path}: checkpoint is a {found} model, not {task}")
    task = task or found
    if task not in TASKS:
        raise ModelSourceError(
            f"--model-path {path}: cannot tell a supported task from config.json architectures; "
            f"supported: {', '.join(TASKS)}; pass --task to say which"
        )
    try:
        load_tokenizer(path, task=task)
    except Exception as error:  # noqa: BLE001 - translated into the one user-facing error
        why = str(error).splitlines()[0] if isinstance(error, TokenizerError) else type(error).__name__
        raise ModelSourceError(
            f"--model-path {path}: no usable tokenizer ({why}); save the checkpoint's tokenizer there with "
            "tokenizer.save_pretrained(path)"
        ) from error
    return ModelSource("path", name, task, str(path.resolve()), weights_digest(path), "local checkpoint")


DIGEST_MAX_BYTES = 2 << 30  # hashing more would cost seconds per session: larger checkpoints digest by size


def weights_digest(path: Path) -> str:
    """The checkpoint's identity as its revision: ``sha256:<12 hex>`` of its weight files (name and
    bytes) up to 2 GiB, else ``size:<bytes>`` of them, so two checkpoints saved to one folder never
    pass for one model in compare, the drift band or A/B."""
    files = sorted({f for pattern in WEIGHT_FILES for f in path.glob(pattern) if f.is_file()})
    total = sum(f.stat().st_size for f in files)
    if total > DIGEST_MAX_BYTES:
        return f"size:{total}"
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023 - read in this iteration
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:12]}"


def task_of_checkpoint(path: Path) -> str | None:
    file = Path(path) / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelSourceError(f"--model-path {path}: {file.name} is not valid JSON ({error}); {SAVE_FIX}") from None
    if not isinstance(config, dict):
        raise ModelSourceError(
            f"--model-path {path}: {file.name} holds a JSON {type(config).__name__}, not an object; {SAVE_FIX}"
        )
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        architectures = []
    for arch in map(str, architectures):
        if arch.endswith("ForSequenceClassification"):
            return "sequence-classification"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
    return None


def resolve(spec: ModelSpec, requested: str) -> ModelSource:
    """Pick the source for a registered model (not ``path``, see resolve_path)."""
    if requested == "embedded":
        return resolve_embedded(spec)
    if requested == "shape-only":
        return resolve_shape_only(spec)
    hub, why = resolve_hub(spec)
    if hub:
        return hub
    if requested == "hub":
        raise ModelSourceError(
            f"--model-source hub: {why}; use --model-source auto or embedded, or run once online to fill the cache"
        )
    return resolve_embedded(spec)


def load(source: ModelSource, progress: Callable[[str], None] | None = None) -> LoadedModel:
    """Materialize the model (fp32, cpu, eval mode) for a resolved source."""
    loader = {
        "hub": load_pretrained,
        "path": load_pretrained,
        "embedded": load_embedded,
        "shape-only": load_shape_only,
    }
    return loader[source.kind](source, progress)


def model_class(task: str) -> Any:
    import transformers  # deferred: heavy

    return {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
    }[task]


def load_tokenizer(where: str | Path, revision: str | None = None, task: str | None = None) -> Any:
    from transformers import AutoTokenizer  # deferred: heavy

    tokenizer = AutoTokenizer.from_pretrained(where, revision=revision)
    check_encodes(tokenizer, task)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token; batching needs one
    return tokenizer


def check_encodes(tokenizer: Any, task: str | None) -> None:
    """Raise TokenizerError unless the tokenizer encodes a real sentence of the evaluation data.

    transformers 5 builds a five-token default tokenizer from a folder without tokenizer files:
    every word becomes the unknown token, and accuracy looks plausible. Its length says little;
    what it makes of the data says it all."""
    sentence = evaluation_sentence(task)
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    unknown = tokenizer.unk_token_id
    share = ids.count(unknown) / len(ids) if ids and unknown is not None else 0.0
    if not ids or share > MAX_UNKNOWN_SHARE:
        raise TokenizerError(
            f"it maps {share:.0%} of a sentence of the evaluation data to its unknown token {tokenizer.unk_token!r} "
            f"(vocabulary of {len(tokenizer)} tokens): no tokenizer files saved there?"
            if ids
            else "it encodes a sentence of the evaluation data to no tokens (no tokenizer files saved there?)"
        )


def evaluation_sentence(task: str | None) -> str:
    """A sentence of the data the model will be evaluated on: SST-2, or WikiText-2 for language models."""
    if task == "causal-lm":
        text, _ = data.wikitext2("test.raw")
        return next(p for p in text.split("\n\n") if len(p.split()) > 20).strip()
    return data.sst2("validation")[0][0][0]


def load_pretrained(source: ModelSource, progress: Callable[[str], None] | None) -> LoadedModel:
    revision = source.revision if source.kind == "hub" else None
    model = model_class(source.task).from_pretrained(source.checkpoint, revision=revision, dtype="float32")
    return LoadedModel(model.eval(), load_tokenizer(source.checkpoint, revision, source.task), source, {})


def load_embedded(source: ModelSource, progress: Callable[[str], None] | None) -> LoadedModel:
    built = load_or_build(source.checkpoint.removeprefix("embedded:"), progress=progress)
    details = {
        "cache_path": str(built.path),
        "built_now": built.built_now,
        "train_seconds": built.train_seconds,
    }
    return LoadedModel(built.model.eval(), built.tokenizer, source, details)


def published_config(spec: ModelSpec) -> Any:
    """The published architecture's sizes, from transformers' defaults (no download needed)."""
    import transformers  # deferred: heavy

    configs = {
        "distilbert": transformers.DistilBertConfig,
        "bert": transformers.BertConfig,
        "gpt2": transformers.GPT2Config,
        "llama": transformers.LlamaConfig,
    }
    config = configs[spec.architecture](**spec.published)
    if spec.task == "sequence-classification":
        config.num_labels = 2
    return config


def load_shape_only(source: ModelSource, progress: Callable[[str], None] | None) -> LoadedModel:
    import torch  # deferred: heavy

    spec = REGISTRY[source.model]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init notices are expected: that is the point of shape-only
        model = model_class(spec.task).from_config(published_config(spec))
    return LoadedModel(model.eval(), None, source, {"weights": "random, seed 0"})
