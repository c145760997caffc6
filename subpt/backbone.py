"""Load a frozen open_clip CLIP: a pretrained tag, a local checkpoint file, random weights, or the embedded model."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from subpt.embedded import model as tiny
from subpt.errors import SubptError
from subpt.quiet import quiet_open_clip

EMBEDDED = "embedded"
RANDOM = "random"
SUPPORTED_POOLING = ("argmax", "eos")


@dataclass
class Backbone:
    """A frozen CLIP with its image preprocessing and tokenizer.

    `model_name` is the open_clip architecture, `pretrained` the weight source as given
    ('embedded', 'random', an open_clip tag or a file path); `weights_id` identifies the
    exact weights for cache keys.
    """

    model: open_clip.CLIP
    preprocess: Callable
    tokenizer: Callable
    model_name: str
    pretrained: str
    weights_id: str

    @property
    def width(self) -> int:
        """Width of the text transformer's token embeddings (the size of one ctx vector)."""
        return int(self.model.token_embedding.weight.shape[1])

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text embedding."""
        return int(self.model.text_projection.shape[1])

    @property
    def device(self) -> torch.device:
        """Device the model lives on."""
        return self.model.token_embedding.weight.device


def _file_id(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def check_supported(model: torch.nn.Module, model_name: str) -> None:
    """Raise a clear error unless the model has open_clip's standard CLIP text path that prompts need."""
    if not isinstance(model, open_clip.CLIP):
        raise SubptError(
            f"model {model_name!r} is a {type(model).__name__}, whose text tower is not open_clip's standard CLIP "
            "text path: prompt learning is not supported for it; use a CLIP model such as ViT-B-16 or RN50"
        )
    pool = getattr(model, "text_pool_type", "argmax")
    if pool not in SUPPORTED_POOLING:
        raise SubptError(
            f"model {model_name!r} pools text features with {pool!r}: prompt learning supports EOS pooling "
            f"({', '.join(SUPPORTED_POOLING)}) only"
        )


def load_backbone(
    model_name: str = tiny.MODEL_NAME,
    pretrained: str | None = EMBEDDED,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Backbone:
    """Create a frozen CLIP in eval mode from a pretrained tag, a checkpoint file, 'random' or 'embedded'.

    'random' weights are drawn from `seed` (a run passes its own --seed, recorded in config.json), so every load
    of a run's model gives the same weights; the other sources ignore it."""
    from subpt.config import check_device

    check_device(device)
    tiny.register()
    pretrained = pretrained or RANDOM
    if model_name not in open_clip.list_models():
        raise SubptError(
            f"unknown model {model_name!r}; choose one of open_clip.list_models() (e.g. ViT-B-16, RN50) "
            f"or {tiny.MODEL_NAME!r} (the embedded default)"
        )
    if pretrained == EMBEDDED:
        if model_name != tiny.MODEL_NAME:
            raise SubptError(f"--pretrained embedded only exists for {tiny.MODEL_NAME!r}, not {model_name!r}")
        model = tiny.create_random_model()
        state, _ = tiny.load_compact(tiny.CHECKPOINT_PATH)
        model.load_state_dict(state)
        weights_id = f"embedded:{_file_id(tiny.CHECKPOINT_PATH)}"
        preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    else:
        weights_id, model, preprocess = _load_open_clip(model_name, pretrained, seed)
    check_supported(model, model_name)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    return Backbone(model, preprocess, tokenizer, model_name, pretrained, weights_id)


def random_weights_id(seed: int) -> str:
    """The weights id (cache key part) of the random weights drawn from `seed`."""
    return f"{RANDOM}:seed{seed}"


def _load_open_clip(model_name: str, pretrained: str, seed: int) -> tuple[str, torch.nn.Module, Callable]:
    if pretrained == RANDOM:
        # Drawn from the seed alone, without touching the caller's random state.
        with torch.random.fork_rng(
            devices=[]
        ):  # the model is built on the CPU: only the CPU generator is used
            torch.default_generator.manual_seed(seed)
            if model_name == tiny.MODEL_NAME:
                model = tiny.create_random_model()
                preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
            else:
                with quiet_open_clip():
                    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        return random_weights_id(seed), model, preprocess
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained in tags:
        check_tag_activation(model_name, pretrained)
    as_path = Path(os.path.expanduser(pretrained))
    looks_like_path = os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if pretrained not in tags and not as_path.is_file():
        if looks_like_path:
            raise SubptError(
                f"--pretrained {pretrained}: no such file; give an existing checkpoint path or a tag"
            )
        raise SubptError(
            f"--pretrained {pretrained!r} is neither a file nor a tag of {model_name}; "
            f"tags: {', '.join(tags) or 'none'}"
        )
    openai = openai_format(as_path) if pretrained not in tags else None
    if openai is not None:
        check_openai_activation(model_name, pretrained, openai)
        model, preprocess = _load_openai_checkpoint(
            model_name, as_path, archive=openai.startswith(TORCHSCRIPT)
        )
        return f"file:{_file_id(as_path)}", model, preprocess
    try:
        with quiet_open_clip():
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(pretrained)
            )
    except RuntimeError as e:
        if pretrained in tags:
            raise SubptError(
                f"could not download the {model_name}/{pretrained} weights (offline?): download them once on a "
                f"connected machine, or pass --pretrained /path/to/checkpoint ({str(e).splitlines()[0][:120]})"
            ) from e
        raise SubptError(
            f"could not load checkpoint {pretrained} into {model_name}: {str(e).splitlines()[0][:200]}"
        ) from e
    except Exception as e:  # corrupt file, wrong architecture, ...
        raise SubptError(
            f"could not load checkpoint {pretrained} into {model_name}: {str(e).splitlines()[0][:200]}"
        ) from e
    weights_id = f"{pretrained}" if pretrained in tags else f"file:{_file_id(as_path)}"
    return weights_id, model, preprocess


# ---------------------------------------------------------------------------------------------- OpenAI's checkpoints
# OpenAI's CLIP weights were trained with QuickGELU. open_clip names an architecture with QuickGELU `<name>-quickgelu`
# (ViT-B-16-quickgelu); the plain name builds GELU, which loads OpenAI's weights without complaint and gives other
# features (ViT-B/16: image features 0.8 % off, logits 2 %). So an OpenAI checkpoint under a GELU name is refused.
TORCHSCRIPT = "a TorchScript archive"
# In the state dict of OpenAI's archives, not in open_clip's.
OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")


def _uses_quick_gelu(model_name: str) -> bool:
    return bool((open_clip.get_model_config(model_name) or {}).get("quick_gelu", False))


def _activation_variant(model_name: str, quick_gelu: bool) -> str | None:
    """The open_clip name of the same architecture with (or without) QuickGELU, when open_clip knows one."""
    base = model_name.removesuffix("-quickgelu")
    name = f"{base}-quickgelu" if quick_gelu else base
    return name if name in open_clip.list_models() and _uses_quick_gelu(name) == quick_gelu else None


def _activation_fix(model_name: str, quick_gelu: bool) -> str:
    variant = _activation_variant(model_name, quick_gelu)
    if variant is not None:
        return f"pass --model {variant} (the same architecture with {'QuickGELU' if quick_gelu else 'GELU'})"
    want = "true" if quick_gelu else "false"
    return f'register an open_clip config of this architecture with "quick_gelu": {want} and pass its name as --model'


def openai_format(path: Path) -> str | None:
    """What marks the file `path` as a checkpoint in OpenAI's own format (a TorchScript archive, or a state dict
    holding the metadata keys of one), or None for any other file (or one that cannot be read: loading it reports)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in z.namelist()):
                    return f"{TORCHSCRIPT}, the format OpenAI publishes its CLIP weights in"
        if path.suffix == ".safetensors":
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip-format file: mmap is not available
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(blob, dict) and all(k in blob for k in OPENAI_META_KEYS):
        return f"a state dict with OpenAI's archive keys {', '.join(OPENAI_META_KEYS)}"
    return None


def check_openai_activation(model_name: str, pretrained: str, why: str) -> None:
    """Refuse an OpenAI checkpoint (QuickGELU) under a model name that builds GELU, naming the model to pass."""
    if not _uses_quick_gelu(model_name):
        raise SubptError(
            f"--pretrained {pretrained} is an OpenAI CLIP checkpoint ({why}); OpenAI's weights were trained with "
            f"QuickGELU but --model {model_name} builds GELU, which would run them with the wrong activation: "
            f"{_activation_fix(model_name, True)}"
        )


def check_tag_activation(model_name: str, tag: str) -> None:
    """Refuse an open_clip pretrained tag whose weights were trained with another activation than the model name's
    (e.g. ViT-B-16 with the openai tag: GELU for QuickGELU weights), naming the model to pass."""
    tag_quick = bool((open_clip.get_pretrained_cfg(model_name, tag) or {}).get("quick_gelu", False))
    if tag_quick != _uses_quick_gelu(model_name):
        act, other = ("QuickGELU", "GELU") if tag_quick else ("GELU", "QuickGELU")
        raise SubptError(
            f"--pretrained {tag}: the {tag} weights of {model_name} were trained with {act} but --model {model_name} "
            f"builds {other}, which would run them with the wrong activation: {_activation_fix(model_name, tag_quick)}"
        )


def _load_openai_checkpoint(model_name: str, path: Path, archive: bool) -> tuple[torch.nn.Module, Callable]:
    """The open_clip model `model_name` holding the weights of OpenAI's checkpoint `path` (as open_clip's own
    `load_openai_model` reads them: TorchScript archive or state dict, metadata keys dropped, fp16 cast to fp32)."""
    try:
        if archive:
            with warnings.catch_warnings():  # torch deprecates TorchScript; OpenAI's weights only exist in it
                warnings.simplefilter("ignore", FutureWarning)
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k not in OPENAI_META_KEYS}
        with quiet_open_clip():
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise SubptError(
            f"could not load checkpoint {path} into {model_name}: {str(e).splitlines()[0][:200]}"
        ) from e
    return model.float(), preprocess
