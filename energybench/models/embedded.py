"""Builds, caches and loads the embedded default models: small real architectures trained here
on the shipped data.

The embedded default exists because the machines energybench is built and tested on reach no
model hub. Each model is a real transformers architecture (DistilBERT, BERT, GPT-2, Llama) at reduced
size, with its own tokenizer trained on the training split, trained for a fixed number of steps
from a seed, and cached under ``$ENERGYBENCH_CACHE/embedded/<name>-<recipe hash>/``. The
fine-tuning functions also work on a user's own Hugging Face model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from energybench import data
from energybench.models.quiet import quiet_transformers
from energybench.progress import Prefixed, advance

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

RECIPE_FORMAT = 4  # bump when the build procedure changes, so caches rebuild
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BUILD_INFO = "build_info.json"
EOS = "<|endoftext|>"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    arch: str  # distilbert | bert | gpt2 | llama
    task: str  # sequence-classification | causal-lm
    layers: int
    hidden: int
    heads: int
    ffn: int
    max_len: int
    vocab_size: int
    steps: int
    batch_size: int
    lr: float
    seed: int
    train_data: str
    train_len: int = 64  # classifier training truncates sentences here (SST-2 sentences rarely exceed it)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1  # GPT-2's default (residual, embedding and attention dropout)
    positions: str = "random"  # GPT-2 position embeddings start random, or "sinusoidal" (see sinusoidal_positions)
    kv_heads: int | None = None  # Llama: key/value heads (grouped-query attention); None elsewhere
    batching: str | None = None  # classifiers: None (random batches) or "length-bucketed" (see bucketed_batches)

    def hash(self) -> str:
        """Every field and the recipe format; a field left at None is left out, so adding an optional
        field keeps the hash (and the cache) of every recipe that does not set it."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        canonical = json.dumps({"format": RECIPE_FORMAT, **fields}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def scaled(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


_CLASSIFIER = dict(
    task="sequence-classification",
    layers=2,
    hidden=128,
    heads=2,
    ffn=512,
    max_len=128,
    vocab_size=8000,
    steps=1500,
    batch_size=32,
    lr=1e-3,
    seed=0,
    train_data="sst2-train.tsv",
)
RECIPES: dict[str, Recipe] = {
    # twice the steps at the cost of the old 1500 (bucketed batches pad little); lr 3e-4: 81.19 % (1e-3 80.05,
    # 7e-4 80.28, 5e-4 80.73, 4e-4 80.28; 2e-3 collapses to 67.7 %), docs/method.md
    "distilbert": Recipe(
        arch="distilbert", **{**_CLASSIFIER, "steps": 3000, "lr": 3e-4, "batching": "length-bucketed"}
    ),
    "bert-base": Recipe(arch="bert", **_CLASSIFIER),
    "gpt2": Recipe(
        arch="gpt2",
        task="causal-lm",
        layers=2,
        hidden=128,
        heads=4,
        ffn=512,
        max_len=128,
        vocab_size=4096,
        steps=1400,
        batch_size=16,  # 2.9 M training tokens: with 8, perplexity still rose with more context (docs/method.md)
        lr=2e-3,
        seed=0,
        train_data="wikitext2-wiki.valid.tokens",
        dropout=0.0,  # about 1 M weights: under-fitted, so no regularisation
        positions="sinusoidal",  # random ones left attention uniform over the window (docs/method.md)
    ),
    "smollm2": Recipe(  # SmolLM2's architecture (Llama: RMSNorm, rotary, SwiGLU, grouped-query, tied head)
        arch="llama",
        task="causal-lm",
        layers=2,
        hidden=128,
        heads=4,
        kv_heads=2,
        ffn=384,  # SwiGLU has three matrices: 3 x 128 x 384 weights, about GPT-2's 2 x 128 x 512
        max_len=128,
        vocab_size=4096,  # GPT-2's tokenizer (same text, same size): the two perplexities compare per token
        steps=800,  # 1.6 M tokens, 57 % of GPT-2's, for a build within 2 minutes (docs/method.md)
        batch_size=16,
        lr=2e-3,
        seed=0,
        train_data="wikitext2-wiki.valid.tokens",
        dropout=0.0,
    ),
}


@dataclass(frozen=True)
class Embedded:
    model: PreTrainedModel  # eval mode, float32, CPU
    tokenizer: PreTrainedTokenizerFast
    recipe: Recipe
    path: Path
    built_now: bool
    train_seconds: float | None
    weights_sha256: str | None = None


def cache_root() -> Path:
    """Where energybench caches what it builds (``$ENERGYBENCH_CACHE``, else ``~/.cache/energybench``)."""
    return Path(os.environ.get("ENERGYBENCH_CACHE") or Path.home() / ".cache" / "energybench")


def load_or_build(
    name: str,
    recipe: Recipe | None = None,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Embedded:
    """The cached model for ``name`` and ``recipe``; trained and cached first if absent.

    ``cache_dir`` replaces ``cache_root() / "embedded"``. Only a folder holding ``build_info.json``
    counts as built: anything else at that path is discarded and rebuilt, never loaded.
    """
    if recipe is None:
        if name not in RECIPES:
            raise KeyError(f"no embedded recipe for {name!r}; known: {', '.join(RECIPES)}")
        recipe = RECIPES[name]
    folder = Path(cache_dir or cache_root() / "embedded") / f"{name}-{recipe.hash()}"
    if (folder / BUILD_INFO).is_file():
        return load_cached(folder, recipe)
    say = progress or (lambda message: None)
    with build_lock(folder, say):  # concurrent sessions (xdist workers, parallel CI jobs) build once
        if (folder / BUILD_INFO).is_file():
            return load_cached(folder, recipe)
        say(f"{name}: building the embedded model (recipe {recipe.hash()}), cached in {folder}")
        with quiet_transformers():
            build(name, recipe, folder, say)
    return dataclasses.replace(load_cached(folder, recipe), built_now=True)


@contextmanager
def build_lock(folder: Path, say: Progress) -> Iterator[None]:
    """Hold an exclusive lock on ``<folder>.lock`` while building: a second builder of the same
    recipe waits for the first and then loads its result, instead of training a second copy
    (each would take the same cores and finish later). POSIX only; elsewhere no lock."""
    try:
        import fcntl  # deferred: optional (POSIX only)
    except ImportError:  # deferred: optional (Windows has no fcntl)
        yield
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{folder.name}: another process is building it; waiting for that build")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_cached(folder: Path, recipe: Recipe) -> Embedded:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # deferred: heavy

    info = json.loads((folder / BUILD_INFO).read_text())
    cls = AutoModelForCausalLM if recipe.task == "causal-lm" else AutoModelForSequenceClassification
    with quiet_transformers():
        model = cls.from_pretrained(folder, local_files_only=True, dtype="float32").eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    seconds, weights = info.get("train_seconds"), info.get("weights_sha256")
    return Embedded(model, tokenizer, recipe, folder, False, seconds, weights)


def build(name: str, recipe: Recipe, folder: Path, progress: Progress) -> None:
    """Train into a temporary folder beside ``folder`` and rename it into place (atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    discard_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{folder.name}-", dir=folder.parent))
    try:
        start = time.perf_counter()
        model, tokenizer, loss, file = train(recipe, Prefixed(progress, name))
        seconds = time.perf_counter() - start
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        info = build_info(name, recipe, seconds, loss, file, weights_sha256(staging))
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=1))  # written last: marks it complete
        publish(staging, folder)
        progress(f"{name}: built in {seconds:.0f} s (final train loss {loss:.3f})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train(recipe: Recipe, progress: Progress) -> tuple[Any, Any, float, Any]:
    """A new tokenizer and model trained by the recipe: (model, tokenizer, final train loss, DataFile)."""
    tokenizer = train_tokenizer(recipe)
    model = new_model(recipe, tokenizer)
    common = {
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "seed": recipe.seed,
        "weight_decay": recipe.weight_decay,
        "warmup": recipe.warmup_fraction,
        "progress": progress,
    }
    if recipe.task == "causal-lm":
        text, file = data.wikitext2(recipe.train_data.removeprefix("wikitext2-wiki."))
        loss = train_causal_lm(model, tokenizer, text, block_size=recipe.max_len, **common)
    else:
        examples, file = data.sst2(recipe.train_data.removeprefix("sst2-").removesuffix(".tsv"))
        bucketed = recipe.batching == "length-bucketed"
        loss = fine_tune_classifier(model, tokenizer, examples, max_len=recipe.train_len, bucketed=bucketed, **common)
    return model, tokenizer, loss, file


def build_info(name: str, recipe: Recipe, seconds: float, loss: float, file: Any, weights: str) -> dict:
    import torch  # deferred: heavy
    import transformers  # deferred: heavy

    return {
        "name": name,
        "recipe": dataclasses.asdict(recipe),
        "recipe_hash": recipe.hash(),
        "recipe_format": RECIPE_FORMAT,
        "train_seconds": round(seconds, 2),
        "final_train_loss": loss,
        "weights_sha256": weights,
        "data_file": file.name,
        "data_sha256": file.sha256,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def publish(staging: Path, folder: Path) -> None:
    """Rename the finished build into place; a complete folder from a concurrent builder wins."""
    for attempt in range(2):
        try:
            os.rename(staging, folder)
            return
        except OSError:
            if (folder / BUILD_INFO).is_file():
                return  # another process finished first: keep theirs
            if attempt:
                raise
            discard(folder)  # incomplete (no build_info.json): never loaded, so replace it


def discard(path: Path) -> None:
    """Move ``path`` aside (atomic, so no reader sees it half-deleted), then delete it."""
    doomed = Path(tempfile.mkdtemp(prefix=f".discard-{path.name}-", dir=path.parent))
    try:
        os.rename(path, doomed / path.name)
    except FileNotFoundError:
        pass  # someone else removed or replaced it already
    shutil.rmtree(doomed, ignore_errors=True)


def discard_stale_staging(folder: Path, older_than_s: float = 6 * 3600) -> None:
    """Remove staging folders of builds that died long ago (killed before they could clean up)."""
    for stale in folder.parent.glob(f".build-{folder.name}-*"):
        try:
            if time.time() - stale.stat().st_mtime > older_than_s:
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            pass


def weights_sha256(folder: Path) -> str:
    """Identifies the exact weights: builds are seeded, but float reductions may differ across processes."""
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def train_tokenizer(recipe: Recipe) -> PreTrainedTokenizerFast:
    """A tokenizer trained on the recipe's training text: WordPiece (BERT family), byte-level BPE (GPT-2).

    Deterministic: the same recipe gives the same vocabulary and ids.
    """
    import transformers  # deferred: heavy

    if recipe.task == "causal-lm":
        from tokenizers import ByteLevelBPETokenizer  # deferred: heavy

        text, _ = data.wikitext2(recipe.train_data.removeprefix("wikitext2-wiki."))
        core = ByteLevelBPETokenizer(add_prefix_space=False)
        core.train_from_iterator(
            text.split("\n"), vocab_size=recipe.vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False
        )
        return transformers.GPT2TokenizerFast(
            tokenizer_object=core._tokenizer,
            bos_token=EOS,
            eos_token=EOS,
            unk_token=EOS,
            pad_token=EOS,
            model_max_length=recipe.max_len,  # pad = eos, as usual for GPT-2 batching
        )
    from tokenizers import BertWordPieceTokenizer  # deferred: heavy

    sentences = [s for s, _ in data.sst2(recipe.train_data.removeprefix("sst2-").removesuffix(".tsv"))[0]]
    core = BertWordPieceTokenizer(lowercase=True)
    core.train_from_iterator(
        sentences, vocab_size=recipe.vocab_size, min_frequency=2, show_progress=False, special_tokens=WORDPIECE_SPECIALS
    )
    # the architecture's own tokenizer class adds [CLS] ... [SEP] and its model inputs, as published ones do
    cls = transformers.BertTokenizerFast if recipe.arch == "bert" else transformers.DistilBertTokenizerFast
    return cls(
        tokenizer_object=canonical_wordpiece(core._tokenizer),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=recipe.max_len,
    )


def canonical_wordpiece(tokenizer: Any) -> Any:
    """The same WordPiece vocabulary with ids in a fixed order (specials, then sorted tokens).

    The trainer numbers its initial alphabet in hash-set order, which changes from run to run;
    WordPiece encoding depends only on the set of tokens, so renumbering keeps it identical.
    """
    from tokenizers import Tokenizer  # deferred: heavy

    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    ordered = WORDPIECE_SPECIALS + sorted(t for t in vocab if t not in WORDPIECE_SPECIALS)
    spec["model"]["vocab"] = {token: i for i, token in enumerate(ordered)}
    for added in spec.get("added_tokens", []):
        added["id"] = spec["model"]["vocab"][added["content"]]
    for special in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [spec["model"]["vocab"][t] for t in special["tokens"]]
    return Tokenizer.from_str(json.dumps(spec))


def new_model(recipe: Recipe, tokenizer: Any) -> PreTrainedModel:
    """A freshly initialised model of the recipe's architecture and sizes (seeded)."""
    import torch  # deferred: heavy
    import transformers as tf  # deferred: heavy

    torch.manual_seed(recipe.seed)
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    if recipe.arch == "gpt2":
        eos = tokenizer.eos_token_id
        config = tf.GPT2Config(
            vocab_size=vocab,
            n_layer=recipe.layers,
            n_embd=recipe.hidden,
            n_head=recipe.heads,
            n_inner=recipe.ffn,
            n_positions=recipe.max_len,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
            resid_pdrop=recipe.dropout,
            embd_pdrop=recipe.dropout,
            attn_pdrop=recipe.dropout,
        )
        model = tf.GPT2LMHeadModel(config)
        if recipe.positions == "sinusoidal":
            with torch.no_grad():
                model.transformer.wpe.weight.copy_(sinusoidal_positions(recipe.max_len, recipe.hidden))
        return model
    if recipe.arch == "llama":
        return new_llama(recipe, vocab, tokenizer.eos_token_id)
    labels = {"num_labels": 2, "id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    if recipe.arch == "distilbert":
        config = tf.DistilBertConfig(
            vocab_size=vocab,
            n_layers=recipe.layers,
            dim=recipe.hidden,
            n_heads=recipe.heads,
            hidden_dim=recipe.ffn,
            max_position_embeddings=recipe.max_len,
            pad_token_id=pad,
            **labels,
        )
        return tf.DistilBertForSequenceClassification(config)
    config = tf.BertConfig(
        vocab_size=vocab,
        num_hidden_layers=recipe.layers,
        hidden_size=recipe.hidden,
        num_attention_heads=recipe.heads,
        intermediate_size=recipe.ffn,
        max_position_embeddings=recipe.max_len,
        pad_token_id=pad,
        **labels,
    )
    return tf.BertForSequenceClassification(config)


def new_llama(recipe: Recipe, vocab: int, eos: int) -> PreTrainedModel:
    """A Llama causal LM as SmolLM2 builds it (tied embeddings, RMSNorm, rotary, SwiGLU, grouped-query
    attention), at the recipe's sizes; the caller has seeded torch."""
    import transformers as tf  # deferred: heavy

    config = tf.LlamaConfig(
        vocab_size=vocab,
        hidden_size=recipe.hidden,
        intermediate_size=recipe.ffn,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads or recipe.heads,
        max_position_embeddings=recipe.max_len,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        attention_dropout=recipe.dropout,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return tf.LlamaForCausalLM(config)


def sinusoidal_positions(length: int, width: int, std: float = 0.02) -> Any:
    """The Transformer's sinusoidal position table, scaled to GPT-2's initial embedding std.

    GPT-2 learns its position embeddings from random; a small model trained briefly never learns
    to tell near tokens from far ones, so its attention stays uniform over the window. Starting
    from sinusoids, where one linear map shifts every position by the same offset, lets attention
    find recent tokens from the first steps; the table is still trained like any embedding.
    """
    import torch  # deferred: heavy

    angle = torch.arange(length)[:, None] / 10000 ** (torch.arange(0, width, 2) / width)
    table = torch.zeros(length, width)
    table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return table * (std / table.std())


def optimizer_and_schedule(model: Any, steps: int, lr: float, weight_decay: float, warmup: float) -> tuple:
    """AdamW with linear warm-up over ``warmup`` of the steps, then linear decay to zero."""
    import torch  # deferred: heavy

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup_steps = max(1, int(steps * warmup))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (steps - step) / max(1, steps - warmup_steps))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fine_tune_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: list[tuple[str, int]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_len: int = 64,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
    bucketed: bool = False,
    progress: Progress | None = None,
) -> float:
    """Fine-tune a sequence classifier on (sentence, label) pairs for ``steps`` batches.

    Batches are drawn by a seeded shuffle (epoch after epoch), of sentences of about one length
    when ``bucketed``, and padded to their longest sentence. The tokenizer needs a pad token.
    Returns the mean train loss of the last steps.
    """
    import torch  # deferred: heavy

    torch.manual_seed(seed)  # dropout
    labels = torch.tensor([label for _, label in examples])
    optimizer, schedule = optimizer_and_schedule(model, steps, lr, weight_decay, warmup)
    if bucketed:
        encoded = tokenizer([s for s, _ in examples], truncation=True, max_length=max_len)["input_ids"]
        batches = bucketed_batches([len(ids) for ids in encoded], batch_size, seed)
    else:
        batches = shuffled_batches(len(examples), batch_size, seed)
    model.train()
    recent: list[float] = []
    for step, rows in zip(range(steps), batches):
        batch = tokenizer(
            [examples[i][0] for i in rows], truncation=True, max_length=max_len, padding=True, return_tensors="pt"
        )
        loss = model(**batch, labels=labels[rows]).loss
        recent = take_step(loss, optimizer, schedule, model, recent)
        report(progress, step, steps, recent)
    model.eval()
    return sum(recent) / len(recent)


def train_causal_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    text: str,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    block_size: int,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
    progress: Progress | None = None,
) -> float:
    """Train a causal LM on seeded random contiguous blocks of ``text``; returns the final mean train loss."""
    import torch  # deferred: heavy

    torch.manual_seed(seed)  # dropout
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor(tokenizer(text, verbose=False)["input_ids"], dtype=torch.long)  # one long sequence
    optimizer, schedule = optimizer_and_schedule(model, steps, lr, weight_decay, warmup)
    model.train()
    recent: list[float] = []
    for step in range(steps):
        starts = torch.randint(0, len(ids) - block_size, (batch_size,), generator=generator).tolist()
        batch = torch.stack([ids[s : s + block_size] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        recent = take_step(loss, optimizer, schedule, model, recent)
        report(progress, step, steps, recent)
    model.eval()
    return sum(recent) / len(recent)


def shuffled_batches(count: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of row indices: a fresh seeded permutation each epoch, last partial batch dropped."""
    import torch  # deferred: heavy

    generator = torch.Generator().manual_seed(seed)
    if count < batch_size:
        raise ValueError(f"{count} examples are fewer than one batch of {batch_size}")
    while True:
        order = torch.randperm(count, generator=generator).tolist()
        for i in range(0, count - batch_size + 1, batch_size):
            yield order[i : i + batch_size]


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, pool: int = 50) -> Iterator[list[int]]:
    """Endless batches of rows of about one length: each epoch a seeded permutation, cut into pools of
    ``pool`` batches, each pool sorted by length and cut into batches, the batches shuffled.

    Random batches of SST-2 train pad its 11-token sentences to about 34 tokens (their longest); a
    batch of like lengths pads little, so a step costs about a third as much and the same time
    trains on about three times the sentences."""
    import torch  # deferred: heavy

    generator = torch.Generator().manual_seed(seed)
    if len(lengths) < batch_size:
        raise ValueError(f"{len(lengths)} examples are fewer than one batch of {batch_size}")
    while True:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), pool * batch_size):
            chunk = sorted(order[start : start + pool * batch_size], key=lengths.__getitem__)
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index]


def take_step(loss: Any, optimizer: Any, schedule: Any, model: Any, recent: list[float]) -> list[float]:
    import torch  # deferred: heavy

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return [*recent[-49:], float(loss.detach())]


def report(progress: Progress | None, step: int, steps: int, recent: list[float]) -> None:
    """A bar in a terminal; else about every 10 % of the steps: ``step 200/600 loss 0.410`` (mean of the
    last 50 steps)."""
    if advance(progress, "training", step + 1, steps):
        return
    if progress and (step + 1) % max(1, steps // 10) == 0:
        progress(f"step {step + 1}/{steps} loss {sum(recent) / len(recent):.3f}")
